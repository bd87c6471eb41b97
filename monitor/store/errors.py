"""The store's own exceptions, and the one place asyncpg errors are translated.

Callers decide what to do from the class alone: `StoreUnavailable` means the
database could not be reached or gave up for a passing reason, and the same
call can succeed later; any other `StoreError` needs a person (a missing
migration, a wrong password, a privilege) and retrying unchanged will fail
again.
"""

from __future__ import annotations

import asyncpg

__all__ = ["StoreError", "StoreUnavailable", "translate"]


class StoreError(Exception):
    """PostgreSQL refused the work; retrying unchanged does not help."""

    retryable: bool = False


class StoreUnavailable(StoreError):
    """PostgreSQL is unreachable or failed for a passing reason; retrying helps."""

    retryable = True


# SQLSTATE classes whose errors pass without anyone changing anything:
# 08 connection exception, 40 transaction rollback (serialization, deadlock),
# 53 insufficient resources (too many connections, disk full is freed by
# people but the sink must wait either way), 57 operator intervention
# (shutdown, starting up, statement cancelled), 58 system error (I/O).
_PASSING_CLASSES = frozenset({"08", "40", "53", "57", "58"})
# Single states in other classes that pass as well: lock not available, and a
# read-only transaction while a replica is being promoted after a failover.
_PASSING_STATES = frozenset({"55P03", "25006"})


def is_passing(exc: BaseException) -> bool:
    """True when `exc` is a driver or network failure that retrying can cure."""
    if isinstance(exc, StoreError):
        return exc.retryable
    if isinstance(exc, (OSError, TimeoutError)):
        return True
    if isinstance(exc, asyncpg.InterfaceError):
        # "connection is closed" and its relatives: a new connection cures it.
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = exc.sqlstate or ""
        return state[:2] in _PASSING_CLASSES or state in _PASSING_STATES
    return False


def translate(exc: BaseException, doing: str) -> StoreError:
    """The project exception for a driver error met while `doing` something.

    Raise the result `from exc` so the driver's traceback stays attached.
    """
    if isinstance(exc, StoreError):
        return exc
    # asyncpg reports a session killed inside a transaction as an InterfaceError
    # from leaving the transaction; the server's own reason is its context.
    while isinstance(exc, asyncpg.InterfaceError) and exc.__context__ is not None:
        exc = exc.__context__
    detail = f"{doing}: {type(exc).__name__}: {exc}"
    if is_passing(exc):
        return StoreUnavailable(detail)
    return StoreError(detail)
