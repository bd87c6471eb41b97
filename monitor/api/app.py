"""The operator API: what credit controllers and on-call staff read and do.

Reads come from PostgreSQL (the snapshots, holds, blocked orders and audit log that the
worker keeps); the one action, releasing a blocked order, goes to Kafka as a
`credit.command.release_order` event, so the worker applies it in order with the
account's other events, exactly like a release from the ERP. The request is written to
the audit log with who asked and why before the answer is sent.
"""


import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Annotated, Any

import asyncpg
import orjson
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from monitor.api.auth import Principal, Role, TokenBook
from monitor.settings import Settings
from monitor.store import queries
from monitor.store.connection import create_pool
from monitor.store.errors import StoreError, StoreUnavailable
from monitor.store.rows import read_output
from monitor.store.writer import RowBatch, write_batch
from schemas import topics
from streams.publish import EventPublisher

log = logging.getLogger(__name__)

API_SOURCE = "credit-monitor/api"
TITLE = "credit-monitor operator API"

_bearer = HTTPBearer(auto_error=False, description="a token from the API token file")
# Ids and reasons of printable characters only: a NUL or other control character can
# be neither stored in PostgreSQL text nor meant by a person.
_PRINTABLE = r"^[^\x00-\x1f\x7f]+$"


# ---- response and request bodies ---------------------------------------------------


class ReleaseRequest(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)
    reason: str = Field(min_length=3, max_length=500, pattern=_PRINTABLE,
                        description="why the order may go; kept with the release")


class KafkaPosition(BaseModel):
    topic: str
    partition: int
    offset: int


class ReleaseAccepted(BaseModel):
    command_id: str = Field(description="the id of the credit.command.release_order event")
    account: str
    order_id: str
    by: str
    reason: str
    kafka: KafkaPosition
    note: str = Field(
        "the worker applies the release in order with the account's other events; "
        "credit.order.released follows on credit.decisions")


class AccountView(BaseModel):
    account: str
    status: str | None
    as_of: dt.datetime | None
    snapshot: dict[str, Any] = Field(
        description="the latest credit.account.snapshot data: exposure by component, "
        "the open documents that make it up, overdue aging, blocked orders, the reasons "
        "of the status")
    updated_at: dt.datetime
    recent_decisions: list[dict[str, Any]] = Field(
        description="the account's newest audit-log entries, newest first")


class HeldAccountView(BaseModel):
    account: str
    company: str
    customer_id: str
    reason_codes: list[str]
    currency: str | None
    exposure_total: str | None
    credit_limit: str | None
    effective_limit: str | None
    overdue_amount: str | None
    oldest_overdue_days: int | None
    blocked_orders_count: int
    hold_since: dt.datetime | None
    as_of: dt.datetime | None


class BlockedOrderView(BaseModel):
    account: str
    company: str
    customer_id: str
    order_id: str | None
    amount: str | None
    currency: str | None
    reason_codes: list[str]
    blocked_at: dt.datetime | None
    account_status: str | None


class Problem(BaseModel):
    detail: str


# ---- the application ---------------------------------------------------------------


class Services:
    """What the handlers need, opened at start-up and closed at shutdown."""

    def __init__(self, settings: Settings, tokens: TokenBook) -> None:
        self.settings = settings
        self.tokens = tokens
        self.pool: asyncpg.Pool | None = None
        self.publisher: EventPublisher | None = None

    async def open(self) -> None:
        # Neither service is needed to start: reads need only PostgreSQL, releases
        # both, and each is opened again on the next request that needs it.
        try:
            await self.kafka()
        except Exception as exc:  # noqa: BLE001 - any broker trouble means the same
            log.warning("Kafka not reachable at start-up (%s); releases answer 503 "
                        "until it is", exc)
        try:
            self.pool = await create_pool(self.settings.pg_dsn.get_secret_value())
        except StoreError as exc:
            log.warning("PostgreSQL not reachable at start-up (%s); reads answer 503 "
                        "until it is", exc)

    async def kafka(self) -> EventPublisher:
        if self.publisher is None:
            publisher = EventPublisher(self.settings)
            try:
                await publisher.__aenter__()
            except BaseException:
                await publisher.producer.stop()
                raise
            self.publisher = publisher
        return self.publisher

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        if self.publisher is not None:
            await self.publisher.__aexit__(None, None, None)

    async def db(self) -> asyncpg.Pool:
        if self.pool is None:
            self.pool = await create_pool(self.settings.pg_dsn.get_secret_value())
        return self.pool


