#!/usr/bin/env bash
# Backlog benchmark on the local services (scripts/services.sh), release build, one run:
#   capture    cdc → Kafka acknowledged (the slot confirmed past the backlog), against pg_recvlogical +
#              wal2json writing the same backlog to a file with the same options;
#   drain      shard-router applying the whole topic to each replica (PostgreSQL, MariaDB, SQLite), against
#              native logical replication (publication + subscription) into the PostgreSQL replica server;
#   snapshot   `cdc snapshot --table` of the backlog's table (cdc → Kafka acknowledged), against a plain
#              `COPY … TO STDOUT` of the same table;
#   peak RSS   of cdc and of each router (VmHWM);
#   lag        commit on the source → commit on the PostgreSQL replica, p50 and p99, while pgbench writes
#              a steady --steady-rate rows/s in transactions of 10 rows (from the router's
#              router_end_to_end_lag_seconds histogram, interpolated within its buckets);
#   big txn    peak RSS of a fresh cdc and a fresh router through one transaction of --big-txn-rows rows.
# Every consumer of the backlog has its slot (or subscription) created before the backlog is written, so
# each one reads the same WAL. Drains are timed from the first row visible in the replica to the last, so
# the consumer group join (seconds) and the subscription start are not counted. Prints one table with
# ratios.
#
# Usage: scripts/bench.sh [--rows N] [--txn-rows N] [--bin DIR] [--dialects "postgres mysql sqlite"]
#                         [--steady-rate ROWS_PER_S] [--steady-seconds S] [--big-txn-rows N]
#   --bin DIR   use the cdc and shard-router binaries in DIR instead of building target/release
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

rows=200000
txn_rows=100
bin=""
dialects="postgres mysql sqlite"
steady_rate=5000
steady_seconds=20
big_txn_rows=1000000
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) rows="$2"; shift 2 ;;
    --txn-rows) txn_rows="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    --dialects) dialects="$2"; shift 2 ;;
    --steady-rate) steady_rate="$2"; shift 2 ;;
    --steady-seconds) steady_seconds="$2"; shift 2 ;;
    --big-txn-rows) big_txn_rows="$2"; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

export PGOPTIONS="-c client_min_messages=warning"
log() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

[ -f target/services/env ] || die "the local services are not running: run scripts/services.sh up"
# shellcheck disable=SC1091
. target/services/env
psql_bin="$PG_BINDIR/psql"
recvlogical="$PG_BINDIR/pg_recvlogical"

if [ -z "$bin" ]; then
  log "building release binaries"
  cargo build --release --quiet -p cdc -p shard-router
  bin=target/release
fi

run_id="bench$(date +%s)"
work="target/bench/$run_id"
mkdir -p "$work"
src_admin="$CDC_SOURCE_URL"
src_url="${CDC_SOURCE_URL%/*}/$run_id"
replica_admin="$REPLICA_PG_URL"
replica_pg="${REPLICA_PG_URL%/*}/$run_id"
native_db="${run_id}_native"
native_url="${REPLICA_PG_URL%/*}/$native_db"
mysql_db="$run_id"
mysql_url="${MYSQL_URL%/*}/$mysql_db"
sqlite_url="sqlite://$PWD/$work/replica.db"
pids=()
mariadb_cli=()

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$psql_bin" -q "$native_url" -c "alter subscription $native_db disable" >/dev/null 2>&1 || true
  "$psql_bin" -q "$native_url" -c "alter subscription $native_db set (slot_name = none)" >/dev/null 2>&1 || true
  "$psql_bin" -q "$native_url" -c "drop subscription if exists $native_db" >/dev/null 2>&1 || true
  for slot in "$run_id" "${run_id}_recv" "$native_db" "${run_id}_big"; do
    "$psql_bin" -q "$src_admin" -c "select pg_drop_replication_slot('$slot') from pg_replication_slots where slot_name = '$slot'" >/dev/null 2>&1 || true
  done
  "$psql_bin" -q "$src_admin" -c "drop database if exists $run_id" >/dev/null 2>&1 || true
  "$psql_bin" -q "$replica_admin" -c "drop database if exists $run_id" >/dev/null 2>&1 || true
  "$psql_bin" -q "$replica_admin" -c "drop database if exists ${run_id}_big" >/dev/null 2>&1 || true
  "$psql_bin" -q "$replica_admin" -c "drop database if exists $native_db" >/dev/null 2>&1 || true
  [ "${#mariadb_cli[@]}" -eq 0 ] || "${mariadb_cli[@]}" -e "drop database if exists $mysql_db" >/dev/null 2>&1 || true
}
trap cleanup EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", n / s; else print "-" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "-") printf "%.2f", a / b; else print "-" }'; }
peak_rss_mib() { awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "-"; }

