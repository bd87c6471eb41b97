"""The credit policy: TOML with a `[default]` table and per-risk-class overrides.

Without a file the policy is exactly `DEFAULT_POLICY_TOML`. A file overrides it key by
key: its `[default]` keys replace the built-in defaults, and each `[risk_class.X]` table
overrides keys of the resulting default for accounts of class X (the built-in class-D
overrides stay unless the file changes them). An unknown key or a bad value fails with a
`PolicyError` naming the table and key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from .score import FACTORS, ScorePolicy

DEFAULT_POLICY_TOML = """\
[default]
warn_utilization = 0.85     # WARNING at exposure >= 85% of the limit
block_utilization = 1.00    # an order is blocked when exposure after it > 100% of the limit
release_utilization = 0.95  # a limit HOLD ends only at exposure <= 95% of the limit
warn_overdue_days = 1
hold_overdue_days = 30
overdue_min_amount = "1.00"
grace_days = 0
max_order_amount = ""       # empty: none; above it an order waits for approval
warn_expiry_days = 14       # WARNING when the limit expires within 14 days
on_missing_profile = "block"  # or "approve"

[risk_class.D]
warn_utilization = 0.70
block_utilization = 0.90
hold_overdue_days = 15

[score]                     # CONTRACT 10; monitor/domain/score.py explains each factor
payment_history = 35        # weights: the most points a factor gives; they add up to 100
overdue = 25
utilization = 15
tenure = 10
disputes = 5
reversals = 5
credit_notes = 5
late_days_for_zero = 30     # weighted mean days late that takes every late-payment point
overdue_days_for_zero = 90
tenure_days_for_full = 365
disputes_for_zero = 3
reversals_for_zero = 3
credit_note_share_for_zero = 0.20
invoices_considered = 12    # the most recent settled invoices the history looks at
grade_a = 80                # lowest score of grade A; then B and C; below C is D
grade_b = 60
grade_c = 40
limit_months = 3            # recommended limit: mean monthly invoiced of the last 3 months
limit_multiplier_a = 1.5    #   x (1 + payment terms days / 30) x the grade's multiplier
limit_multiplier_b = 1.0
limit_multiplier_c = 0.6
limit_multiplier_d = 0.3
limit_round = 100           #   rounded down to a multiple of this
review_difference = 0.25    # suggest a review when |recommended - limit| > 25% of the limit
"""

RISK_CLASSES = ("A", "B", "C", "D")


class PolicyError(ValueError):
    """The policy file cannot be used; the message names the key and what is wrong."""


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The policy keys in force for one risk class."""

    warn_utilization: Decimal
    block_utilization: Decimal
    release_utilization: Decimal
    warn_overdue_days: int
    hold_overdue_days: int
    overdue_min_amount: Decimal
    grace_days: int
    max_order_amount: Decimal | None
    warn_expiry_days: int
    on_missing_profile: Literal["block", "approve"]


_KEYS = {f.name for f in fields(Thresholds)}


def _decimal(where: str, raw: Any, *, allow_empty: bool = False) -> Decimal | None:
    if allow_empty and raw == "":
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise PolicyError(f"{where}: expected a decimal number, got {raw!r}")
    try:
        # TOML floats are read through their decimal text, never as binary fractions.
        value = Decimal(repr(raw)) if isinstance(raw, float) else Decimal(str(raw))
    except InvalidOperation as exc:
        raise PolicyError(f"{where}: expected a decimal number, got {raw!r}") from exc
    if not value.is_finite() or value < 0:
        raise PolicyError(f"{where}: must be a finite number >= 0, got {raw!r}")
    return value


