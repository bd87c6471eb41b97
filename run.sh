#!/usr/bin/env bash
# The demo in one command: start Kafka and PostgreSQL, run the monitor, replay the
# IBM receivables history through it, and print what the audit store says.
#
#   bash run.sh
#
# Steps:
#   1. create .venv (Python 3.11) and install the project, if not done yet;
#   2. start Kafka and PostgreSQL (bash deploy/services.sh start);
#   3. start `credit-monitor worker` in the background, log in .var/worker.log,
#      and wait until it answers /ready;
#   4. `credit-monitor replay ibm --wait`: publish the history, then wait until
#      the worker has processed it and the audit sink has stored every output;
#   5. `credit-monitor summary`, then the backtest report (.var/report.html);
#   6. stop the worker (Kafka and PostgreSQL keep running).
#
# The demo has a world of its own, so that neither the test suite nor a monitor
# run with the default settings mixes accounts into it: topics `demo.credit.*`,
# consumer groups `credit-monitor-demo*`, PostgreSQL schema `credit_demo`. Any
# CREDIT_MONITOR_* variable set before running overrides these.
#
# Running it again changes nothing: the monitor keeps the ids of the events it
# has applied (CREDIT_MONITOR_RETENTION_DAYS is set to cover the whole history
# here), so the second replay is recognised event by event.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
mkdir -p .var

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off
export CREDIT_MONITOR_MODE=replay
export CREDIT_MONITOR_TOPIC_PREFIX="${CREDIT_MONITOR_TOPIC_PREFIX-demo.}"
export CREDIT_MONITOR_APP_ID="${CREDIT_MONITOR_APP_ID:-credit-monitor-demo}"
# The IBM history spans two years of event time; the default of 7 days would let
# a second replay apply its older events again.
export CREDIT_MONITOR_RETENTION_DAYS="${CREDIT_MONITOR_RETENTION_DAYS:-3650}"
# The password is the local service's well-known one (deploy/README.md).
DEMO_DSN="postgresql://credit_monitor:credit_monitor@127.0.0.1:${CREDIT_MONITOR_PG_PORT:-55432}/credit_monitor?search_path=credit_demo"
export CREDIT_MONITOR_PG_DSN="${CREDIT_MONITOR_PG_DSN:-$DEMO_DSN}"
export CREDIT_MONITOR_KAFKA_BOOTSTRAP="${CREDIT_MONITOR_KAFKA_BOOTSTRAP:-127.0.0.1:${CREDIT_MONITOR_KAFKA_PORT:-9092}}"
WEB_PORT="${CREDIT_MONITOR_WEB_PORT:-8080}"
export CREDIT_MONITOR_WEB_PORT="$WEB_PORT"

PY=.venv/bin/python
CM=.venv/bin/credit-monitor
WORKER_LOG=.var/worker.log
WORKER_PID=""

step() { printf '\n==> %s\n' "$*"; }
fail() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

# Answers 0 when GET http://127.0.0.1:$WEB_PORT$1 returns 200.
http_ok() {
  "$PY" -c 'import sys, urllib.request
try:
    sys.exit(urllib.request.urlopen(sys.argv[1], timeout=2).status != 200)
except Exception:
    sys.exit(1)' "http://127.0.0.1:$WEB_PORT$1"
}

# Port in use by anything at all (not only by a worker)?
port_taken() {
  "$PY" -c 'import socket, sys
s = socket.socket()
sys.exit(s.connect_ex(("127.0.0.1", int(sys.argv[1]))) != 0)' "$WEB_PORT"
}

stop_worker() {
  [[ -n "$WORKER_PID" ]] || return 0
  if kill -0 "$WORKER_PID" 2>/dev/null; then
    kill -TERM "$WORKER_PID" 2>/dev/null || true
    for _ in $(seq 60); do
      kill -0 "$WORKER_PID" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$WORKER_PID" 2>/dev/null; then
      echo "run.sh: the worker did not stop within 30 s; killing it" >&2
      kill -KILL "$WORKER_PID" 2>/dev/null || true
    fi
  fi
  wait "$WORKER_PID" 2>/dev/null || true
  WORKER_PID=""
}
trap stop_worker EXIT
trap 'exit 130' INT TERM

