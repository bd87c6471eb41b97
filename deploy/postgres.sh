#!/usr/bin/env bash
# Local PostgreSQL server for development and CI, using Debian's `postgresql`
# package binaries (installed with apt-get if missing) and a private cluster
# under <repo>/.var/pg. It never touches the system's own clusters.
#
#   bash deploy/postgres.sh start|stop|status
#
# Environment:
#   CREDIT_MONITOR_PG_PORT   TCP port on 127.0.0.1 (default 55432, not 5432:
#                            installing Debian's package creates and may start
#                            a system cluster on 5432, and a developer may run
#                            their own server there)
#   CREDIT_MONITOR_PG_BIN    directory holding initdb/pg_ctl (default: newest
#                            /usr/lib/postgresql/*/bin)
#
# Creates database credit_monitor owned by role credit_monitor (password
# credit_monitor), reachable at
#   postgresql://credit_monitor:credit_monitor@127.0.0.1:$CREDIT_MONITOR_PG_PORT/credit_monitor
#
# Files (all git-ignored):
#   .var/pg/                     the cluster's data directory
#   .var/pg-superuser.password   random password of the `postgres` superuser
#   .var/postgres.log            server log
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VAR="$ROOT/.var"
PGDATA="$VAR/pg"
SUPERPASS_FILE="$VAR/pg-superuser.password"
LOGFILE="$VAR/postgres.log"

PG_HOST=127.0.0.1
PG_PORT="${CREDIT_MONITOR_PG_PORT:-55432}"
# Application database; tests/test_deploy.py checks docker-compose.yml uses
# the same values.
PG_DB=credit_monitor
PG_USER=credit_monitor
PG_PASSWORD=credit_monitor
DSN="postgresql://$PG_USER:$PG_PASSWORD@$PG_HOST:$PG_PORT/$PG_DB"

log() { echo "[postgres] $*"; }
die() { echo "[postgres] ERROR: $*" >&2; exit 1; }

# PostgreSQL refuses to run as root, so as root every server-side command runs
# as the `postgres` system user (created by Debian's package).
if [[ $EUID -eq 0 ]]; then
  RUN_AS=postgres
  as_pg() { runuser -u postgres -- "$@"; }
else
  RUN_AS="$(id -un)"
  as_pg() { "$@"; }
fi

find_pg_bin() {
  if [[ -n "${CREDIT_MONITOR_PG_BIN:-}" ]]; then
    echo "$CREDIT_MONITOR_PG_BIN"
    return
  fi
  # An existing cluster must be run by the major version that created it.
  if [[ -f "$PGDATA/PG_VERSION" ]]; then
    local v
    v="$(cat "$PGDATA/PG_VERSION")"
    if [[ -x "/usr/lib/postgresql/$v/bin/pg_ctl" ]]; then
      echo "/usr/lib/postgresql/$v/bin"
      return
    fi
  fi
  # Newest installed major version.
  local d
  d="$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
  [[ -x "$d/initdb" ]] && echo "$d"
  return 0
}