def create_app(settings: Settings, tokens: TokenBook) -> FastAPI:
    services = Services(settings, tokens)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await services.open()
        try:
            yield
        finally:
            await services.close()

    app = FastAPI(
        title=TITLE, version="1", lifespan=lifespan,
        description="Accounts, holds and blocked orders as the credit monitor sees them, "
        "and the release of a blocked order with a reason. Every call needs a bearer "
        "token; viewers read, credit controllers also release.",
    )
    app.state.services = services

    @app.exception_handler(StoreError)
    async def store_down(request: Request, exc: StoreError) -> JSONResponse:
        code = 503 if isinstance(exc, StoreUnavailable) else 500
        return JSONResponse({"detail": f"PostgreSQL: {exc}"}, status_code=code)

    def require(role: Role) -> Callable[..., Awaitable[Principal]]:
        async def check(
            creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        ) -> Principal:
            if creds is None or creds.scheme.lower() != "bearer":
                raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a bearer token is needed",
                                    headers={"WWW-Authenticate": "Bearer"})
            who = services.tokens.identify(creds.credentials)
            if who is None:
                raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown token",
                                    headers={"WWW-Authenticate": "Bearer"})
            if not who.may(role):
                raise HTTPException(status.HTTP_403_FORBIDDEN,
                                    f"{who.name} is a {who.role}; this needs a {role}")
            return who
        return check

    viewer = Annotated[Principal, Depends(require("viewer"))]
    controller = Annotated[Principal, Depends(require("controller"))]
    company_p = Annotated[str, Path(description="the account's company", min_length=1,
                                    max_length=200, pattern=_PRINTABLE)]
    customer_p = Annotated[str, Path(description="the ERP customer id", min_length=1,
                                     max_length=200, pattern=_PRINTABLE)]
    errors: dict[int | str, dict[str, Any]] = {
        401: {"model": Problem, "description": "no token, or an unknown one"},
        403: {"model": Problem, "description": "the token's role may not do this"},
        503: {"model": Problem, "description": "PostgreSQL or Kafka is not reachable"},
    }

    @app.get("/v1/accounts/on-hold", response_model=list[HeldAccountView],
             responses=errors, summary="Accounts on hold, the longest held first")
    async def on_hold(who: viewer) -> list[HeldAccountView]:
        rows = await queries.accounts_on_hold(await services.db())
        return [HeldAccountView(**_texts(asdict(r))) for r in rows]

    @app.get("/v1/accounts/{company}/{customer_id:path}", response_model=AccountView,
             responses={**errors, 404: {"model": Problem}},
             summary="An account: exposure, its documents, overdue, holds and why")
    async def account(company: company_p, customer_id: customer_p, who: viewer,
                      decisions: Annotated[int, Query(ge=0, le=500)] = 20) -> AccountView:
        pool = await services.db()
        key = f"{company}/{customer_id}"
        snap = await queries.get_snapshot(pool, key)
        if snap is None:
            raise HTTPException(404, f"no account {key} in the store")
        audit = await queries.audit_for_account(pool, key, limit=decisions) if decisions else []
        return AccountView(
            account=key, status=snap.status, as_of=snap.as_of, snapshot=dict(snap.data),
            updated_at=snap.updated_at,
            recent_decisions=[_texts(asdict(a)) for a in audit],
        )

    @app.get("/v1/orders/blocked", response_model=list[BlockedOrderView],
             responses=errors, summary="Orders waiting on credit, the longest waiting first")
    async def blocked(who: viewer, account: Annotated[
            str | None, Query(description="only this company/customer_id",
                              max_length=401, pattern=_PRINTABLE)] = None,
    ) -> list[BlockedOrderView]:
        rows = await queries.blocked_orders(await services.db(), account)
        return [BlockedOrderView(**_texts(asdict(r))) for r in rows]

    @app.post("/v1/accounts/{company}/{customer_id:path}/orders/{order_id:path}/release",
              status_code=202, response_model=ReleaseAccepted,
              responses={**errors, 404: {"model": Problem}, 409: {"model": Problem}},
              summary="Release a blocked order, with a reason (credit controllers only)")
    async def release(company: company_p, customer_id: customer_p,
                      order_id: Annotated[str, Path(min_length=1, max_length=200,
                                                    pattern=_PRINTABLE)],
                      body: ReleaseRequest, who: controller) -> ReleaseAccepted:
        pool = await services.db()
        key = f"{company}/{customer_id}"
        snap = await queries.get_snapshot(pool, key)
        if snap is None:
            raise HTTPException(404, f"no account {key} in the store")
        blocked_ids = {o.get("order_id") for o in snap.data.get("blocked_orders", [])}
        if order_id not in blocked_ids:
            raise HTTPException(409, f"order {order_id} of {key} is not blocked "
                                f"(as of {snap.data.get('as_of')}); nothing to release")
        # In replay mode business time is the history's, not the wall clock's: the
        # release is dated at the account's own clock so that it does not move it.
        at = snap.data.get("as_of") if settings.mode == "replay" else None
        command = release_command(company, customer_id, order_id, who, body.reason, at)
        value = orjson.dumps(command)
        try:
            publisher = await services.kafka()
            meta = await publisher.publish_and_wait(command)
        except Exception as exc:  # noqa: BLE001 - not taken by the broker: nothing happened
            raise HTTPException(503, f"Kafka did not accept the release: {exc}") from exc

        # Who and why, in the audit log beside the decisions it will cause. The release
        # is in Kafka already, so from here on the answer is 202 whatever happens.
        note = None
        batch = RowBatch()
        batch.add(read_output("audit_log", value, meta.partition, meta.offset))
        try:
            async with pool.acquire() as conn:
                await write_batch(conn, batch)
        except Exception as exc:  # noqa: BLE001 - reported in the answer and the log
            log.error("release %s of %s %s by %s is in Kafka but its request could not "
                      "be written to the audit log: %s", command["id"], key, order_id,
                      who.name, exc)
            note = (f"the request could not be written to the audit log ({exc}); the "
                    "release itself is in Kafka, and its credit.order.released, with "
                    "who and why, reaches the audit log through the worker")
        log.info("release of %s %s by %s: %s", key, order_id, who.name, body.reason)
        accepted = ReleaseAccepted(
            command_id=command["id"], account=key, order_id=order_id, by=who.name,
            reason=body.reason,
            kafka=KafkaPosition(topic=settings.topic(topics.INPUT),
                                partition=meta.partition, offset=meta.offset),
        )
        return accepted if note is None else accepted.model_copy(update={"note": note})

    return app


def release_command(company: str, customer_id: str, order_id: str, who: Principal,
                    reason: str, at: str | None = None) -> dict[str, Any]:
    """The contract's `credit.command.release_order`, from the API, signed by `who`,
    dated `at` (ISO time) or now."""
    now = at or dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
    return {
        "specversion": "1.0", "id": f"release-{uuid.uuid4()}", "source": API_SOURCE,
        "type": "credit.command.release_order", "time": now.replace("+00:00", "Z"),
        "subject": f"{company}/{customer_id}",
        "data": {"company": company, "customer_id": customer_id, "order_id": order_id,
                 "by": who.name, "reason": reason},
    }


def _texts(row: dict[str, Any]) -> dict[str, Any]:
    """Amounts as exact decimal strings, tuples as lists: JSON without surprises."""
    from decimal import Decimal

    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, Decimal):
            out[k] = format(v, "f")
        elif isinstance(v, tuple):
            out[k] = list(v)
        else:
            out[k] = v
    return out