# ---- 1. Python environment ----------------------------------------------------
step "Python environment (.venv)"
if [[ ! -x "$PY" ]]; then
  if command -v python3.11 >/dev/null 2>&1; then
    python3.11 -m venv .venv
  elif python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    python3 -m venv .venv
  else
    fail "Python 3.11 is needed (python3.11 not found); install it, e.g. apt-get install python3.11 python3.11-venv"
  fi
  echo "created .venv"
fi
# Installed again whenever pyproject.toml changed since the last install (new
# dependencies), so an older .venv cannot miss one.
STAMP=.venv/.credit-monitor-pyproject
if [[ ! -x "$CM" ]] || ! cmp -s pyproject.toml "$STAMP" \
    || ! "$PY" -c 'import monitor.cli' 2>/dev/null; then
  echo "installing the project into .venv (pip install -e .) ..."
  "$PY" -m pip install --quiet -e .
  cp pyproject.toml "$STAMP"
fi
"$PY" --version

# ---- 2. services --------------------------------------------------------------
step "Kafka and PostgreSQL (bash deploy/services.sh start)"
if ! bash deploy/services.sh start; then
  for f in .var/kafka.log .var/postgres.log; do
    [[ -f "$f" ]] && { echo "--- tail of $f"; tail -n 30 "$f"; }
  done
  fail "the services did not start; see above"
fi

# The demo's schema; the worker's audit sink creates the tables in it.
"$PY" - <<'EOF'
import asyncio, os
from urllib.parse import parse_qs, urlsplit

import asyncpg

dsn = os.environ["CREDIT_MONITOR_PG_DSN"]
path = parse_qs(urlsplit(dsn).query).get("search_path", [""])[0]
schema = path.split(",")[0].strip().strip('"')


async def main() -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE SCHEMA IF NOT EXISTS " + '"' + schema.replace('"', '""') + '"'
        )
    finally:
        await conn.close()


if schema and schema != "public":
    asyncio.run(main())
EOF

# ---- 3. the worker ------------------------------------------------------------
step "credit-monitor worker (log: $WORKER_LOG)"
if port_taken; then
  fail "port $WEB_PORT is already in use (another worker still running?); stop it, or set CREDIT_MONITOR_WEB_PORT to a free port"
fi
: > "$WORKER_LOG"
"$CM" worker >>"$WORKER_LOG" 2>&1 &
WORKER_PID=$!
started=$SECONDS
until http_ok /ready; do
  if ! kill -0 "$WORKER_PID" 2>/dev/null; then
    echo "--- tail of $WORKER_LOG" >&2
    tail -n 40 "$WORKER_LOG" >&2
    WORKER_PID=""
    fail "the worker exited before it was ready; see its log above"
  fi
  if (( SECONDS - started > 180 )); then
    echo "--- tail of $WORKER_LOG" >&2
    tail -n 40 "$WORKER_LOG" >&2
    fail "the worker was not ready after 180 s; see its log above"
  fi
  sleep 0.5
done
echo "ready after $(( SECONDS - started )) s (pid $WORKER_PID, topics ${CREDIT_MONITOR_TOPIC_PREFIX}credit.*, app id $CREDIT_MONITOR_APP_ID)"

# ---- 4. the replay ------------------------------------------------------------
step "credit-monitor replay ibm --wait"
"$CM" replay ibm --wait

# ---- 5. the summary -----------------------------------------------------------
step "credit-monitor summary"
"$CM" summary
echo "(Every invoice of the IBM sample is paid in the end, so the accounts finish"
echo " with nothing open; the audit log's history shows what happened on the way.)"

step "credit-monitor backtest ibm --from-audit --out .var/report.html"
"$CM" backtest ibm --from-audit --out .var/report.html  # prints Report: file://...

# ---- 6. done ------------------------------------------------------------------
step "stopping the worker"
stop_worker
echo "worker stopped. Kafka and PostgreSQL are still running; stop them with:"
echo "    bash deploy/services.sh stop"
if [[ "$CREDIT_MONITOR_PG_DSN" == "$DEMO_DSN" ]]; then
  echo "Show this summary again (no worker needed):"
  echo "    CREDIT_MONITOR_PG_DSN='$DEMO_DSN' $CM summary"
fi
