"""Pytest plugin: where the real local services are, and a hard check they are up.

Loaded from tests/conftest.py through ``pytest_plugins``. Integration tests ask
for the ``kafka_bootstrap`` / ``pg_dsn`` fixtures; when a service does not
answer, the test fails (never skips) with a message that says how to start it.
Start them with ``bash deploy/services.sh start`` (.ci/run does this).

Environment (the same names as deploy/ and the monitor itself):
  CREDIT_MONITOR_KAFKA_BOOTSTRAP  default 127.0.0.1:$CREDIT_MONITOR_KAFKA_PORT (9092)
  CREDIT_MONITOR_PG_DSN           default postgresql://credit_monitor:credit_monitor@
                                  127.0.0.1:$CREDIT_MONITOR_PG_PORT (55432)/credit_monitor
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import asyncpg
import pytest

DEFAULT_KAFKA_PORT = 9092
DEFAULT_PG_PORT = 55432

START_HINT = "start the local services with `bash deploy/services.sh start` (see deploy/README.md)"


def kafka_bootstrap_from_env() -> str:
    port = os.environ.get("CREDIT_MONITOR_KAFKA_PORT", str(DEFAULT_KAFKA_PORT))
    return os.environ.get("CREDIT_MONITOR_KAFKA_BOOTSTRAP", f"127.0.0.1:{port}")


def pg_dsn_from_env() -> str:
    port = os.environ.get("CREDIT_MONITOR_PG_PORT", str(DEFAULT_PG_PORT))
    default = f"postgresql://credit_monitor:credit_monitor@127.0.0.1:{port}/credit_monitor"
    return os.environ.get("CREDIT_MONITOR_PG_DSN", default)


def _tcp_reachable(host: str, port: int, timeout: float = 3.0) -> str | None:
    """None if a TCP connection succeeds, else the error text."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def _first_host_port(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def require_kafka() -> str:
    """Bootstrap server of a reachable broker, or fail the calling test."""
    bootstrap = kafka_bootstrap_from_env()
    host, port = _first_host_port(bootstrap)
    error = _tcp_reachable(host, port)
    if error is not None:
        pytest.fail(
            f"Kafka broker not reachable at {bootstrap} "
            f"(CREDIT_MONITOR_KAFKA_BOOTSTRAP): {error}; {START_HINT}",
            pytrace=False,
        )
    return bootstrap


def require_postgres() -> str:
    """DSN of a reachable PostgreSQL server, or fail the calling test."""
    dsn = pg_dsn_from_env()
    parts = urlsplit(dsn)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    error = _tcp_reachable(host, port)
    if error is not None:
        shown = dsn.replace(f":{parts.password}@", ":***@") if parts.password else dsn
        pytest.fail(
            f"PostgreSQL not reachable at {shown} (CREDIT_MONITOR_PG_DSN): "
            f"{error}; {START_HINT}",
            pytrace=False,
        )
    return dsn


@pytest.fixture
def kafka_bootstrap() -> str:
    return require_kafka()


@pytest.fixture
def pg_dsn() -> str:
    return require_postgres()


@pytest.fixture
def schema_dsn(pg_dsn: str) -> Iterator[str]:
    """A DSN whose search_path is a fresh schema (dropped afterwards); a worker or the
    API migrates into it."""
    schema = f"t_{uuid.uuid4().hex[:12]}"

    async def execute(sql: str) -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(execute(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{pg_dsn}{'&' if '?' in pg_dsn else '?'}search_path={schema}"
    finally:
        asyncio.run(execute(f"DROP SCHEMA {schema} CASCADE"))