# Waits (at most $2 seconds) until the command $1 prints $3 or more; dies naming $4 otherwise.
wait_count() {
  local query="$1" timeout="$2" want="$3" what="$4" deadline got
  deadline=$(( $(date +%s) + timeout ))
  while :; do
    got=$(eval "$query" 2>/dev/null || echo 0)
    [ "${got:-0}" -ge "$want" ] 2>/dev/null && return 0
    [ "$(date +%s)" -lt "$deadline" ] || die "$what: $got of $want after ${timeout}s (logs in $work)"
    sleep 0.05
  done
}

wait_ready() { # wait_ready PORT PID WHAT [POLL_SECONDS]
  local port="$1" pid="$2" what="$3" poll="${4:-0.1}" deadline=$(( $(date +%s) + 60 ))
  until curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || die "$what exited before it was ready (see $work)"
    [ "$(date +%s)" -lt "$deadline" ] || die "$what not ready after 60s (see $work)"
    sleep "$poll"
  done
}

log "source database $run_id, $rows rows in transactions of $txn_rows"
"$psql_bin" -q "$src_admin" -c "create database $run_id" >/dev/null
"$psql_bin" -q "$src_url" -v ON_ERROR_STOP=1 >/dev/null <<SQL
create table bench (id bigint primary key, name text not null, amount numeric(12,2), at timestamptz, tags text[]);
create publication $native_db for table bench;
select pg_create_logical_replication_slot('$run_id', 'wal2json');
select pg_create_logical_replication_slot('${run_id}_recv', 'wal2json');
SQL
"$psql_bin" -q "$replica_admin" -c "create database $native_db" >/dev/null
"$psql_bin" -q "$native_url" -v ON_ERROR_STOP=1 >/dev/null <<SQL
create table bench (id bigint primary key, name text not null, amount numeric(12,2), at timestamptz, tags text[]);
create subscription $native_db connection '$src_url' publication $native_db
  with (enabled = false, copy_data = false, slot_name = '$native_db');
SQL

log "writing the backlog"
"$psql_bin" -q "$src_url" -v ON_ERROR_STOP=1 >/dev/null <<SQL
do \$\$
begin
  for t in 0 .. ($rows / $txn_rows) - 1 loop
    insert into bench
      select i, 'customer ' || i, (i % 100000) / 100.0, timestamptz '2026-01-01 00:00+00' + i * interval '1 second',
             array['t' || (i % 7), 't' || (i % 11)]
      from generate_series(t * $txn_rows + 1, (t + 1) * $txn_rows) as i;
    commit;
  end loop;
end
\$\$;
SQL
end_lsn=$("$psql_bin" -Atq "$src_url" -c "select pg_current_wal_lsn()")

# --- capture: pg_recvlogical anchor, then cdc ---
log "capture: pg_recvlogical to $end_lsn"
t0=$(now)
"$recvlogical" -d "$src_url" -S "${run_id}_recv" --start --no-loop -E "$end_lsn" -f "$work/recvlogical.json" \
  -o format-version=2 -o include-xids=1 -o include-timestamp=1 -o include-lsn=1 -o include-pk=1 \
  -o include-type-oids=1 -o include-typmod=1 -o include-transaction=1 2>"$work/recvlogical.log"
recv_rate=$(rate "$rows" "$(elapsed "$t0" "$(now)")")

