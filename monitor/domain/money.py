"""Money: exact decimals, ISO 4217 minor units, and rounding only when reported."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal
from functools import lru_cache

import iso4217

ZERO = Decimal(0)
ONE = Decimal(1)
# Rounding for reports never fails: the default context's 28 digits would raise on a
# sum above 10^26 rounded to cents, and one such account would stop its partition.
_REPORTING = Context(prec=80)


@lru_cache(maxsize=512)
def minor_unit(currency: str) -> int:
    """Decimal places of the currency's minor unit; 2 where ISO 4217 gives none."""
    try:
        exponent = iso4217.Currency(currency).exponent
    except ValueError:
        return 2
    return 2 if exponent is None else int(exponent)


@lru_cache(maxsize=512)
def _quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_unit(currency))


def rounded(amount: Decimal, currency: str) -> Decimal:
    """The amount rounded half-even to the currency's minor unit."""
    return amount.quantize(_quantum(currency), rounding=ROUND_HALF_EVEN, context=_REPORTING)


def report(amount: Decimal, currency: str | None) -> str:
    """The amount as the decimal string the contract reports (`"1234.50"`)."""
    value = rounded(amount, currency or "XXX") if currency else amount
    text = format(value, "f")
    return "0" + text[2:] if text.startswith("-0") and value == 0 else text


def plain(value: Decimal) -> str:
    """A decimal as fixed-point text without exponent (policy values, rates)."""
    return format(value.normalize(), "f") if value == value.to_integral() else format(
        value, "f"
    )


def quantized(value: Decimal, exponent: Decimal) -> Decimal:
    """`value` rounded half-even to `exponent` (e.g. `Decimal("0.0001")`), never failing
    for size."""
    return value.quantize(exponent, rounding=ROUND_HALF_EVEN, context=_REPORTING)
