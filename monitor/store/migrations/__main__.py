"""`python -m monitor.store.migrations`: bring the configured database up to date.

The DSN comes from `CREDIT_MONITOR_PG_DSN` (see monitor/settings.py).
"""

from __future__ import annotations

import asyncio
import logging
import sys

from monitor.settings import SettingsError, load_settings
from monitor.store.errors import StoreError
from monitor.store.migrations.migrate import migrate


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"migrations: {exc}", file=sys.stderr)
        return 2
    try:
        applied = asyncio.run(migrate(settings.pg_dsn.get_secret_value()))
    except StoreError as exc:
        retry = (
            " (PostgreSQL unreachable; retry when it is up)" if exc.retryable else ""
        )
        print(
            f"migrations: {settings.pg_dsn_for_logs()}: {exc}{retry}", file=sys.stderr
        )
        return 1
    print(f"applied: {', '.join(applied)}" if applied else "up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