log "capture: cdc to $end_lsn"
t0=$(now)
"$bin/cdc" --source-url "$src_url" --kafka-brokers "$KAFKA_BROKERS" --slot "$run_id" --topic-prefix "$run_id" \
  --http-addr 127.0.0.1:9190 >"$work/cdc.log" 2>&1 &
cdc_pid=$!
pids+=("$cdc_pid")
# Timed from readiness (START_REPLICATION sent): creating the topics and writing the origin record
# are start-up, reported on their own, as the drains leave out the consumer-group join.
wait_ready 9190 "$cdc_pid" cdc 0.01
cdc_startup=$(elapsed "$t0" "$(now)")
t0=$(now)
wait_count "$psql_bin -Atq '$src_url' -c \"select (confirmed_flush_lsn >= '$end_lsn')::int from pg_replication_slots where slot_name = '$run_id'\"" \
  600 1 "cdc confirming the backlog"
cdc_rate=$(rate "$rows" "$(elapsed "$t0" "$(now)")")
cdc_rss=$(peak_rss_mib "$cdc_pid")

# --- drain: native logical replication, then a router per dialect ---
log "drain: native logical replication"
"$psql_bin" -q "$native_url" -c "alter subscription $native_db enable" >/dev/null
wait_count "$psql_bin -Atq '$native_url' -c 'select count(*) from bench'" 600 1 "native logical replication"
t0=$(now)
wait_count "$psql_bin -Atq '$native_url' -c 'select count(*) from bench'" 600 "$rows" "native logical replication"
native_rate=$(rate "$rows" "$(elapsed "$t0" "$(now)")")

declare -A drain_rate drain_rss
port=9191
for dialect in $dialects; do
  case "$dialect" in
    postgres)
      "$psql_bin" -q "$replica_admin" -c "create database $run_id" >/dev/null
      url="$replica_pg"
      count="$psql_bin -Atq '$replica_pg' -c 'select count(*) from public.bench'" ;;
    mysql)
      # mysql://user:password@host:port/db
      my_rest="${MYSQL_URL#mysql://}"; my_user="${my_rest%%:*}"; my_rest="${my_rest#*:}"
      my_pass="${my_rest%%@*}"; my_rest="${my_rest#*@}"; my_host="${my_rest%%:*}"; my_port="${my_rest#*:}"
      my_port="${my_port%%/*}"
      mariadb_cli=(mariadb --no-defaults -h "$my_host" -P "$my_port" -u "$my_user" "-p$my_pass" -N -B)
      "${mariadb_cli[@]}" -e "create database $mysql_db"
      url="$mysql_url"
      count="${mariadb_cli[*]} $mysql_db -e 'select count(*) from bench'" ;;
    sqlite)
      url="$sqlite_url"
      count="sqlite3 '$work/replica.db' 'select count(*) from bench'" ;;
    *) die "unknown dialect $dialect (postgres, mysql, sqlite)" ;;
  esac
  log "drain: shard-router → $dialect"
  "$bin/shard-router" --kafka-brokers "$KAFKA_BROKERS" --topic-prefix "$run_id" --replica-url "$url" \
    --replica-name "bench-$dialect" --http-addr "127.0.0.1:$port" >"$work/router-$dialect.log" 2>&1 &
  router_pid=$!
  pids+=("$router_pid")
  wait_count "$count" 120 1 "shard-router → $dialect (first row)"
  t0=$(now)
  wait_count "$count" 900 "$rows" "shard-router → $dialect"
  drain_rate[$dialect]=$(rate "$rows" "$(elapsed "$t0" "$(now)")")
  drain_rss[$dialect]=$(peak_rss_mib "$router_pid")
  if [ "$dialect" = postgres ]; then
    steady_port=$port   # kept running for the lag figure
    steady_pid=$router_pid
  else
    kill "$router_pid"
    wait "$router_pid" 2>/dev/null || true
  fi
  port=$((port + 1))
done

