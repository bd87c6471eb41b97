"""Writing a batch of rows to PostgreSQL in one transaction, idempotently.

Each table's rows are copied (binary COPY) into a temporary table that lives
until the end of the transaction, then moved into the real table by one
`INSERT ... SELECT ... ON CONFLICT`: ids already stored are left alone, and a
snapshot replaces the stored one only when it is newer. Writing the same batch
twice therefore changes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg

from monitor.store.errors import translate
from monitor.store.rows import (
    TABLES,
    AuditRow,
    RejectedRow,
    Row,
    SnapshotRow,
    TableName,
)

__all__ = ["RowBatch", "WriteResult", "write_batch"]

_R = TypeVar("_R", AuditRow, RejectedRow)


@dataclass
class RowBatch:
    """Rows bound for the store, in the order they were read."""

    audit: list[AuditRow] = field(default_factory=list)
    snapshots: list[SnapshotRow] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)

    def add(self, row: Row) -> None:
        if isinstance(row, AuditRow):
            self.audit.append(row)
        elif isinstance(row, SnapshotRow):
            self.snapshots.append(row)
        else:
            self.rejected.append(row)

    def __len__(self) -> int:
        return len(self.audit) + len(self.snapshots) + len(self.rejected)


@dataclass(frozen=True)
class WriteResult:
    written: dict[TableName, int]
    """Rows added (or, for snapshots, moved forward), per table."""
    unchanged: dict[TableName, int]
    """Rows that were already stored, or older than the stored snapshot."""


_UPSERT_SNAPSHOTS = """
INSERT INTO account_snapshots AS s ({columns}, updated_at)
SELECT {columns}, now() FROM {source}
ON CONFLICT (account) DO UPDATE SET {assignments}, updated_at = now()
WHERE (EXCLUDED.kafka_partition = s.kafka_partition
       AND EXCLUDED.kafka_offset > s.kafka_offset)
   OR (EXCLUDED.kafka_partition <> s.kafka_partition
       AND EXCLUDED.as_of >= s.as_of)
"""
# The WHERE above is SnapshotRow.is_newer_than in SQL; keep the two in step.


async def write_batch(conn: asyncpg.Connection, batch: RowBatch) -> WriteResult:
    """Write every row of `batch` in one transaction; all or nothing.

    Raises `StoreUnavailable` (retry helps) or `StoreError` (it does not).
    """
    audit = _first_of_each(batch.audit, key=lambda r: r.output_id)
    rejected = _first_of_each(batch.rejected, key=lambda r: r.output_id)
    snapshots = _newest_per_account(batch.snapshots)
    written: dict[TableName, int] = dict.fromkeys(TABLES, 0)
    try:
        async with conn.transaction():
            if audit:
                written["audit_log"] = await _insert_new(
                    conn, AuditRow, audit, "output_id"
                )
            if rejected:
                written["rejected_events"] = await _insert_new(
                    conn, RejectedRow, rejected, "output_id"
                )
            if snapshots:
                written["account_snapshots"] = await _upsert_snapshots(conn, snapshots)
    except Exception as exc:
        raise translate(exc, f"writing a batch of {len(batch)} rows") from exc
    sizes: dict[TableName, int] = {
        "audit_log": len(batch.audit),
        "account_snapshots": len(batch.snapshots),
        "rejected_events": len(batch.rejected),
    }
    unchanged = {table: sizes[table] - written[table] for table in TABLES}
    return WriteResult(written=written, unchanged=unchanged)


async def _copy_to_temp(
    conn: asyncpg.Connection, kind: type[Row], rows: Sequence[Row]
) -> str:
    """Copy `rows` into a temporary twin of their table; return its name."""
    temp = f"incoming_{kind.table}"
    await conn.execute(
        f"CREATE TEMP TABLE {temp} (LIKE {kind.table} INCLUDING DEFAULTS) ON COMMIT DROP"
    )
    await conn.copy_records_to_table(
        temp, records=[r.values() for r in rows], columns=list(kind.columns())
    )
    return temp


async def _insert_new(
    conn: asyncpg.Connection, kind: type[Row], rows: Sequence[Row], key: str
) -> int:
    temp = await _copy_to_temp(conn, kind, rows)
    columns = ", ".join(kind.columns())
    status = await conn.execute(
        f"INSERT INTO {kind.table} ({columns}) SELECT {columns} FROM {temp} "
        f"ON CONFLICT ({key}) DO NOTHING"
    )
    return _row_count(status)


async def _upsert_snapshots(
    conn: asyncpg.Connection, rows: Sequence[SnapshotRow]
) -> int:
    temp = await _copy_to_temp(conn, SnapshotRow, rows)
    names = SnapshotRow.columns()
    assignments = ", ".join(f"{c} = EXCLUDED.{c}" for c in names if c != "account")
    status = await conn.execute(
        _UPSERT_SNAPSHOTS.format(
            columns=", ".join(names), source=temp, assignments=assignments
        )
    )
    return _row_count(status)


def _row_count(status: str) -> int:
    """Rows affected, from a command tag such as `INSERT 0 42`."""
    return int(status.rsplit(" ", 1)[-1])


def _first_of_each(rows: Iterable[_R], *, key: Callable[[_R], str]) -> list[_R]:
    """The first row of each id: a producer retry can put one output twice in a batch."""
    seen: dict[str, _R] = {}
    for row in rows:
        seen.setdefault(key(row), row)
    return list(seen.values())


def _newest_per_account(rows: Iterable[SnapshotRow]) -> list[SnapshotRow]:
    """One snapshot per account: the newest of the batch (an upsert can take one)."""
    newest: dict[str, SnapshotRow] = {}
    for row in rows:
        held = newest.get(row.account)
        if held is None or row.is_newer_than(held):
            newest[row.account] = row
    return list(newest.values())
