"""Opening PostgreSQL connections and pools, with driver errors translated."""

from __future__ import annotations

import asyncpg

from monitor.store.errors import translate

__all__ = ["connect", "create_pool"]

CONNECT_TIMEOUT_SECONDS = 10.0
"""How long one connection attempt may take before it counts as a failure."""


async def connect(
    dsn: str,
    *,
    timeout_seconds: float = CONNECT_TIMEOUT_SECONDS,
    command_timeout_seconds: float | None = None,
) -> asyncpg.Connection:
    """One connection, or `StoreUnavailable` / `StoreError` saying why not.

    Server settings can ride in the DSN's query string, e.g.
    `...?search_path=tenant_a` (asyncpg passes unknown parameters to the server).
    With `command_timeout_seconds` a statement that gets no answer in time fails
    with `TimeoutError` instead of waiting on a server that is gone.
    """
    try:
        return await asyncpg.connect(
            dsn, timeout=timeout_seconds, command_timeout=command_timeout_seconds
        )
    except Exception as exc:
        raise translate(exc, "connecting to PostgreSQL") from exc


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 5,
    timeout_seconds: float = CONNECT_TIMEOUT_SECONDS,
) -> asyncpg.Pool:
    """A pool for the read helpers of `monitor.store.queries`."""
    try:
        pool = await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, timeout=timeout_seconds
        )
    except Exception as exc:
        raise translate(exc, "opening a PostgreSQL pool") from exc
    assert pool is not None  # create_pool returns None only when awaited twice
    return pool