# --- lag at a steady rate: pgbench writes 10 rows per transaction into a table of its own ---
# The lag histogram's buckets before and after, as "le count" lines; the quantile is interpolated
# linearly within the bucket that holds it (as Prometheus' histogram_quantile does).
lag_buckets() {
  curl -fs "http://127.0.0.1:$1/metrics" | awk '/^router_end_to_end_lag_seconds_bucket/ {
    match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5); print le, $NF }'
}
quantile_ms() { # quantile_ms Q BEFORE_FILE AFTER_FILE
  awk -v q="$1" 'NR == FNR { before[$1] = $2; next }
    { le[n] = $1; c[n] = $2 - before[$1]; n++ }
    END {
      total = c[n - 1]; if (total <= 0) { print "-"; exit }
      rank = q * total; prev_le = 0; prev_c = 0
      for (i = 0; i < n; i++) {
        if (c[i] >= rank) {
          if (le[i] == "+Inf") { printf "> %.0f", prev_le * 1000; exit }
          width = c[i] - prev_c
          v = (width > 0) ? prev_le + (le[i] - prev_le) * (rank - prev_c) / width : le[i]
          printf "%.0f", v * 1000; exit
        }
        prev_le = le[i]; prev_c = c[i]
      }
    }' "$2" "$3"
}
steady_p50="-"; steady_p99="-"
if [ -n "${steady_port:-}" ]; then
  log "lag: pgbench at $steady_rate rows/s (10 rows per transaction) for ${steady_seconds}s"
  "$psql_bin" -q "$src_url" -c "create table steady (id bigserial primary key, payload text not null, at timestamptz not null default now())" >/dev/null
  printf 'insert into steady (payload) select md5(g::text) from generate_series(1, 10) g;\n' >"$work/steady.sql"
  wait_count "$psql_bin -Atq '$replica_pg' -c \"select count(*) from information_schema.tables where table_name = 'steady'\"" \
    60 1 "the steady table on the replica"
  lag_buckets "$steady_port" >"$work/lag-before.txt"
  PGOPTIONS="" "$PG_BINDIR/pgbench" -n -f "$work/steady.sql" -R $((steady_rate / 10)) -T "$steady_seconds" -c 4 -j 2 \
    "$src_url" >"$work/pgbench-steady.log" 2>&1 || die "pgbench failed (see $work/pgbench-steady.log)"
  steady_rows=$("$psql_bin" -Atq "$src_url" -c "select count(*) from steady")
  wait_count "$psql_bin -Atq '$replica_pg' -c 'select count(*) from steady'" 120 "$steady_rows" "the steady rows on the replica"
  sleep 1
  lag_buckets "$steady_port" >"$work/lag-after.txt"
  steady_p50=$(quantile_ms 0.5 "$work/lag-before.txt" "$work/lag-after.txt")
  steady_p99=$(quantile_ms 0.99 "$work/lag-before.txt" "$work/lag-after.txt")
fi
[ -z "${steady_pid:-}" ] || { kill "$steady_pid" 2>/dev/null || true; wait "$steady_pid" 2>/dev/null || true; }

# --- snapshot: a plain COPY of the table, then cdc copying it into Kafka ---
log "snapshot: COPY bench TO STDOUT"
t0=$(now)
"$psql_bin" -q "$src_url" -c "copy bench to stdout" >/dev/null
copy_rate=$(rate "$rows" "$(elapsed "$t0" "$(now)")")
log "snapshot: cdc snapshot --table public.bench --wait"
t0=$(now)
"$bin/cdc" snapshot --source-url "$src_url" --slot "$run_id" --table public.bench --wait >"$work/snapshot.log" 2>&1 \
  || die "cdc snapshot failed (see $work/snapshot.log and $work/cdc.log)"
snapshot_rate=$(rate "$rows" "$(elapsed "$t0" "$(now)")")
cdc_rss=$(peak_rss_mib "$cdc_pid")
kill "$cdc_pid"
wait "$cdc_pid" 2>/dev/null || true

