"""The credit engine: routes events to accounts, keeps them idempotent, and puts every
decision in a CloudEvents envelope with an id derived from the event that caused it.

The offline evaluator runs one engine over a file; the streaming service runs one per
partition, with the accounts held in a changelog-backed table. Both call `process`.
"""

from __future__ import annotations

import datetime as dt
import heapq
import traceback
import uuid
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas import events as ev
from schemas.parse import InvalidEvent, parse, validate

from .account import Account, Context, _iso
from .decisions import Decision, EventRejected
from .fx import FxBook, FxRate
from .policy import Policy
from .state import account_from_state, account_to_state, kept_json

OUTPUT_SOURCE = "credit-monitor"
_ID_NAMESPACE = uuid.UUID("6f1c2d0e-8a55-4c1e-9a57-0c9d3f1be7a1")
_PRUNE_EVERY = dt.timedelta(days=1)
DEFAULT_RETENTION = dt.timedelta(days=7)
"""how long finished documents and idempotency keys are kept, in event time"""


def output_id(*parts: str) -> str:
    """A deterministic id: the same cause always yields the same output id."""
    return str(uuid.uuid5(_ID_NAMESPACE, "\x1f".join(parts)))


@dataclass(slots=True)
class Outcome:
    """What one record did: its outputs, and which accounts it changed or refreshed."""

    outputs: list[dict[str, Any]] = field(default_factory=list)
    changed: dict[str, None] = field(default_factory=dict)
    """accounts whose state changed (ordered set): to be written back"""
    refreshed: dict[str, None] = field(default_factory=dict)
    """accounts whose snapshot figures moved with the clock (overdue days)"""
    duplicate: tuple[str | None, str] | None = None
    """(account, idempotency key) when the record was an event seen before; the account
    is None for an FX rate, which concerns every account"""
    cause: str | None = None
    """the record's idempotency key, `source` + US + `id`, when it was a valid event"""
    broadcast: bool = False
    """a clock tick or FX rate: it concerns every account of the partition"""
    kind: str | None = None
    """the record's event type, when it had a readable one"""
    failure: str | None = None
    """the traceback when applying the event failed unexpectedly (a defect): the event
    was rejected and its account left as it was before it"""