ensure_installed() {
  PG_BIN="$(find_pg_bin)"
  if [[ -z "$PG_BIN" ]]; then
    [[ $EUID -eq 0 ]] ||
      die "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb). Install Debian's package as root: apt-get install -y postgresql"
    log "PostgreSQL not installed: apt-get install -y postgresql ..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >"$VAR/apt.log" 2>&1 ||
      { tail -n 20 "$VAR/apt.log" >&2; die "apt-get update failed (see $VAR/apt.log)"; }
    apt-get install -y -qq postgresql >>"$VAR/apt.log" 2>&1 ||
      { tail -n 20 "$VAR/apt.log" >&2; die "apt-get install postgresql failed (see $VAR/apt.log)"; }
    PG_BIN="$(find_pg_bin)"
    [[ -n "$PG_BIN" ]] || die "postgresql installed but no /usr/lib/postgresql/*/bin/initdb found"
  fi
  if [[ -f "$PGDATA/PG_VERSION" && ! -x "$PG_BIN/pg_ctl" ]]; then
    die "$PGDATA was created by PostgreSQL $(cat "$PGDATA/PG_VERSION"), whose binaries are missing; install them or remove $PGDATA"
  fi
  if [[ $EUID -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
    die "the 'postgres' system user does not exist (Debian's postgresql package creates it); PostgreSQL cannot run as root"
  fi
}

is_running() {
  [[ -f "$PGDATA/PG_VERSION" ]] && as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1
}

port_in_use() {
  (exec 3<>"/dev/tcp/$PG_HOST/$PG_PORT") 2>/dev/null
}

psql_admin() {
  PGPASSWORD="$(cat "$SUPERPASS_FILE")" "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
    -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres "$@"
}

init_cluster() {
  [[ -f "$PGDATA/PG_VERSION" ]] && return 0
  # The server user must be able to reach .var/ through every parent folder.
  if ! as_pg test -x "$VAR"; then
    die "user '$RUN_AS' cannot traverse $VAR (a parent folder is not world-executable); move the checkout or chmod o+x its parents"
  fi
  log "initdb into $PGDATA (as $RUN_AS)"
  rm -rf "$PGDATA"
  mkdir -p "$PGDATA"
  # Random superuser password; only needed by this script to create the
  # application role and database.
  (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$SUPERPASS_FILE")
  [[ $EUID -eq 0 ]] && chown postgres: "$PGDATA" "$SUPERPASS_FILE"
  chmod 700 "$PGDATA"
  as_pg "$PG_BIN/initdb" -D "$PGDATA" -U postgres --pwfile="$SUPERPASS_FILE" \
    --auth-local=peer --auth-host=scram-sha-256 -E UTF8 --no-locale \
    >>"$LOGFILE" 2>&1 || die "initdb failed (see $LOGFILE)"
  # Our settings live in a separate file, rewritten on each start (the port
  # may change between runs).
  echo "include_if_exists = 'credit_monitor.conf'" >>"$PGDATA/postgresql.conf"
}

write_config() {
  local conf="$PGDATA/credit_monitor.conf"
  cat >"$conf" <<EOF
# Generated by deploy/postgres.sh on each start.
listen_addresses = '$PG_HOST'
port = $PG_PORT
# TCP only: no Unix socket, so nothing is written outside .var/ and long
# checkout paths cannot exceed the socket path limit.
unix_socket_directories = ''
EOF
  [[ $EUID -eq 0 ]] && chown postgres: "$conf"
  return 0
}

ensure_app_db() {
  local exists
  exists="$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'")"
  if [[ "$exists" != 1 ]]; then
    log "creating role $PG_USER"
    psql_admin -c "CREATE ROLE $PG_USER LOGIN PASSWORD '$PG_PASSWORD'"
  fi
  exists="$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")"
  if [[ "$exists" != 1 ]]; then
    log "creating database $PG_DB"
    psql_admin -c "CREATE DATABASE $PG_DB OWNER $PG_USER"
  fi
}

start() {
  mkdir -p "$VAR"
  ensure_installed
  touch "$LOGFILE"
  [[ $EUID -eq 0 ]] && chown postgres: "$LOGFILE"
  if is_running; then
    log "already running"
  else
    if port_in_use; then
      die "port $PG_HOST:$PG_PORT is already in use by another process. Stop it, or choose another port with CREDIT_MONITOR_PG_PORT."
    fi
    init_cluster
    write_config
    log "starting PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on $PG_HOST:$PG_PORT, log: $LOGFILE"
    as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$LOGFILE" -w -t 60 start >/dev/null ||
      { tail -n 30 "$LOGFILE" >&2; die "pg_ctl start failed (full log: $LOGFILE)"; }
  fi
  local i
  for i in $(seq 1 60); do
    "$PG_BIN/pg_isready" -q -h "$PG_HOST" -p "$PG_PORT" && break
    (( i < 60 )) || die "PostgreSQL does not answer on $PG_HOST:$PG_PORT (see $LOGFILE)"
    sleep 0.5
  done
  ensure_app_db
  log "ready"
  log "DSN: $DSN"
}

stop() {
  PG_BIN="$(find_pg_bin)"
  if [[ -z "$PG_BIN" ]] || ! is_running; then
    log "not running"
    return 0
  fi
  log "stopping"
  as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w -t 60 stop >/dev/null
  log "stopped"
}

status() {
  PG_BIN="$(find_pg_bin)"
  if [[ -z "$PG_BIN" ]] || ! is_running; then
    log "not running"
    return 3
  fi
  if "$PG_BIN/pg_isready" -q -h "$PG_HOST" -p "$PG_PORT"; then
    log "running, accepting connections on $PG_HOST:$PG_PORT"
    log "DSN: $DSN"
  else
    log "server process running but not accepting connections on $PG_HOST:$PG_PORT"
    return 1
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 {start|stop|status}" >&2; exit 2 ;;
esac
