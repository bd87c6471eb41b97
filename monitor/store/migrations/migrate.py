"""Apply the versioned SQL files of this package to a database, once each.

Files are named `NNNN_what.sql` and applied in the order of their number, each
in its own transaction together with its row in `schema_migrations`, so a
failure leaves the database at the last complete version. A session advisory
lock, per database and schema, makes workers that start together take turns:
the first applies, the others find nothing left to do.

Objects are created in the first schema of the connection's `search_path`; to
use another schema put it in the DSN (`...?search_path=my_schema`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from monitor.store.connection import connect
from monitor.store.errors import StoreError, translate

__all__ = ["Migration", "available_migrations", "migrate"]

log = logging.getLogger(__name__)

_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

# Both halves of the advisory lock key: the first names this purpose, the second
# (hashtext of the schema) keeps separate schemas of one database independent.
_LOCK_PURPOSE = "credit-monitor schema migrations"

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text        PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    """The file name without `.sql`, e.g. `0001_initial`."""
    sql: str


def available_migrations() -> list[Migration]:
    """The SQL files shipped in this package, in the order they apply."""
    found: dict[str, Migration] = {}
    for entry in resources.files("monitor.store.migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise StoreError(
                f"migration file {entry.name} is not named NNNN_what.sql; rename it"
            )
        number = match.group(1)
        if number in found:
            raise StoreError(
                f"migrations {found[number].version} and {entry.name} share the "
                f"number {number}; renumber one"
            )
        found[number] = Migration(entry.name.removesuffix(".sql"), entry.read_text())
    if not found:
        # Without them migrate() would report "up to date" on an empty database.
        raise StoreError(
            "no migration files installed with monitor.store.migrations: the package "
            'was built without its SQL files (package-data "store/migrations/*.sql" '
            "in pyproject.toml)"
        )
    return [found[number] for number in sorted(found)]


async def migrate(dsn: str) -> list[str]:
    """Apply the migrations the database lacks; return the versions applied.

    Steps:
    1. connect and take the advisory lock (waiting for another worker if needed);
    2. create `schema_migrations` if missing and read the versions it holds;
    3. apply each missing migration in its own transaction, in order;
    4. release the lock and disconnect.

    Raises `StoreUnavailable` when PostgreSQL cannot be reached (retry later) and
    `StoreError` when a migration fails (fix the SQL or the database first).
    """
    migrations = available_migrations()
    conn = await connect(dsn)
    try:
        return await _migrate(conn, migrations)
    finally:
        # Closing the session also releases the advisory lock.
        await conn.close()


async def _migrate(conn: asyncpg.Connection, migrations: list[Migration]) -> list[str]:
    applied: list[str] = []
    step = "taking the migration lock"
    try:
        schema = await conn.fetchval("SELECT current_schema()")
        if schema is None:
            raise StoreError(
                "no schema to migrate: the first schema of search_path does not "
                "exist; create it or fix search_path in the DSN"
            )
        lock = (_LOCK_PURPOSE, schema)
        got = await conn.fetchval(
            "SELECT pg_try_advisory_lock(hashtext($1), hashtext($2))", *lock
        )
        if not got:
            log.info("another worker is migrating schema %s; waiting for it", schema)
            await conn.execute(
                "SELECT pg_advisory_lock(hashtext($1), hashtext($2))", *lock
            )

        step = "reading schema_migrations"
        await conn.execute(_CREATE_LEDGER)
        done = {
            r["version"]
            for r in await conn.fetch("SELECT version FROM schema_migrations")
        }
        known = {m.version for m in migrations}
        if unknown := sorted(done - known):
            log.warning(
                "schema %s has migrations this code does not know (%s): an older "
                "release is running against a newer database",
                schema,
                ", ".join(unknown),
            )

        for migration in migrations:
            if migration.version in done:
                continue
            step = f"applying migration {migration.version}"
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)",
                    migration.version,
                )
            log.info("applied migration %s to schema %s", migration.version, schema)
            applied.append(migration.version)

        if not applied:
            log.debug("schema %s is up to date", schema)
        await conn.execute(
            "SELECT pg_advisory_unlock(hashtext($1), hashtext($2))", *lock
        )
    except StoreError:
        raise
    except Exception as exc:
        raise translate(exc, step) from exc
    return applied