class CreditEngine:
    """Applies input events in order and returns the output events they cause."""

    def __init__(
        self,
        policy: Policy,
        *,
        accounts: MutableMapping[str, Account] | None = None,
        retention: dt.timedelta = DEFAULT_RETENTION,
        saved_state: Callable[[str], dict[str, Any] | None] | None = None,
    ) -> None:
        """
        Args:
            saved_state: the state (`account_to_state`) an account had after the last
                record that changed it, or None for an account not saved yet. An event
                that fails unexpectedly is undone with it. The streaming service reads
                it from its changelog table; by default the engine keeps a copy of each
                changed account itself.
        """
        self.ctx = Context(policy=policy, fx=FxBook(), retention=retention)
        self.accounts: MutableMapping[str, Account] = {} if accounts is None else accounts
        self._images: dict[str, bytes] | None = None
        if saved_state is None:
            self._images = {}
            saved_state = self._own_image
        self._saved_state = saved_state
        self._wake: list[tuple[dt.datetime, str]] = []
        self._overdue: set[str] = set()
        self._outcome = Outcome()
        self._position: int | None = None

    # ---- entry points ------------------------------------------------------------

    def process(
        self, raw: bytes | str | dict[str, Any], origin: dict[str, Any],
        position: int | None = None,
    ) -> list[dict[str, Any]]:
        """Parse and apply one record; a bad record comes back as `credit.event.rejected`.

        Args:
            position: the record's place in its input (Kafka offset, file line), rising
                from record to record. Accounts remember the position of the last record
                that changed them, and a record at or before it leaves them alone: an
                engine restored from saved accounts can then read its input again from
                any earlier point and decide exactly what it decided the first time.
        """
        return self.process_outcome(raw, origin, position).outputs

    def process_outcome(
        self, raw: bytes | str | dict[str, Any], origin: dict[str, Any],
        position: int | None = None,
    ) -> Outcome:
        """Like `process`, also telling which accounts changed (for the stream adapter)."""
        self._outcome = outcome = Outcome()
        self._position = position
        try:
            event = validate(raw) if isinstance(raw, dict) else parse(raw)
        except InvalidEvent as exc:
            if isinstance(exc.original, dict) and isinstance(exc.original.get("type"), str):
                outcome.kind = exc.original["type"]
            outcome.outputs.append(self._rejected(exc.original, str(exc), origin))
            return outcome
        kind: str = getattr(event, "type")  # every input model has its Literal type
        outcome.kind = kind
        outcome.cause = f"{event.source}\x1f{event.id}"
        outcome.broadcast = kind in ("clock.tick", "fx.rate.set")
        outcome.outputs.extend(self.apply(event, origin))
        if self._images is not None:
            for key in outcome.changed:
                self._images[key] = kept_json(account_to_state(self.accounts[key]))
        return outcome

    def _own_image(self, key: str) -> dict[str, Any] | None:
        assert self._images is not None
        image = self._images.get(key)
        return None if image is None else orjson.loads(image)

    def apply(self, event: Any, origin: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Apply one validated event."""
        if event.type == "clock.tick":
            return self._on_tick(event)
        if event.type == "fx.rate.set":
            return self._on_fx(event)
        return self._on_account_event(event, origin or {})

    def snapshots(self) -> list[dict[str, Any]]:
        """One `credit.account.snapshot` per account, sorted by company and customer."""
        return [self.snapshot_event(key) for key in sorted(self.accounts, key=_split)]

    def snapshot_event(self, key: str) -> dict[str, Any]:
        """The account's `credit.account.snapshot`, its id derived from its state."""
        account = self.accounts[key]
        data = account.snapshot(self.ctx)
        return self._envelope(
            "credit.account.snapshot", data, account.key,
            output_id("snapshot", account.key, data["as_of"] or "", str(account.seq)),
            data["as_of"], None,
        )

    def snapshot(self, key: str) -> dict[str, Any] | None:
        account = self.accounts.get(key)
        return None if account is None else account.snapshot(self.ctx)

    # ---- account events ----------------------------------------------------------

    def _on_account_event(self, event: Any, origin: dict[str, Any]) -> list[dict[str, Any]]:
        data = event.data
        key = f"{data.company}/{data.customer_id}"
        dedup = f"{event.source}\x1f{event.id}"
        account = self.accounts.get(key)
        if account is None:
            account = Account(company=data.company, customer_id=data.customer_id)
        elif dedup in account.seen or self._applied(account):
            self._outcome.duplicate = (key, dedup)
            return []  # seen before: changes nothing, produces nothing

        try:
            decisions = account.handle(event, self.ctx)
        except EventRejected as exc:
            # Every handler checks before it changes anything, so the account is as it
            # was. The verdict is remembered like an acceptance: judged again later,
            # against an account that has moved on, the event could pass, and a
            # redelivery would then change what the first delivery did not.
            account.seen[dedup] = account.as_of(self.ctx) or event.time
            self._store(account)
            return [self._rejected(event.model_dump(mode="json"), str(exc), origin, key)]
        except Exception as exc:  # noqa: BLE001 - a defect, not bad input
            # The account may be half changed: it goes back to its state after the
            # last record that changed it, and the event is rejected, remembered like
            # any rejection. One such event must not stop the account's partition
            # (a worker would meet it again after every restart).
            self._outcome.failure = traceback.format_exc()
            saved = self._saved_state(key)
            account = (account_from_state(saved) if saved is not None
                       else Account(company=data.company, customer_id=data.customer_id))
            account.seen[dedup] = account.as_of(self.ctx) or event.time
            self._store(account)
            error = (f"internal error while applying this event ({type(exc).__name__}: "
                     f"{exc}); the account was left as it was before it. This is a "
                     f"defect of the monitor: report it with this event")
            return [self._rejected(event.model_dump(mode="json"), error, origin, key)]

        as_of = account.as_of(self.ctx)
        assert as_of is not None
        account.seen[dedup] = as_of
        if account.next_prune_at is None or as_of >= account.next_prune_at:
            account.prune(self.ctx)
            account.next_prune_at = as_of + _PRUNE_EVERY
        self._store(account)
        return self._wrap(decisions, event, account.key)

    # ---- events for every account ------------------------------------------------

    def _advance_clock(self, time: dt.datetime) -> None:
        if self.ctx.clock is None or time > self.ctx.clock:
            self.ctx.clock = time

    # Ticks need no idempotency key: the clock only moves forward, and every account's
    # wake-up lies after its own clock, so a tick that moves nothing wakes nothing.

    def _on_tick(self, event: ev.ClockTicked) -> list[dict[str, Any]]:
        self._advance_clock(event.time)
        out = self._wake_due(event, set())
        self._outcome.refreshed.update(dict.fromkeys(self._overdue))
        return out

    def _on_fx(self, event: ev.FxRateSet) -> list[dict[str, Any]]:
        # A rate re-settles accounts, which can release orders: seen again (a
        # redelivery, or a record read again after a restart, when the accounts have
        # moved on) it must change nothing.
        dedup = f"{event.source}\x1f{event.id}"
        if dedup in self.ctx.seen:
            self._outcome.duplicate = (None, dedup)
            return []
        d = event.data
        self.ctx.fx.set(FxRate(d.currency, d.quote_currency, d.rate, event.time))
        self._advance_clock(event.time)
        self._remember_global(dedup)

        touched = {d.currency, d.quote_currency}
        out: list[dict[str, Any]] = []
        done: set[str] = set()
        for key in list(self.accounts):
            account = self.accounts[key]
            if self._applied(account):
                done.add(key)
                continue
            held = account_currencies(account)
            # Only accounts holding more than one currency, one of them this pair's.
            if len(held) > 1 and touched & held:
                out.extend(self._settle(account, event))
                done.add(key)
        out.extend(self._wake_due(event, done))
        return out

    def _remember_global(self, dedup: str) -> None:
        clock = self.ctx.clock
        assert clock is not None
        seen = self.ctx.seen
        horizon = clock - self.ctx.retention
        while seen:
            oldest = next(iter(seen))
            if seen[oldest] >= horizon:
                break
            del seen[oldest]
        seen[dedup] = clock

    def _wake_due(self, event: Any, done: set[str]) -> list[dict[str, Any]]:
        """Re-assess the accounts whose status the passing of time can change by now:
        those whose wake-up time has come, and every overdue one (its score moves each
        day with the oldest overdue days, and with it its grade and, for `risk_class =
        "auto"`, its thresholds). They are taken in order of account key."""
        clock = self.ctx.clock
        assert clock is not None
        woken: set[str] = set()
        while self._wake and self._wake[0][0] <= clock:
            wake_at, key = heapq.heappop(self._wake)
            account = self.accounts.get(key)
            if account is not None and account.wake_at == wake_at:
                woken.add(key)
        out: list[dict[str, Any]] = []
        for key in sorted((woken | self._overdue) - done):
            account = self.accounts[key]
            done.add(key)
            if self._applied(account):
                self._index(account)  # its wake-up may have been taken off the heap
                continue
            if key in woken:
                out.extend(self._settle(account, event))
                continue
            # Overdue but not due for a wake-up: written back only if it changed, so
            # that a tick does not rewrite every overdue account. A settle that
            # decides nothing changes nothing but the wake-up time and the overdue
            # flag (the crash-model tests hold it to that).
            wake_before = account.wake_at
            settled = self._settle_or_undo(account)
            if settled is None:
                continue
            if settled:
                self._store(account)
                out.extend(self._wrap(settled, event, key))
            elif account.wake_at != wake_before or not account.overdue:
                self._store(account)
        return out

    def _applied(self, account: Account) -> bool:
        """Whether the record being processed is already part of the account."""
        return (self._position is not None and account.record is not None
                and account.record >= self._position)

    def _settle(self, account: Account, event: Any) -> list[dict[str, Any]]:
        decisions = self._settle_or_undo(account)
        if decisions is None:
            return []
        self._store(account)
        return self._wrap(decisions, event, account.key)

    def _settle_or_undo(self, account: Account) -> list[Decision] | None:
        """Re-assess an account for a tick or a rate; if that fails (a defect), put the
        account back to its saved state and leave it out, so that the other accounts
        still move with the clock. None when it failed."""
        try:
            return account.settle(self.ctx)
        except Exception:  # noqa: BLE001 - a defect; the account is left as it was
            failure = traceback.format_exc()
            self._outcome.failure = (self._outcome.failure or "") + failure
            saved = self._saved_state(account.key)
            if saved is not None:
                restored = account_from_state(saved)
                self.accounts[account.key] = restored
                self._index(restored)
            return None

    def _store(self, account: Account) -> None:
        key = account.key
        if self._position is not None:
            account.record = self._position
        self.accounts[key] = account
        self._outcome.changed[key] = None
        self._index(account)

    def _index(self, account: Account) -> None:
        if account.wake_at is not None:
            heapq.heappush(self._wake, (account.wake_at, account.key))
        if account.overdue:
            self._overdue.add(account.key)
        else:
            self._overdue.discard(account.key)

    def shared_state(self) -> dict[str, Any]:
        """What the engine knows beyond its accounts (rates, clock, the FX rates seen),
        as JSON; `restore_shared_state` takes it back."""
        ctx = self.ctx
        return {
            "fx": ctx.fx.to_state(),
            "clock": ctx.clock.isoformat() if ctx.clock else None,
            "seen": {k: t.isoformat() for k, t in ctx.seen.items()},
        }

    def restore_shared_state(self, state: dict[str, Any]) -> None:
        ctx = self.ctx
        ctx.fx = FxBook.from_state(state["fx"])
        ctx.clock = dt.datetime.fromisoformat(state["clock"]) if state["clock"] else None
        ctx.seen = {k: dt.datetime.fromisoformat(t) for k, t in state.get("seen", {}).items()}

    def adopt(self, accounts: Iterable[Account]) -> None:
        """Take over accounts restored from elsewhere (a changelog), and index them."""
        for account in accounts:
            self.accounts[account.key] = account
            self._index(account)

    # ---- envelopes ---------------------------------------------------------------

    def _wrap(self, decisions: Iterable[Decision], event: Any, key: str) -> list[dict[str, Any]]:
        cause = f"{event.source}/{event.id}"
        time = _iso(event.time)
        out = []
        for n, decision in enumerate(decisions):
            out.append(self._envelope(
                decision.type, decision.data, key,
                output_id(event.source, event.id, key, str(n)), time, cause,
            ))
        return out

    @staticmethod
    def _envelope(
        kind: str, data: dict[str, Any], subject: str | None, out_id: str,
        time: str | None, cause: str | None,
    ) -> dict[str, Any]:
        envelope: dict[str, Any] = {
            "specversion": "1.0",
            "id": out_id,
            "source": OUTPUT_SOURCE,
            "type": kind,
        }
        if time is not None:  # CloudEvents: optional, but never null
            envelope["time"] = time
        envelope["subject"] = subject
        envelope["datacontenttype"] = "application/json"
        if cause is not None:
            envelope["causationid"] = cause
        envelope["data"] = data
        return envelope

    def _rejected(
        self, original: Any, error: str, origin: dict[str, Any], key: str | None = None
    ) -> dict[str, Any]:
        ident = _identity(original)
        return self._envelope(
            "credit.event.rejected",
            {"error": error, "event": _jsonable(original), "origin": origin},
            key,
            output_id("rejected", *ident),
            _event_time(original),
            "/".join(ident) if len(ident) == 2 else None,
        )


def account_currencies(account: Account) -> set[str]:
    found = {account.currency} if account.currency else set()
    for docs in (account.orders, account.deliveries, account.invoices, account.payments,
                 account.credit_notes):
        for doc in docs.values():
            found.add(doc.currency)
    # The score's monthly volumes are converted at the latest rate too, even after
    # their documents are forgotten.
    for by_currency in account.months.values():
        found.update(by_currency)
    return found


def _event_time(original: Any) -> str | None:
    """The rejected event's own time in UTC, when it has a readable one."""
    raw = original.get("time") if isinstance(original, dict) else None
    if not isinstance(raw, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(raw)
    except ValueError:
        return None
    return _iso(parsed) if parsed.tzinfo is not None else None


def _identity(original: Any) -> tuple[str, ...]:
    if isinstance(original, dict):
        src, ident = original.get("source"), original.get("id")
        if isinstance(src, str) and isinstance(ident, str):
            return (src, ident)
    return ("content", str(uuid.uuid5(_ID_NAMESPACE, repr(original))))


def _jsonable(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _split(key: str) -> tuple[str, str]:
    company, _, customer = key.partition("/")
    return company, customer