def _days(where: str, raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise PolicyError(f"{where}: expected a whole number of days >= 0, got {raw!r}")
    return raw


def _thresholds(where: str, table: dict[str, Any]) -> Thresholds:
    def d(key: str) -> Decimal:
        value = _decimal(f"{where}.{key}", table[key])
        assert value is not None
        return value

    mode = table["on_missing_profile"]
    if mode not in ("block", "approve"):
        raise PolicyError(
            f'{where}.on_missing_profile: expected "block" or "approve", got {mode!r}'
        )
    result = Thresholds(
        warn_utilization=d("warn_utilization"),
        block_utilization=d("block_utilization"),
        release_utilization=d("release_utilization"),
        warn_overdue_days=_days(f"{where}.warn_overdue_days", table["warn_overdue_days"]),
        hold_overdue_days=_days(f"{where}.hold_overdue_days", table["hold_overdue_days"]),
        overdue_min_amount=d("overdue_min_amount"),
        grace_days=_days(f"{where}.grace_days", table["grace_days"]),
        max_order_amount=_decimal(
            f"{where}.max_order_amount", table["max_order_amount"], allow_empty=True
        ),
        warn_expiry_days=_days(f"{where}.warn_expiry_days", table["warn_expiry_days"]),
        on_missing_profile=mode,
    )
    return result


def _check_keys(where: str, table: Any) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise PolicyError(f"{where}: expected a table, got {table!r}")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise PolicyError(
            f"{where}: unknown key {unknown[0]!r}; known keys are {', '.join(sorted(_KEYS))}"
        )
    return table


@dataclass(frozen=True, slots=True)
class Policy:
    """Thresholds for every risk class, built from the default policy and a file."""

    default: Thresholds
    by_class: dict[str, Thresholds]
    source: str
    score: ScorePolicy

    def for_class(self, risk_class: str | None, grade: str | None = None) -> Thresholds:
        """The thresholds of a class; `auto` takes those of the account's grade."""
        if risk_class == "auto":
            risk_class = grade
        if risk_class is None:
            return self.default
        return self.by_class.get(risk_class, self.default)

    @classmethod
    def from_toml(cls, text: str, *, source: str = "<policy>") -> Policy:
        try:
            base = tomllib.loads(DEFAULT_POLICY_TOML)
            override = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"{source}: not valid TOML: {exc}") from exc
        return cls._merge(base, override, source)

    @classmethod
    def from_file(cls, path: str | Path) -> Policy:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(f"cannot read policy file {p}: {exc.strerror}") from exc
        return cls.from_toml(text, source=str(p))

    @classmethod
    def default_policy(cls) -> Policy:
        return cls.from_toml("", source="<default>")

    @classmethod
    def _merge(cls, base: dict[str, Any], override: dict[str, Any], source: str) -> Policy:
        unknown = sorted(set(override) - {"default", "risk_class", "score"})
        if unknown:
            raise PolicyError(
                f"{source}: unknown table [{unknown[0]}]; expected [default], "
                "[risk_class.A] .. [risk_class.D] and [score]"
            )
        default = {**base["default"], **_check_keys("[default]", override.get("default", {}))}
        classes_in = override.get("risk_class", {})
        if not isinstance(classes_in, dict):
            raise PolicyError(f"{source}: risk_class must be a table of tables")
        for name in classes_in:
            if name not in RISK_CLASSES:
                raise PolicyError(
                    f"[risk_class.{name}]: unknown risk class; expected one of "
                    + ", ".join(RISK_CLASSES)
                )
        default_thresholds = _thresholds("[default]", default)
        by_class = {}
        for name in RISK_CLASSES:
            merged = {
                **default,
                **base["risk_class"].get(name, {}),
                **_check_keys(f"[risk_class.{name}]", classes_in.get(name, {})),
            }
            by_class[name] = _thresholds(f"[risk_class.{name}]", merged)
        score_in = override.get("score", {})
        if not isinstance(score_in, dict):
            raise PolicyError(f"{source}: [score] must be a table")
        score = _score_policy({**base["score"], **score_in}, set(base["score"]))
        return cls(default=default_thresholds, by_class=by_class, source=source,
                   score=score)


def _score_policy(table: dict[str, Any], known: set[str]) -> ScorePolicy:
    unknown = sorted(set(table) - known)
    if unknown:
        raise PolicyError(
            f"[score]: unknown key {unknown[0]!r}; known keys are {', '.join(sorted(known))}"
        )

    def d(key: str) -> Decimal:
        value = _decimal(f"[score].{key}", table[key])
        assert value is not None
        return value

    def n(key: str, least: int = 1) -> int:
        raw = table[key]
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < least:
            raise PolicyError(f"[score].{key}: expected a whole number >= {least}, got {raw!r}")
        return raw

    weights = {name: d(name) for name in FACTORS}
    if sum(weights.values()) != 100:
        raise PolicyError(
            "[score]: the factor weights (" + ", ".join(FACTORS) + ") must add up to 100, "
            f"not {sum(weights.values())}"
        )
    bands = {g: d(f"grade_{g.lower()}") for g in ("A", "B", "C")}
    if not bands["A"] >= bands["B"] >= bands["C"]:
        raise PolicyError("[score]: grade_a >= grade_b >= grade_c is needed")
    # The account keeps 12 months of volume and the last 50 settled invoices; a
    # setting beyond that would be cut silently, so it is refused.
    limit_months, invoices_considered = n("limit_months"), n("invoices_considered", 0)
    if limit_months > 12:
        raise PolicyError(f"[score].limit_months: at most 12 (the months an account "
                          f"keeps), got {limit_months}")
    if invoices_considered > 50:
        raise PolicyError(f"[score].invoices_considered: at most 50 (the settled invoices "
                          f"an account keeps), got {invoices_considered}")
    limit_round = d("limit_round")
    if not 0 < limit_round <= 10**9:
        raise PolicyError("[score].limit_round: must be above 0 and at most 10^9")
    multipliers = {g: d(f"limit_multiplier_{g.lower()}") for g in RISK_CLASSES}
    for g, value in multipliers.items():
        if value > 100:
            raise PolicyError(f"[score].limit_multiplier_{g.lower()}: at most 100, "
                              f"got {value}")
    for key in ("credit_note_share_for_zero", "review_difference"):
        if not 0 < d(key) <= 100:
            raise PolicyError(f"[score].{key}: must be above 0 and at most 100")
    return ScorePolicy(
        weights=weights,
        late_days_for_zero=n("late_days_for_zero"),
        overdue_days_for_zero=n("overdue_days_for_zero"),
        tenure_days_for_full=n("tenure_days_for_full"),
        disputes_for_zero=n("disputes_for_zero"),
        reversals_for_zero=n("reversals_for_zero"),
        credit_note_share_for_zero=d("credit_note_share_for_zero"),
        invoices_considered=invoices_considered,
        grade_bands=bands,
        limit_months=limit_months,
        limit_multipliers=multipliers,
        limit_round=limit_round,
        review_difference=d("review_difference"),
    )
