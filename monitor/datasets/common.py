"""What both converters share: envelopes, money and time text, the rules that invent a
customer's credit profile, the daily clock, and ordering events by time.

Converters do not build one big list of event dicts. They build a *plan*: one small
tuple `(time, kind, payload)` per event, sort it by time (a stable sort, so events of
the same instant keep the order they were planned in), and only then turn each entry
into its envelope, one at a time, as the caller iterates.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal
from operator import itemgetter
from pathlib import Path
from typing import IO, Any, Literal

import orjson

UTC = dt.UTC
CENT = Decimal("0.01")
COMPANY = "main"
TICK_TIME = dt.time(0, 5)

Event = dict[str, Any]
PlanEntry = tuple[str, str, Any]


def data_dir() -> Path:
    """The project's `data/` folder, or `CREDIT_MONITOR_DATA_DIR` when that is set."""
    override = os.environ.get("CREDIT_MONITOR_DATA_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "data"


# ---- values ------------------------------------------------------------------------


def money(amount: Decimal) -> str:
    """An amount as contract text: 2 places, rounded half-even, never an exponent."""
    return f"{amount.quantize(CENT, rounding=ROUND_HALF_EVEN):f}"


def iso_utc(moment: dt.datetime) -> str:
    """An aware datetime as `YYYY-MM-DDTHH:MM:SSZ`; this text sorts chronologically."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def at(day: dt.date, clock: dt.time, tz: dt.tzinfo = UTC) -> str:
    """The UTC text of a wall-clock time on a local day."""
    return iso_utc(dt.datetime.combine(day, clock, tzinfo=tz))


def envelope(
    source: str, event_id: str, kind: str, time: str, data: dict[str, Any]
) -> Event:
    """A CloudEvents envelope in the key order of CONTRACT section 2."""
    event: Event = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": kind,
        "time": time,
    }
    if "customer_id" in data:
        event["subject"] = f"{data.get('company', COMPANY)}/{data['customer_id']}"
    event["data"] = data
    return event


def clock_ticks(
    first: dt.date, last: dt.date, source: str, *, synthetic: bool = True
) -> Iterator[PlanEntry]:
    """One `clock.tick` plan entry at 00:05 UTC on every day from `first` to `last`."""
    day = first
    while day <= last:
        yield (at(day, TICK_TIME), "tick", (source, day, synthetic))
        day += dt.timedelta(days=1)


def tick_event(time: str, payload: tuple[str, dt.date, bool]) -> Event:
    source, day, synthetic = payload
    data: dict[str, Any] = {"synthetic": True} if synthetic else {}
    return envelope(source, f"tick-{day.isoformat()}", "clock.tick", time, data)


# ---- inventing a credit profile -----------------------------------------------------

LimitBasis = Literal["fixed", "mean-invoice", "median-invoice", "max-invoice"]
_BASES: tuple[LimitBasis, ...] = (
    "fixed",
    "mean-invoice",
    "median-invoice",
    "max-invoice",
)


class RuleError(ValueError):
    """A limit or risk rule written in a way the converters cannot read."""


@dataclass(frozen=True, slots=True)
class LimitRule:
    """How a customer's credit limit is derived from their own invoices.

    Written `BASIS:VALUE[,round=R][,min=M]`:

    - `fixed:250`: every customer gets 250.
    - `mean-invoice:K`, `median-invoice:K`, `max-invoice:K`: K times the mean, median
      or largest invoice amount of that customer over the whole data set.

    The result is rounded *up* to a multiple of `round` (default 50) and is at least
    `min` (default 0). The data sets carry no limits, so this stands in for a credit
    controller's judgment; it looks at the customer's whole history, which a real
    controller could not, and that is acceptable for test data only.
    """

    basis: LimitBasis
    value: Decimal
    round_to: Decimal = Decimal(50)
    minimum: Decimal = Decimal(0)

    @classmethod
    def parse(cls, text: str) -> LimitRule:
        head, *options = [part.strip() for part in text.split(",")]
        basis, sep, value = head.partition(":")
        if not sep or basis not in _BASES:
            raise RuleError(
                f"limit rule {text!r}: start with one of {', '.join(_BASES)}, "
                "then ':' and a number, e.g. 'fixed:250' or 'median-invoice:4'"
            )
        fields: dict[str, Decimal] = {"value": _positive(value, text)}
        for option in options:
            key, sep, number = option.partition("=")
            if not sep or key not in ("round", "min"):
                raise RuleError(f"limit rule {text!r}: unknown option {option!r}")
            fields["round_to" if key == "round" else "minimum"] = _positive(
                number, text
            )
        return cls(basis=basis, **fields)

    def __str__(self) -> str:
        return f"{self.basis}:{self.value},round={self.round_to},min={self.minimum}"

    def limit_for(self, invoice_amounts: Sequence[Decimal]) -> Decimal:
        if self.basis == "fixed" or not invoice_amounts:
            base = self.value if self.basis == "fixed" else self.minimum
        else:
            base = self.value * _statistic(self.basis, invoice_amounts)
        if self.round_to > 0:
            steps = (base / self.round_to).to_integral_value(rounding=ROUND_CEILING)
            base = steps * self.round_to
        return max(base, self.minimum).quantize(CENT)


def _statistic(basis: LimitBasis, amounts: Sequence[Decimal]) -> Decimal:
    if basis == "mean-invoice":
        return sum(amounts, Decimal(0)) / len(amounts)
    if basis == "max-invoice":
        return max(amounts)
    ordered = sorted(amounts)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def _positive(text: str, rule: str) -> Decimal:
    try:
        number = Decimal(text)
    except ArithmeticError:
        number = Decimal("NaN")
    if not number.is_finite() or number < 0:
        raise RuleError(f"rule {rule!r}: {text!r} is not a number >= 0")
    return number


RiskClass = Literal["A", "B", "C", "D"]


@dataclass(frozen=True, slots=True)
class RiskRule:
    """How a customer's risk class is derived from the share of invoices paid late.

    Written `late-share:A,B,C` (three ascending shares between 0 and 1): class A up
    to a late share of A, B up to B, C up to C, D above. Or `fixed:X` for one class
    for everybody. The default, `late-share:0.1,0.3,0.6`, splits the IBM customers
    (median late share 0.25) into all four classes.
    """

    bands: tuple[Decimal, Decimal, Decimal] = (
        Decimal("0.1"),
        Decimal("0.3"),
        Decimal("0.6"),
    )
    fixed: RiskClass | None = None

    @classmethod
    def parse(cls, text: str) -> RiskRule:
        kind, sep, rest = text.partition(":")
        if sep and kind == "fixed" and rest in ("A", "B", "C", "D"):
            return cls(fixed=rest)  # type: ignore[arg-type]
        if sep and kind == "late-share":
            bands = tuple(_positive(p.strip(), text) for p in rest.split(","))
            if len(bands) == 3 and list(bands) == sorted(bands) and bands[2] <= 1:
                return cls(bands=bands)
        raise RuleError(
            f"risk rule {text!r}: write 'late-share:0.1,0.3,0.6' (three ascending "
            "shares) or 'fixed:B'"
        )

    def __str__(self) -> str:
        if self.fixed:
            return f"fixed:{self.fixed}"
        return "late-share:" + ",".join(str(b) for b in self.bands)

    def risk_class(self, late: int, total: int) -> RiskClass:
        if self.fixed:
            return self.fixed
        for band, risk in zip(self.bands, ("A", "B", "C")):
            # late / total <= band, without dividing
            if late <= band * total:
                return risk  # type: ignore[return-value]
        return "D"


DEFAULT_RISK_RULE = RiskRule()


@dataclass(slots=True)
class CustomerHistory:
    """What the profile rules look at: a customer's invoices and how many were late."""

    customer_id: str
    first_seen: dt.datetime
    invoice_amounts: list[Decimal]
    late: int = 0


def profile_data(
    history: CustomerHistory,
    *,
    currency: str,
    timezone: str,
    limit_rule: LimitRule,
    risk_rule: RiskRule,
    payment_terms_days: int = 30,
) -> dict[str, Any]:
    """The `data` of an invented `erp.credit_profile.set`, saying how it was derived."""
    invoices = len(history.invoice_amounts)
    return {
        "company": COMPANY,
        "customer_id": history.customer_id,
        "currency": currency,
        "credit_limit": money(limit_rule.limit_for(history.invoice_amounts)),
        "risk_class": risk_rule.risk_class(history.late, invoices),
        "timezone": timezone,
        "payment_terms_days": payment_terms_days,
        "synthetic": True,
        "derived_by": {
            "credit_limit": str(limit_rule),
            "risk_class": str(risk_rule),
            "invoices": invoices,
            "late_invoices": history.late,
        },
    }


# ---- ordering and writing -----------------------------------------------------------


def first_customers(
    histories: Iterable[CustomerHistory], count: int | None
) -> set[str]:
    """The ids of the `count` customers seen first (ties by id); all when None."""
    ordered = sorted(histories, key=lambda h: (h.first_seen, h.customer_id))
    if count is not None:
        ordered = ordered[:count]
    return {h.customer_id for h in ordered}


def render(
    plan: list[PlanEntry], builders: dict[str, Callable[[str, Any], Event]]
) -> Iterator[Event]:
    """Sort the plan by time (stable) and build each event only when it is asked for."""
    plan.sort(key=itemgetter(0))
    for time, kind, payload in plan:
        yield builders[kind](time, payload)


def write_jsonl(events: Iterable[Event], out: IO[bytes]) -> dict[str, int]:
    """Write events as JSON lines; returns how many of each type were written."""
    counts: dict[str, int] = {}
    dumps = orjson.dumps
    write = out.write
    for event in events:
        write(dumps(event) + b"\n")
        kind = event["type"]
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def replicate_customers(
    events: Iterable[Event], copies: int, *, shift: int = 1_000_000
) -> Iterator[Event]:
    """`copies` interleaved copies of a stream, copy k with customer ids shifted by k.

    Copy 0 is the stream itself. In copy k >= 1 a numeric customer id N becomes
    N + k * shift (any other id gets the suffix `-rk`), every event id gets the prefix
    `rk-` and every document id the same prefix, so the copies are distinct accounts
    with distinct documents. Clock ticks are shared, not copied. Each input event is
    followed directly by its copies, so a time-sorted stream stays time-sorted.
    """
    for event in events:
        yield event
        data = event.get("data") or {}
        if "customer_id" not in data:
            continue
        for k in range(1, copies):
            yield _shifted(event, k, shift)


_DOC_KEYS = ("order_id", "invoice_id", "credit_note_id", "payment_id", "delivery_id")


def _shifted(event: Event, k: int, shift: int) -> Event:
    data = dict(event["data"])
    customer = data["customer_id"]
    data["customer_id"] = (
        str(int(customer) + k * shift) if customer.isdigit() else f"{customer}-r{k}"
    )
    prefix = f"r{k}-"
    for key in _DOC_KEYS:
        if key in data:
            data[key] = prefix + data[key]
    if "allocations" in data:
        data["allocations"] = [
            {**a, "invoice_id": prefix + a["invoice_id"]} for a in data["allocations"]
        ]
    copy = dict(event)
    copy["id"] = prefix + event["id"]
    copy["subject"] = f"{data.get('company', COMPANY)}/{data['customer_id']}"
    copy["data"] = data
    return copy
