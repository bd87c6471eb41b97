"""The `[score]` table of a policy file (monitor/domain/policy.py) steers the score,
the grade and the recommended limit (monitor/domain/score.py) as documented; disputes
move the score and their resolution moves it back; and nothing emitted up to an event
depends on the events after it.

Every figure expected here is worked out in the test, from the events or from the
snapshot's own figures, with the formulas of README.md "The credit score".
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.domain.engine import CreditEngine
from monitor.domain.policy import Policy, PolicyError
from monitor.evaluate import dumps, evaluate_lines

from .test_ledger_properties import PROPS, streams

DEFAULT = Policy.default_policy()
KEY = "main/C1"
WEIGHTS = ("payment_history", "overdue", "utilization", "tenure", "disputes", "reversals",
           "credit_notes")


def _event(n: int, type_: str, time: str, customer: str = "C1", **data: Any
           ) -> dict[str, Any]:
    return {"specversion": "1.0", "id": f"sp-{n}", "source": "erp/test", "type": type_,
            "time": time, "data": {"company": "main", "customer_id": customer, **data}}


def _tick(n: int, time: str) -> dict[str, Any]:
    return {"specversion": "1.0", "id": f"tick-{n}", "source": "erp/clock",
            "type": "clock.tick", "time": time, "data": {}}


def _policy_file(tmp_path: Path, name: str, text: str) -> Policy:
    path = tmp_path / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    policy = Policy.from_file(path)
    assert policy.source == str(path)
    return policy


def _snapshot(events: list[dict[str, Any]], policy: Policy, key: str = KEY
              ) -> dict[str, Any]:
    engine = CreditEngine(policy)
    for e in events:
        engine.process(e, {"test": True})
    return engine.snapshot_event(key)["data"]


def _factors(snap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in snap["score"]["factors"]}


def _grade(score: Decimal, a: Decimal, b: Decimal, c: Decimal) -> str:
    return "A" if score >= a else "B" if score >= b else "C" if score >= c else "D"


# Paid 4 and 14 days late, then an invoice 16 days overdue; no disputes, reversals or
# credit notes (those factors are at their best); a short tenure (at its worst).
HISTORY = [
    _event(1, "erp.credit_profile.set", "2026-03-01T09:00:00Z", currency="EUR",
           credit_limit="2000.00", risk_class="B", payment_terms_days=30),
    _event(2, "erp.invoice.issued", "2026-03-02T09:00:00Z", invoice_id="I1",
           amount="800.00", currency="EUR", due_date="2026-03-05"),
    _event(3, "erp.invoice.issued", "2026-03-03T09:00:00Z", invoice_id="I2",
           amount="500.00", currency="EUR", due_date="2026-03-06"),
    _event(4, "erp.order.placed", "2026-03-04T09:00:00Z", order_id="SO1", amount="250.00",
           currency="EUR"),
    _event(5, "erp.payment.received", "2026-03-09T09:00:00Z", payment_id="P1",
           amount="800.00", currency="EUR",
           allocations=[{"invoice_id": "I1", "amount": "800.00"}]),
    _event(6, "erp.payment.received", "2026-03-20T09:00:00Z", payment_id="P2",
           amount="500.00", currency="EUR",
           allocations=[{"invoice_id": "I2", "amount": "500.00"}]),
    _event(7, "erp.invoice.issued", "2026-03-21T09:00:00Z", invoice_id="I3",
           amount="700.00", currency="EUR", due_date="2026-03-25"),
    _tick(1, "2026-04-10T00:00:00Z"),
]

TOWARD_STRONG = {"payment_history": 20, "overdue": 20, "utilization": 15, "tenure": 4.5,
                 "disputes": 15, "reversals": 15, "credit_notes": 10.5}
TOWARD_WEAK = {"payment_history": 45, "overdue": 30, "utilization": 10, "tenure": 15,
               "disputes": 0, "reversals": 0, "credit_notes": 0}


def _weights_toml(weights: dict[str, float]) -> str:
    return "[score]\n" + "".join(f"{k} = {v}\n" for k, v in weights.items())


@pytest.mark.parametrize("weights,direction", [(TOWARD_STRONG, +1), (TOWARD_WEAK, -1)],
                         ids=["weight_to_strong_factors_raises", "weight_to_weak_lowers"])
def test_score_weights_from_a_policy_file_move_the_score_the_way_they_imply(
    tmp_path: Path, weights: dict[str, float], direction: int
) -> None:
    assert sum(Decimal(str(w)) for w in weights.values()) == 100
    policy = _policy_file(tmp_path, "weights", _weights_toml(weights))
    before, after = _snapshot(HISTORY, DEFAULT), _snapshot(HISTORY, policy)
    f_before, f_after = _factors(before), _factors(after)

    # The history is the same, so every factor's fraction is; only the weights moved.
    assert list(f_after) == list(WEIGHTS)
    for name in WEIGHTS:
        assert f_after[name]["fraction"] == f_before[name]["fraction"], name
        assert f_after[name]["inputs"] == f_before[name]["inputs"], name
        assert Decimal(f_after[name]["weight"]) == Decimal(str(weights[name])), name
    fraction = {n: Decimal(f_before[n]["fraction"]) for n in WEIGHTS}
    # This history has strong factors (disputes, reversals, credit notes at 1) and weak
    # ones (tenure, payment history); the weight moved the way `direction` says.
    assert fraction["disputes"] == fraction["reversals"] == fraction["credit_notes"] == 1
    assert fraction["tenure"] < Decimal("0.1")
    assert fraction["payment_history"] < Decimal("0.4")
    implied = sum((Decimal(str(weights[n])) - Decimal(f_before[n]["weight"]))
                  * fraction[n] for n in WEIGHTS)
    assert implied * direction > 1

    score_before, score_after = (Decimal(s["score"]["score"]) for s in (before, after))
    assert (score_after - score_before) * direction > 1
    # And exactly: each factor's fraction times the file's weight, rounded to the cent.
    expected = sum((fraction[n] * Decimal(str(weights[n]))).quantize(
        Decimal("0.01"), ROUND_HALF_EVEN) for n in WEIGHTS)
    assert score_after == expected
    for name in WEIGHTS:
        assert Decimal(f_after[name]["points"]) == (
            fraction[name] * Decimal(str(weights[name]))).quantize(
            Decimal("0.01"), ROUND_HALF_EVEN), name
    # Nothing but the score moved: exposure, overdue and status stay.
    for field in ("exposure", "overdue", "status", "reasons", "utilization"):
        assert after[field] == before[field], field


def test_score_weights_that_do_not_add_up_to_100_are_refused_from_a_file(
    tmp_path: Path
) -> None:
    off_by_half = {**TOWARD_STRONG, "tenure": 5}  # 100.5
    with pytest.raises(PolicyError, match="must add up to 100, not 100.5"):
        _policy_file(tmp_path, "bad", _weights_toml(off_by_half))


def test_grade_bands_change_the_grade_of_the_same_score(tmp_path: Path) -> None:
    base = _snapshot(HISTORY, DEFAULT)["score"]
    score = Decimal(base["score"])
    assert base["grade"] == _grade(score, Decimal(80), Decimal(60), Decimal(40))
    cent = Decimal("0.01")
    bands = {  # grade -> (grade_a, grade_b, grade_c), the score exactly on or just below
        "A": (score, score - 10, score - 20),
        "B": (score + cent, score, score - 10),
        "C": (score + 2 * cent, score + cent, score),
        "D": (score + 3 * cent, score + 2 * cent, score + cent),
    }
    grades = {}
    for grade, (a, b, c) in bands.items():
        policy = _policy_file(tmp_path, f"bands-{grade}",
                              f'[score]\ngrade_a = "{a}"\ngrade_b = "{b}"\n'
                              f'grade_c = "{c}"\n')
        assert policy.score.grade_bands == {"A": a, "B": b, "C": c}
        got = _snapshot(HISTORY, policy)["score"]
        assert Decimal(got["score"]) == score  # the bands change no point
        assert [f["points"] for f in got["factors"]] == \
            [f["points"] for f in base["factors"]]
        grades[grade] = got["grade"]
        # The limit takes the multiplier of the new grade.
        assert Decimal(got["recommended_limit_figures"]["grade_multiplier"]) == \
            policy.score.limit_multipliers[got["grade"]]
    assert grades == {"A": "A", "B": "B", "C": "C", "D": "D"}


# Invoiced 3,000 in January, 600 in February and 900 in March (the month of the latest
# event, 12 March); the account's first event is on 5 January; terms 45 days.
VOLUME = [
    _event(1, "erp.credit_profile.set", "2026-01-05T09:00:00Z", currency="EUR",
           credit_limit="5000.00", risk_class="B", payment_terms_days=45),
    _event(2, "erp.invoice.issued", "2026-01-10T09:00:00Z", invoice_id="I1",
           amount="3000.00", currency="EUR", due_date="2026-02-24"),
    _event(3, "erp.invoice.issued", "2026-02-10T09:00:00Z", invoice_id="I2",
           amount="600.00", currency="EUR", due_date="2026-03-27"),
    _event(4, "erp.payment.received", "2026-02-20T09:00:00Z", payment_id="P1",
           amount="3000.00", currency="EUR",
           allocations=[{"invoice_id": "I1", "amount": "3000.00"}]),
    _event(5, "erp.invoice.issued", "2026-03-10T09:00:00Z", invoice_id="I3",
           amount="900.00", currency="EUR", due_date="2026-04-24"),
    _event(6, "erp.order.placed", "2026-03-12T09:00:00Z", order_id="SO1", amount="100.00",
           currency="EUR"),
]
MULTIPLIERS = ('limit_multiplier_a = 2.25\nlimit_multiplier_b = 1.75\n'
               'limit_multiplier_c = 1.3\nlimit_multiplier_d = 0.45\n')


def _expected_limit(figures: dict[str, Any]) -> Decimal:
    """README: mean monthly invoiced x (1 + terms / 30) x multiplier, rounded down."""
    monthly = [Decimal(m) for m in figures["monthly_invoiced"]]
    mean = sum(monthly) / len(monthly)
    assert Decimal(figures["mean_monthly_invoiced"]) == mean.quantize(Decimal("0.01"))
    raw = mean * (1 + Decimal(figures["payment_terms_days"]) / 30) \
        * Decimal(figures["grade_multiplier"])
    step = Decimal(figures["rounded_down_to"])
    return Decimal(math.floor(raw / step)) * step


@pytest.mark.parametrize("table,monthly,multiplier_of,step", [
    ("", ["3000.00", "600.00", "900.00"],
     {"A": "1.5", "B": "1.0", "C": "0.6", "D": "0.3"}, "100"),
    ("limit_months = 1\n", ["900.00"], None, "100"),
    ("limit_months = 2\n", ["600.00", "900.00"], None, "100"),
    # Only months since the account's first event count: 6 months ask for 3 here.
    ("limit_months = 6\n", ["3000.00", "600.00", "900.00"], None, "100"),
    (MULTIPLIERS, ["3000.00", "600.00", "900.00"],
     {"A": "2.25", "B": "1.75", "C": "1.3", "D": "0.45"}, "100"),
    (MULTIPLIERS + "limit_round = 250\n", ["3000.00", "600.00", "900.00"],
     {"A": "2.25", "B": "1.75", "C": "1.3", "D": "0.45"}, "250"),
    ("limit_months = 2\nlimit_round = 7\n", ["600.00", "900.00"], None, "7"),
], ids=["default", "one_month", "two_months", "six_months_since_first_event",
        "grade_multipliers", "multipliers_and_rounding_250", "two_months_rounding_7"])
def test_limit_settings_change_the_recommended_limit_as_the_formula_says(
    tmp_path: Path, table: str, monthly: list[str], multiplier_of: dict[str, str] | None,
    step: str,
) -> None:
    policy = _policy_file(tmp_path, "limit", "[score]\n" + table)
    score = _snapshot(VOLUME, policy)["score"]
    figures = score["recommended_limit_figures"]

    assert figures["monthly_invoiced"] == monthly
    assert figures["payment_terms_days"] == 45
    assert figures["rounded_down_to"] == step
    multipliers = multiplier_of or {"A": "1.5", "B": "1.0", "C": "0.6", "D": "0.3"}
    assert Decimal(figures["grade_multiplier"]) == Decimal(multipliers[score["grade"]])

    expected = _expected_limit(figures)
    assert Decimal(score["recommended_limit"]) == expected
    assert expected % Decimal(step) == 0 and expected > 0
    # The same figure from the events alone, without the snapshot's figures.
    mean = sum(Decimal(m) for m in monthly) / len(monthly)
    raw = mean * Decimal("2.5") * Decimal(multipliers[score["grade"]])
    assert expected == Decimal(math.floor(raw / Decimal(step))) * Decimal(step)


def test_limit_months_and_multiplier_move_the_recommended_limit_apart(
    tmp_path: Path
) -> None:
    # Same grade under both policies (the bands are not touched, the score is the same),
    # so the two limits differ only by the formula's settings.
    one = _snapshot(VOLUME, _policy_file(tmp_path, "one", "[score]\nlimit_months = 1\n"))
    three = _snapshot(VOLUME, DEFAULT)
    assert one["score"]["score"] == three["score"]["score"]
    grade = three["score"]["grade"]
    m = DEFAULT.score.limit_multipliers[grade]
    # 900 a month against (3000 + 600 + 900) / 3 = 1500 a month.
    assert Decimal(one["score"]["recommended_limit"]) == \
        Decimal(math.floor(900 * Decimal("2.5") * m / 100)) * 100
    assert Decimal(three["score"]["recommended_limit"]) == \
        Decimal(math.floor(1500 * Decimal("2.5") * m / 100)) * 100
    assert Decimal(one["score"]["recommended_limit"]) < \
        Decimal(three["score"]["recommended_limit"])

    doubled = "".join(f"limit_multiplier_{g.lower()} = {2 * v}\n"
                      for g, v in DEFAULT.score.limit_multipliers.items())
    twice = _snapshot(VOLUME, _policy_file(tmp_path, "twice", "[score]\n" + doubled))
    assert Decimal(twice["score"]["recommended_limit"]) == \
        Decimal(math.floor(1500 * Decimal("2.5") * 2 * m / 100)) * 100


def test_limit_months_above_twelve_is_refused_or_averages_that_many_months(
    tmp_path: Path
) -> None:
    events = [_event(1, "erp.credit_profile.set", "2025-01-02T09:00:00Z", currency="EUR",
                     credit_limit="5000.00", risk_class="B")]
    for n in range(15):  # an invoice of 100 in each month, January 2025 to March 2026
        year, month = 2025 + (n // 12), n % 12 + 1
        events.append(_event(2 + n, "erp.invoice.issued",
                             f"{year}-{month:02d}-03T09:00:00Z", invoice_id=f"I{n}",
                             amount="100.00", currency="EUR",
                             due_date=f"{year}-{month:02d}-28"))
    try:
        policy = _policy_file(tmp_path, "long", "[score]\nlimit_months = 15\n")
    except PolicyError:
        return  # refusing it is a fine answer
    figures = _snapshot(events, policy)["score"]["recommended_limit_figures"]
    assert len(figures["monthly_invoiced"]) == 15


# ---- disputes ----------------------------------------------------------------------

OPEN_INVOICES = HISTORY[:7]  # I3 is open and not yet due on 21 March, the latest event


def test_a_dispute_lowers_the_score_and_its_resolution_restores_it_exactly() -> None:
    # The dispute and its resolution come on the day of the latest event, so tenure
    # and the 12-month windows are the same; only the dispute differs.
    disputed = _event(20, "erp.invoice.disputed", "2026-03-21T15:00:00Z",
                      invoice_id="I3", reason="damaged goods")
    resolved = _event(21, "erp.invoice.dispute_resolved", "2026-03-21T16:00:00Z",
                      invoice_id="I3")
    engine = CreditEngine(DEFAULT)
    for e in OPEN_INVOICES:
        engine.process(e, {"test": True})
    before = engine.snapshot(KEY)
    engine.process(disputed, {"test": True})
    during = engine.snapshot(KEY)
    engine.process(resolved, {"test": True})
    after = engine.snapshot(KEY)
    assert before is not None and during is not None and after is not None

    assert _factors(before)["disputes"]["inputs"]["open_disputed_invoices"] == 0
    assert _factors(during)["disputes"]["inputs"]["open_disputed_invoices"] == 1
    assert _factors(after)["disputes"]["inputs"]["open_disputed_invoices"] == 0
    lowered = Decimal(before["score"]["score"]) - Decimal(during["score"]["score"])
    # One open dispute of disputes_for_zero = 3 takes a third of the factor's 5 points.
    assert lowered == Decimal("5.00") - (Decimal("0.6667") * 5).quantize(Decimal("0.01"))
    assert after["score"] == before["score"]  # every factor, figure and the limit
    for snap in (during, after):
        for field in ("exposure", "overdue", "status", "reasons", "available_credit"):
            assert snap[field] == before[field], field
    invoices = {i["id"]: i for i in during["documents"]["invoices"]}
    assert invoices["I3"]["disputed"] is True


def test_a_dispute_resolved_on_another_invoice_does_not_restore_the_score() -> None:
    events = [*OPEN_INVOICES,
              _event(20, "erp.invoice.disputed", "2026-03-21T15:00:00Z", invoice_id="I3"),
              _event(21, "erp.invoice.dispute_resolved", "2026-03-21T16:00:00Z",
                     invoice_id="I2")]
    base = _snapshot(OPEN_INVOICES, DEFAULT)
    snap = _snapshot(events, DEFAULT)
    assert _factors(snap)["disputes"]["inputs"]["open_disputed_invoices"] == 1
    assert Decimal(snap["score"]["score"]) < Decimal(base["score"]["score"])


# ---- no look-ahead -----------------------------------------------------------------

# Two accounts; later events pay earlier invoices late, dispute and resolve them, credit
# and reverse, and move the clock on. Times rise from line to line.
LONG_HISTORY = [
    _event(1, "erp.credit_profile.set", "2026-03-01T09:00:00Z", currency="EUR",
           credit_limit="2000.00", risk_class="auto", payment_terms_days=30),
    _event(2, "erp.invoice.issued", "2026-03-02T09:00:00Z", invoice_id="I1",
           amount="800.00", currency="EUR", due_date="2026-03-05"),
    _event(3, "erp.invoice.issued", "2026-03-03T09:00:00Z", invoice_id="I2",
           amount="500.00", currency="EUR", due_date="2026-03-06"),
    _event(4, "erp.order.placed", "2026-03-04T09:00:00Z", order_id="SO1", amount="250.00",
           currency="EUR"),
    _event(5, "erp.credit_profile.set", "2026-03-04T10:00:00Z", customer="C2",
           currency="EUR", credit_limit="1000.00", risk_class="B"),
    _event(6, "erp.invoice.issued", "2026-03-05T09:00:00Z", customer="C2",
           invoice_id="J1", amount="400.00", currency="EUR", due_date="2026-03-10"),
    _event(7, "erp.payment.received", "2026-03-09T09:00:00Z", payment_id="P1",
           amount="800.00", currency="EUR",
           allocations=[{"invoice_id": "I1", "amount": "800.00"}]),
    _event(8, "erp.credit_note.issued", "2026-03-12T09:00:00Z", credit_note_id="CN1",
           amount="50.00", currency="EUR", invoice_id="I2"),
    _event(9, "erp.invoice.disputed", "2026-03-14T09:00:00Z", invoice_id="I2"),
    _tick(1, "2026-03-16T00:00:00Z"),
    _event(10, "erp.invoice.dispute_resolved", "2026-03-19T09:00:00Z", invoice_id="I2"),
    _event(11, "erp.payment.received", "2026-03-20T09:00:00Z", payment_id="P2",
           amount="450.00", currency="EUR",
           allocations=[{"invoice_id": "I2", "amount": "450.00"}]),
    _event(12, "erp.invoice.issued", "2026-03-21T09:00:00Z", invoice_id="I3",
           amount="700.00", currency="EUR", due_date="2026-03-25"),
    _event(13, "erp.invoice.disputed", "2026-03-22T09:00:00Z", invoice_id="I3"),
    _event(14, "erp.payment.received", "2026-03-23T09:00:00Z", payment_id="P3",
           amount="100.00", currency="EUR"),
    _event(15, "erp.payment.reversed", "2026-03-24T09:00:00Z", payment_id="P3"),
    _event(16, "erp.order.placed", "2026-04-02T09:00:00Z", order_id="SO2",
           amount="1900.00", currency="EUR"),
    _tick(2, "2026-04-10T00:00:00Z"),
    _event(17, "erp.payment.received", "2026-04-12T09:00:00Z", customer="C2",
           payment_id="Q1", amount="400.00", currency="EUR",
           allocations=[{"invoice_id": "J1", "amount": "400.00"}]),
    _event(18, "erp.invoice.dispute_resolved", "2026-04-14T09:00:00Z", invoice_id="I3"),
    _event(19, "erp.payment.received", "2026-04-15T09:00:00Z", payment_id="P4",
           amount="700.00", currency="EUR",
           allocations=[{"invoice_id": "I3", "amount": "700.00"}]),
    _tick(3, "2026-05-01T00:00:00Z"),
]


def _lines(events: list[dict[str, Any]]) -> list[bytes]:
    return [orjson.dumps(e) + b"\n" for e in events]


def _per_line_outputs(events: list[dict[str, Any]], policy: Policy, name: str = "-"
                      ) -> tuple[list[list[bytes]], list[list[bytes]]]:
    """The outputs of each line, and the snapshots of every account right after it,
    fed to one engine as the evaluator feeds it (origin and position of each line)."""
    engine = CreditEngine(policy)
    outputs, snapshots = [], []
    for number, line in enumerate(_lines(events), start=1):
        outputs.append([dumps(o) for o in engine.process(
            line, {"file": name, "line": number}, number)])
        snapshots.append([dumps(s) for s in engine.snapshots()])
    return outputs, snapshots


def test_outputs_and_snapshots_up_to_an_event_are_the_same_bytes_whatever_follows(
) -> None:
    assert [e["time"] for e in LONG_HISTORY] == sorted(e["time"] for e in LONG_HISTORY)
    whole = _lines(LONG_HISTORY)
    per_line, snapshots_after = _per_line_outputs(LONG_HISTORY, DEFAULT, "history.jsonl")
    everything = [dumps(o) for o in evaluate_lines(whole, DEFAULT, name="history.jsonl")]
    assert everything == [o for out in per_line for o in out]
    types = {orjson.loads(o)["type"] for o in everything}
    # The history is rich enough to say something: decisions of several kinds.
    assert {"credit.order.approved", "credit.account.status_changed",
            "credit.account.grade_changed"} <= types

    for k in range(1, len(LONG_HISTORY) + 1):
        alone = [dumps(o) for o in evaluate_lines(whole[:k], DEFAULT, snapshots=True,
                                                  name="history.jsonl")]
        emitted = [o for out in per_line[:k] for o in out]
        # The prefix alone emits exactly what the first k lines emit in the whole run,
        # then the snapshots, which are those of the whole run right after line k.
        assert alone[:len(emitted)] == emitted, k
        assert alone[len(emitted):] == snapshots_after[k - 1], k
        assert everything[:len(emitted)] == emitted, k


def test_snapshot_after_an_event_is_the_same_with_or_without_the_events_after_it(
) -> None:
    # Engine against engine, account by account, at every cut: the later events (late
    # settlements of earlier invoices, disputes, resolutions, ticks) change nothing
    # about the state reached before them.
    full = CreditEngine(DEFAULT)
    for k, event in enumerate(LONG_HISTORY, start=1):
        full.process(event, {"test": True}, k)
        prefix = CreditEngine(DEFAULT)
        for n, e in enumerate(LONG_HISTORY[:k], start=1):
            prefix.process(e, {"test": True}, n)
        assert sorted(prefix.accounts) == sorted(full.accounts)
        for key in full.accounts:
            assert dumps(prefix.snapshot_event(key)) == dumps(full.snapshot_event(key)), \
                (k, key)
    final = full.snapshot(KEY)
    assert final is not None
    # The settlements the later events brought are in the final score, not before.
    history = _factors(final)["payment_history"]["inputs"]
    lates = [i["days_late"] for i in history["invoices"]]
    assert lates == [4, 14, 21]


@PROPS
@given(streams(customers=2, currencies=("EUR", "USD"), size=40), st.integers(0, 40))
def test_a_generated_prefix_emits_the_same_bytes_as_the_start_of_the_whole_stream(
    events: list[dict[str, Any]], cut: int
) -> None:
    cut = min(cut, len(events))
    whole = _lines(events)
    per_line, snapshots_after = _per_line_outputs(events, DEFAULT)
    alone = [dumps(o) for o in evaluate_lines(whole[:cut], DEFAULT, snapshots=True)]
    emitted = [o for out in per_line[:cut] for o in out]
    assert alone[:len(emitted)] == emitted
    assert alone[len(emitted):] == (snapshots_after[cut - 1] if cut else [])
