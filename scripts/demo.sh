#!/usr/bin/env bash
# The main job, today: local services up, cdc streaming a sample workload into Kafka, and a summary of
# what reached Kafka. Leaves the services running (stop them with scripts/services.sh down).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/services.sh up
# shellcheck disable=SC1091
. target/services/env
cargo build --quiet -p cdc --bin cdc --example topic_summary

run_id="demo_$(date +%s)"
db="$run_id"
slot="$run_id"
prefix="$run_id"
db_url="${CDC_SOURCE_URL%/*}/$db"
psql_src() { PGPASSWORD=cascade "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

echo "== creating database $db on the source"
psql_src "$CDC_SOURCE_URL" -c "CREATE DATABASE \"$db\""

echo "== starting cdc (slot $slot, topic $prefix.main)"
log="target/services/logs/$run_id-cdc.log"
CDC_HTTP_ADDR=127.0.0.1:9100 ./target/debug/cdc --source-url "$db_url" --kafka-brokers "$KAFKA_BROKERS" \
  --slot "$slot" --topic-prefix "$prefix" >"$log" 2>&1 &
cdc_pid=$!
trap 'kill $cdc_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  if curl -fs http://127.0.0.1:9100/readyz >/dev/null 2>&1; then break; fi
  kill -0 $cdc_pid 2>/dev/null || { cat "$log"; echo "cdc exited"; exit 1; }
  sleep 0.2
done
curl -fs http://127.0.0.1:9100/readyz >/dev/null || { cat "$log"; echo "cdc did not become ready"; exit 1; }

echo "== running the sample workload (main-db/demo-workload.sql)"
psql_src "$db_url" -f main-db/demo-workload.sql
# 20 organizations + 200 users + 100 invoices inserted, 33 invoices and 10 users updated, 10 invoices
# deleted, and one primary-key change (published as a delete plus an upsert): 375 row changes.
expected=375

echo "== what reached Kafka (expecting $expected row changes)"
./target/debug/examples/topic_summary "$KAFKA_BROKERS" "$prefix.main" "$expected" 60

echo "== cdc metrics"
curl -fs http://127.0.0.1:9100/metrics | grep -E '^cdc_(transactions_total|events_published_total|confirmed_lsn|in_flight)' || true
kill -TERM $cdc_pid && wait $cdc_pid || true
trap - EXIT
echo "== done; cdc log: $log; stop the services with: scripts/services.sh down"
