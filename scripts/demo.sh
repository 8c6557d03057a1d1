#!/usr/bin/env bash
# The main job: local services up, cdc streaming a sample workload from PostgreSQL into Kafka, one
# shard-router per replica engine (MariaDB, SQLite, PostgreSQL) applying it, and a verification table
# comparing every table on the source with each replica. Leaves the services running (stop them with
# scripts/services.sh down).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/services.sh up
# shellcheck disable=SC1091
. target/services/env
echo "== building cdc, shard-router and the verify tool"
cargo build --quiet -p cdc -p shard-router --bins --example verify

run_id="demo_$(date +%s)"
db="$run_id"
prefix="$run_id"
db_url="${CDC_SOURCE_URL%/*}/$db"
logs=target/services/logs
psql_src() { PGPASSWORD=cascade "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

echo "== creating database $db on the source and on each replica"
psql_src "$CDC_SOURCE_URL" -c "CREATE DATABASE \"$db\""
psql_src "$REPLICA_PG_URL" -c "CREATE DATABASE \"$db\""
mysql_port="$(echo "$MYSQL_URL" | sed -E 's#.*:([0-9]+)/.*#\1#')"
mariadb --protocol=tcp -h 127.0.0.1 -P "$mysql_port" -ucascade -pcascade -e "CREATE DATABASE \`$db\`"
mysql_url="${MYSQL_URL%/*}/$db"
pg_replica_url="${REPLICA_PG_URL%/*}/$db"
sqlite_url="sqlite://$PWD/target/services/sqlite/$db.db"
mkdir -p target/services/sqlite

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_ready() { # name port pid log
  for _ in $(seq 1 300); do
    if curl -fs "http://127.0.0.1:$2/readyz" >/dev/null 2>&1; then return 0; fi
    kill -0 "$3" 2>/dev/null || { cat "$4"; echo "$1 exited"; exit 1; }
    sleep 0.2
  done
  cat "$4"; echo "$1 did not become ready"; exit 1
}

echo "== starting cdc (slot $db, topic $prefix.main) on :9100"
./target/debug/cdc --source-url "$db_url" --kafka-brokers "$KAFKA_BROKERS" --slot "$db" \
  --topic-prefix "$prefix" --http-addr 127.0.0.1:9100 >"$logs/$run_id-cdc.log" 2>&1 &
pids+=($!)
wait_ready cdc 9100 $! "$logs/$run_id-cdc.log"

port=9101
for replica in "$mysql_url" "$sqlite_url" "$pg_replica_url"; do
  name="${replica%%://*}"
  echo "== starting shard-router for $name on :$port"
  ./target/debug/shard-router --kafka-brokers "$KAFKA_BROKERS" --topic-prefix "$prefix" \
    --replica-url "$replica" --http-addr "127.0.0.1:$port" >"$logs/$run_id-router-$name.log" 2>&1 &
  pids+=($!)
  wait_ready "shard-router ($name)" $port $! "$logs/$run_id-router-$name.log"
  port=$((port + 1))
done

echo "== running the sample workload (main-db/demo-workload.sql)"
psql_src "$db_url" -f main-db/demo-workload.sql

verify() {
  ./target/debug/examples/verify --source "$db_url" \
    --replica "$mysql_url" --replica "$sqlite_url" --replica "$pg_replica_url"
}
echo "== waiting for every replica to catch up"
for _ in $(seq 1 60); do
  if verify >/dev/null 2>&1; then break; fi
  sleep 1
done

echo "== rows applied per router"
for p in 9101 9102 9103; do
  printf ':%s  ' "$p"
  curl -fs "http://127.0.0.1:$p/metrics" | awk '/^router_rows_applied_total/ {s += $NF} END {print s + 0, "row changes applied"}'
done

echo "== verification: source vs every replica"
status=0
verify || status=$?
cleanup
trap - EXIT
echo "== logs in $logs/$run_id-*.log; metrics were on :9100 (cdc) and :9101-9103 (routers);"
echo "   Prometheus at $PROMETHEUS_URL; stop the services with: scripts/services.sh down"
exit $status
