#!/usr/bin/env bash
# Start/stop/status of every local service the monitor and its integration
# tests need: the Kafka broker (deploy/kafka.sh) and PostgreSQL
# (deploy/postgres.sh). Idempotent; see deploy/README.md for the env vars.
#
#   bash deploy/services.sh start|stop|status
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

case "${1:-}" in
  start)
    bash "$HERE/postgres.sh" start
    bash "$HERE/kafka.sh" start
    ;;
  stop)
    # Stop both even if the first one fails; report failure at the end.
    rc=0
    bash "$HERE/kafka.sh" stop || rc=$?
    bash "$HERE/postgres.sh" stop || rc=$?
    exit "$rc"
    ;;
  status)
    # Exit 0 only if both are up.
    rc=0
    bash "$HERE/kafka.sh" status || rc=$?
    bash "$HERE/postgres.sh" status || rc=$?
    exit "$rc"
    ;;
  *)
    echo "usage: $0 {start|stop|status}" >&2
    exit 2
    ;;
esac
