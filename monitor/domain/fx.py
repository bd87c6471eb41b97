"""Exchange rates: the latest rate by event time, usable in both directions."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Any


@dataclass(frozen=True, slots=True)
class FxRate:
    """1 `base` = `rate` `quote`, as set by an `fx.rate.set` event at `time`."""

    base: str
    quote: str
    rate: Decimal
    time: dt.datetime

    def to_state(self) -> list[Any]:
        return [self.base, self.quote, str(self.rate), self.time.isoformat()]

    @classmethod
    def from_state(cls, raw: list[Any]) -> FxRate:
        return cls(raw[0], raw[1], Decimal(raw[2]), dt.datetime.fromisoformat(raw[3]))


CONVERTED_PLACES = Decimal("1e-20")


class FxBook:
    """Every rate known so far; of several for one pair, the latest event time counts."""

    __slots__ = ("_rates", "version")

    def __init__(self) -> None:
        self._rates: dict[tuple[str, str], FxRate] = {}
        self.version = 0

    def set(self, rate: FxRate) -> bool:
        """Record a rate; False when an equally recent or later one is already known."""
        known = self._rates.get((rate.base, rate.quote))
        if known is not None and known.time > rate.time:
            return False
        self._rates[(rate.base, rate.quote)] = rate
        self.version += 1
        return True

    def quote(self, base: str, quote: str) -> FxRate | None:
        """The rate that converts `base` into `quote`, direct or inverse, latest first."""
        direct = self._rates.get((base, quote))
        inverse = self._rates.get((quote, base))
        if direct is None:
            return inverse
        if inverse is None or direct.time >= inverse.time:
            return direct
        return inverse

    def convert(self, amount: Decimal, base: str, quote: str) -> Decimal | None:
        """`amount` of `base` in `quote` to 20 decimal places; None without a rate.

        A fixed number of places (rather than of significant digits) lets sums of
        converted amounts be exact: `compute_position` adds them with enough digits."""
        if base == quote:
            return amount
        found = self.quote(base, quote)
        if found is None:
            return None
        with localcontext() as ctx:
            ctx.prec = 100
            if found.base == base:
                return (amount * found.rate).quantize(CONVERTED_PLACES)
            return (amount / found.rate).quantize(CONVERTED_PLACES)

    def to_state(self) -> list[Any]:
        return [r.to_state() for r in self._rates.values()]

    @classmethod
    def from_state(cls, raw: list[Any]) -> FxBook:
        book = cls()
        for item in raw:
            book.set(FxRate.from_state(item))
        return book
