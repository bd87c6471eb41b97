"""PostgreSQL store: migrations, the audit sink and read helpers.

- `migrations.migrate(dsn)` brings a database up to the current schema;
- `AuditSink` copies the output topics (decisions, snapshots, rejected events)
  into `audit_log`, `account_snapshots` and `rejected_events`;
- `queries` reads them back for operators.
"""

from monitor.store.connection import connect, create_pool
from monitor.store.errors import StoreError, StoreUnavailable
from monitor.store.migrations import migrate
from monitor.store.sink import AuditSink, SinkStats

__all__ = [
    "AuditSink",
    "SinkStats",
    "StoreError",
    "StoreUnavailable",
    "connect",
    "create_pool",
    "migrate",
]
