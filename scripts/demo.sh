#!/usr/bin/env bash
# The main job, on local services and without Docker: PostgreSQL → cdc → Kafka → shard-routers →
# replicas. Two shards from main-db/routing.toml: shard a to MariaDB and to SQLite, shard b to
# PostgreSQL, two routers per (shard, replica). The fake SaaS generator loads the source *before* cdc
# starts, so cdc's initial snapshot is the first thing to see; then it writes a steady stream while a
# live line shows the copy, throughput and lag per replica; then a verification table compares every
# replica with its share of the source. Leaves the services running (stop them with
# scripts/services.sh down). DEMO_SECONDS sets how long the steady stream runs (default 20).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/services.sh up
# shellcheck disable=SC1091
. target/services/env
echo "== building cdc, shard-router, cascade-gen and the verify tool"
cargo build --quiet -p cdc -p shard-router -p cascade-generator --bins --example verify

run_id="demo_$(date +%s)"
db="$run_id"
prefix="$run_id"
routing=main-db/routing.toml
db_url="${CDC_SOURCE_URL%/*}/$db"
logs=target/services/logs
psql_src() { PGPASSWORD=cascade "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
metric() { # port name -> sum of the metric's samples
  curl -fs "http://127.0.0.1:$1/metrics" 2>/dev/null | awk -v m="$2" '$1 == m || index($1, m "{") == 1 {s += $NF} END {printf "%d", s + 0}'
}

echo "== creating database $db on the source and the replica databases"
psql_src "$CDC_SOURCE_URL" -c "CREATE DATABASE \"$db\""
psql_src "$REPLICA_PG_URL" -c "CREATE DATABASE \"${db}_b\""
mysql_port="$(echo "$MYSQL_URL" | sed -E 's#.*:([0-9]+)/.*#\1#')"
mariadb --protocol=tcp -h 127.0.0.1 -P "$mysql_port" -ucascade -pcascade -e "CREATE DATABASE \`${db}_a\`"
mkdir -p target/services/sqlite
mysql_a="${MYSQL_URL%/*}/${db}_a"
sqlite_a="sqlite://$PWD/target/services/sqlite/${db}_a.db"
pg_b="${REPLICA_PG_URL%/*}/${db}_b"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -f "$PROMETHEUS_TARGETS_DIR/$run_id.json"; }
trap cleanup EXIT
wait_ready() { # name port pid log
  for _ in $(seq 1 300); do
    if curl -fs "http://127.0.0.1:$2/readyz" >/dev/null 2>&1; then return 0; fi
    kill -0 "$3" 2>/dev/null || { cat "$4"; echo "$1 exited"; exit 1; }
    sleep 0.2
  done
  cat "$4"; echo "$1 did not become ready"; exit 1
}

bulk="${DEMO_BULK:-200}"
echo "== loading the source before cdc starts: $bulk organizations with their users, subscriptions, invoices and events"
./target/debug/cascade-gen --database-url "$db_url" --schema --bulk "$bulk" >"$logs/$run_id-bulk.log" 2>&1 \
  || { cat "$logs/$run_id-bulk.log"; echo "the bulk load failed"; exit 1; }

echo "== starting cdc (slot $db, topics $prefix.a and $prefix.b, routing $routing) on :9100; its initial snapshot copies what is there"
./target/debug/cdc --source-url "$db_url" --kafka-brokers "$KAFKA_BROKERS" --slot "$db" \
  --topic-prefix "$prefix" --config "$routing" --http-addr 127.0.0.1:9100 >"$logs/$run_id-cdc.log" 2>&1 &
pids+=($!)
wait_ready cdc 9100 $! "$logs/$run_id-cdc.log"

groups=("a $mysql_a" "a $sqlite_a" "b $pg_b")
ports=()
port=9101
for g in "${groups[@]}"; do
  shard="${g%% *}"; url="${g#* }"; kind="${url%%://*}"
  for n in 1 2; do
    echo "== starting shard-router $n for shard $shard -> $kind on :$port"
    ./target/debug/shard-router --kafka-brokers "$KAFKA_BROKERS" --topic-prefix "$prefix" --shard "$shard" \
      --config "$routing" --replica-url "$url" --http-addr "127.0.0.1:$port" \
      >"$logs/$run_id-router-$shard-$kind-$n.log" 2>&1 &
    pids+=($!)
    wait_ready "shard-router ($shard, $kind, $n)" $port $! "$logs/$run_id-router-$shard-$kind-$n.log"
    ports+=("$port")
    port=$((port + 1))
  done
done
# Let the services' Prometheus scrape everything this demo started.
targets=$(printf '"127.0.0.1:%s",' 9100 "${ports[@]}")
echo "[{\"targets\": [${targets%,}], \"labels\": {\"demo\": \"$run_id\"}}]" >"$PROMETHEUS_TARGETS_DIR/$run_id.json"

seconds="${DEMO_SECONDS:-20}"
echo "== generating ${seconds}s of steady traffic (50 transactions/s) while the snapshot copies"
./target/debug/cascade-gen --database-url "$db_url" --rate 50 --duration "${seconds}s" \
  >"$logs/$run_id-gen.log" 2>&1 &
gen=$!
pids+=($gen)

progress() {
  local published a_mysql a_sqlite b_pg copied
  published=$(metric 9100 cdc_events_published_total)
  copied=$(metric 9100 cdc_snapshot_rows_total)
  a_mysql=$(( $(metric 9101 router_rows_applied_total) + $(metric 9102 router_rows_applied_total) ))
  a_sqlite=$(( $(metric 9103 router_rows_applied_total) + $(metric 9104 router_rows_applied_total) ))
  b_pg=$(( $(metric 9105 router_rows_applied_total) + $(metric 9106 router_rows_applied_total) ))
  local rate=$(( (published - last) / 2 ))
  last=$published
  printf '%5ss  snapshot rows %7d  published %7d (%5d/s)   applied: a/mysql %7d  a/sqlite %7d  b/postgres %7d   cdc lag %ss\n' \
    "$SECONDS" "$copied" "$published" "$rate" "$a_mysql" "$a_sqlite" "$b_pg" \
    "$(curl -fs http://127.0.0.1:9100/metrics | awk '$1 == "cdc_replication_lag_seconds" {printf "%.2f", $2}')"
}
last=0
SECONDS=0
while kill -0 "$gen" 2>/dev/null; do
  progress
  sleep 2
done
wait "$gen" || { cat "$logs/$run_id-gen.log"; echo "the generator failed"; exit 1; }
tail -n 3 "$logs/$run_id-gen.log"

verify() {
  ./target/debug/examples/verify --source "$db_url" --config "$routing" \
    --replica "a=$mysql_a" --replica "a=$sqlite_a" --replica "b=$pg_b"
}
echo "== waiting for every replica to catch up"
for _ in $(seq 1 45); do
  progress
  if verify >/dev/null 2>&1; then break; fi
  sleep 2
done

echo "== verification: every replica against its share of the source"
status=0
verify || status=$?
cleanup
trap - EXIT
cat <<INFO
== where to look next
   logs:        $logs/$run_id-*.log
   metrics:     the binaries served /metrics on :9100 (cdc) and :9101-9106 (routers) while running
   Prometheus:  $PROMETHEUS_URL (services' Prometheus; try router_rows_applied_total or cdc_replication_lag_seconds)
   Jaeger and Grafana: docker compose up (see README, Docker compose)
   stop the services with: scripts/services.sh down
INFO
exit $status