# --- one big transaction: a fresh cdc (its own slot, created just before) and a fresh router ---
big_cdc_rss="-"; big_router_rss="-"
if [ "$big_txn_rows" -gt 0 ]; then
  log "big transaction: $big_txn_rows rows in one transaction"
  "$psql_bin" -q "$src_url" -v ON_ERROR_STOP=1 >/dev/null <<SQL
create table big (id bigint primary key, name text not null, amount numeric(12,2));
select pg_create_logical_replication_slot('${run_id}_big', 'wal2json');
insert into big select i, 'row ' || i, i / 100.0 from generate_series(1, $big_txn_rows) as i;
SQL
  big_lsn=$("$psql_bin" -Atq "$src_url" -c "select pg_current_wal_lsn()")
  "$bin/cdc" --source-url "$src_url" --kafka-brokers "$KAFKA_BROKERS" --slot "${run_id}_big" \
    --topic-prefix "${run_id}big" --snapshot never --http-addr 127.0.0.1:9290 >"$work/cdc-big.log" 2>&1 &
  big_cdc=$!
  pids+=("$big_cdc")
  wait_count "$psql_bin -Atq '$src_url' -c \"select (confirmed_flush_lsn >= '$big_lsn')::int from pg_replication_slots where slot_name = '${run_id}_big'\"" \
    900 1 "cdc confirming the big transaction"
  big_cdc_rss=$(peak_rss_mib "$big_cdc")
  "$psql_bin" -q "$replica_admin" -c "create database ${run_id}_big" >/dev/null
  big_replica="${REPLICA_PG_URL%/*}/${run_id}_big"
  "$bin/shard-router" --kafka-brokers "$KAFKA_BROKERS" --topic-prefix "${run_id}big" --replica-url "$big_replica" \
    --replica-name bench-big --http-addr 127.0.0.1:9291 >"$work/router-big.log" 2>&1 &
  big_router=$!
  pids+=("$big_router")
  wait_count "$psql_bin -Atq '$big_replica' -c 'select count(*) from public.big'" 900 "$big_txn_rows" \
    "shard-router applying the big transaction"
  big_router_rss=$(peak_rss_mib "$big_router")
  kill "$big_cdc" "$big_router" 2>/dev/null || true
  wait "$big_cdc" "$big_router" 2>/dev/null || true
fi

printf '\n%-44s %12s %14s %7s %10s\n' "figure ($rows rows, $txn_rows/txn)" "rows/s" "anchor rows/s" "ratio" "peak RSS"
printf '%-44s %12s %14s %7s %10s\n' "capture: cdc → Kafka acknowledged" "$cdc_rate" "$recv_rate" \
  "$(ratio "$cdc_rate" "$recv_rate")" "${cdc_rss} MiB"
for dialect in $dialects; do
  printf '%-44s %12s %14s %7s %10s\n' "drain: Kafka → shard-router → $dialect" "${drain_rate[$dialect]}" \
    "$native_rate" "$(ratio "${drain_rate[$dialect]}" "$native_rate")" "${drain_rss[$dialect]} MiB"
done
printf '%-44s %12s %14s %7s %10s\n' "snapshot: cdc snapshot → Kafka acknowledged" "$snapshot_rate" "$copy_rate" \
  "$(ratio "$snapshot_rate" "$copy_rate")" "${cdc_rss} MiB"
printf '%-44s %12s\n' "cdc start-up (not in the capture figure)" "${cdc_startup} s"
printf '%-44s %12s\n' "lag at $steady_rate rows/s (10/txn) → postgres" "p50 ${steady_p50} ms, p99 ${steady_p99} ms"
[ "$big_txn_rows" -le 0 ] ||
  printf '%-44s %12s\n' "one $big_txn_rows-row transaction: peak RSS" "cdc ${big_cdc_rss} MiB, router ${big_router_rss} MiB"
printf '(capture anchor: pg_recvlogical + wal2json to a file; drain anchor: native logical replication into the PostgreSQL replica server;\n'
printf ' snapshot anchor: COPY bench TO STDOUT through psql; cdc peak RSS is over capture and snapshot; lag from the router'"'"'s\n'
printf ' router_end_to_end_lag_seconds histogram, within its buckets)\n'
