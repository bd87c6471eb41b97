"""The backtest report: figures on tiny histories checked by hand, and the live
service's audit log giving the same report as the evaluator on slices of both
data sets (integration, real Kafka and PostgreSQL)."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from monitor.backtest import build_report, policy_figures, read_history, render_html
from monitor.backtest.audit import read_decisions
from monitor.backtest.command import policies_for
from monitor.backtest.figures import early_signs, nearest_rank
from monitor.backtest.report import evaluate
from monitor.datasets import ibm, online_retail
from monitor.domain.policy import Policy

from .streamkit import ROOT, Worker, delete_topics, env_of, make_settings

DEFAULT = Policy.default_policy()
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def at(days: float = 0, hours: float = 0) -> str:
    moment = T0 + dt.timedelta(days=days, hours=hours)
    return moment.isoformat().replace("+00:00", "Z")


def event(
    n: int, kind: str, time: str, customer: str = "C1", **data: Any
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"e{n}",
        "source": "erp/test",
        "type": kind,
        "time": time,
        "subject": f"main/{customer}",
        "data": {"company": "main", "customer_id": customer, **data},
    }


def invoice(
    n: int,
    time: str,
    invoice_id: str,
    amount: str,
    due: str,
    customer: str = "C1",
    **extra: Any,
) -> dict[str, Any]:
    return event(
        n,
        "erp.invoice.issued",
        time,
        customer,
        invoice_id=invoice_id,
        amount=amount,
        currency="EUR",
        due_date=due,
        **extra,
    )


def payment(
    n: int, time: str, invoice_id: str, amount: str, customer: str = "C1"
) -> dict[str, Any]:
    return event(
        n,
        "erp.payment.received",
        time,
        customer,
        payment_id=f"P{n}",
        amount=amount,
        currency="EUR",
        allocations=[{"invoice_id": invoice_id, "amount": amount}],
    )


def status(
    cause: int | None, time: str, new: str, customer: str = "C1"
) -> dict[str, Any]:
    decision: dict[str, Any] = {
        "type": "credit.account.status_changed",
        "time": time,
        "subject": f"main/{customer}",
        "data": {"account": f"main/{customer}", "status": new, "reasons": []},
    }
    if cause is not None:
        decision["causationid"] = f"erp/test/e{cause}"
    return decision


def order_decision(
    kind: str, cause: int, time: str, order_id: str, **data: Any
) -> dict[str, Any]:
    return {
        "type": kind,
        "time": time,
        "subject": "main/C1",
        "causationid": f"erp/test/e{cause}",
        "data": {"account": "main/C1", "order_id": order_id, **data},
    }


# ---- early signs, by hand -----------------------------------------------------------


def six_invoices() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A: OK, on time. B: WARNING, 5 days late. C: WARNING (the HOLD it causes
    itself does not count), on time. D: HOLD, 20 days late. E: OK again, 3 days
    late. F: OK, on time. Due dates are the 31st of March (day 29 after T0)."""
    due = "2026-03-31"
    events = [
        event(
            0,
            "erp.credit_profile.set",
            at(-1),
            currency="EUR",
            credit_limit="1000.00",
            risk_class="B",
        ),
        invoice(1, at(0), "A", "10.00", due),
        event(2, "clock.tick", at(1)),
        invoice(3, at(2), "B", "10.00", due),
        invoice(4, at(3), "C", "10.00", due),
        invoice(5, at(4), "D", "10.00", due),
        event(6, "clock.tick", at(5)),
        invoice(7, at(6), "E", "10.00", due),
        invoice(8, at(7), "F", "10.00", due),
        payment(9, at(20), "A", "10.00"),
        payment(10, at(20), "C", "10.00"),
        payment(11, at(20), "F", "10.00"),
        payment(13, at(32), "E", "10.00"),  # 2026-04-03: 3 days late
        payment(14, at(34), "B", "10.00"),  # 2026-04-05: 5 days late
        payment(15, at(49), "D", "10.00"),  # 2026-04-20: 20 days late
    ]
    decisions = [
        status(2, at(1), "WARNING"),
        status(4, at(3), "HOLD"),  # caused by C itself
        status(6, at(5), "OK"),
    ]
    return events, decisions


def test_status_at_issue_gives_precision_and_recall_counted_by_hand() -> None:
    events, decisions = six_invoices()
    figures = policy_figures("default", DEFAULT, read_history(events), decisions)
    es = figures.early_signs

    assert (es.invoices, es.late, es.late_over_10, es.unpaid) == (6, 3, 1, 0)
    by_status = {s.status: (s.invoices, s.late, s.late_over_10) for s in es.by_status}
    assert by_status == {"OK": (3, 1, 0), "WARNING": (2, 1, 0), "HOLD": (1, 1, 1)}
    got = {
        (p.signal, p.late_days): (
            p.true_positive,
            p.false_positive,
            p.false_negative,
            p.true_negative,
            p.precision,
            p.recall,
        )
        for p in es.predictors
    }
    d = Decimal
    assert got == {
        # flagged B, C, D; late B, D, E
        ("WARNING or HOLD", 0): (2, 1, 1, 2, d("0.6667"), d("0.6667")),
        # late over 10 days: D only
        ("WARNING or HOLD", 10): (1, 2, 0, 3, d("0.3333"), d("1.0000")),
        ("HOLD", 0): (1, 0, 2, 3, d("1.0000"), d("0.3333")),
        ("HOLD", 10): (1, 0, 0, 5, d("1.0000"), d("1.0000")),
    }
    (risk,) = figures.accounts
    assert (risk.warning_days, risk.hold_days) == (d("2.0"), d("2.0"))
    assert figures.accounts_ever_on_hold == 1


def test_a_decision_without_a_known_cause_counts_from_its_time() -> None:
    events, _ = six_invoices()
    # A wall-clock tick of the live service: no cause in the history.
    decisions = [status(None, at(1), "HOLD")]
    es = policy_figures("x", DEFAULT, read_history(events), decisions).early_signs
    assert {s.status: s.invoices for s in es.by_status} == {
        "OK": 1,
        "WARNING": 0,
        "HOLD": 5,
    }


def test_no_sign_and_no_late_invoice_give_no_ratio_rather_than_zero() -> None:
    es = early_signs([("OK", 0), ("OK", -3)])
    assert all(p.precision is None for p in es.predictors)
    assert all(p.recall is None for p in es.predictors)


def test_an_invoice_never_paid_is_late_to_the_end_of_the_history() -> None:
    events = [
        invoice(1, at(0), "A", "10.00", "2026-03-10"),
        event(2, "clock.tick", at(20)),
    ]
    es = policy_figures("x", DEFAULT, read_history(events), []).early_signs
    assert (es.late, es.late_over_10, es.unpaid) == (1, 1, 1)


def test_the_order_of_decisions_across_accounts_does_not_change_the_figures() -> None:
    events, decisions = six_invoices()
    events += [
        invoice(20, at(2, 1), "X", "10.00", "2026-03-31", customer="C2"),
        payment(21, at(40), "X", "10.00", customer="C2"),
    ]
    other = [status(20, at(2, 1), "WARNING", "C2"), status(21, at(40), "OK", "C2")]
    history = read_history(events)
    a = policy_figures("x", DEFAULT, history, [*decisions, *other])
    b = policy_figures("x", DEFAULT, history, [other[0], *decisions, other[1]])
    assert a == b


# ---- orders, by hand ----------------------------------------------------------------


def test_blocked_orders_counted_by_what_ended_the_block_and_when() -> None:
    events = [
        event(1, "erp.order.placed", at(0), order_id="SO1", amount="5", currency="EUR"),
        event(2, "erp.order.placed", at(0), order_id="SO2", amount="5", currency="EUR"),
        event(3, "erp.order.placed", at(0), order_id="SO3", amount="5", currency="EUR"),
        event(4, "erp.order.placed", at(0), order_id="SO4", amount="5", currency="EUR"),
        event(5, "erp.order.placed", at(0), order_id="SO5", amount="5", currency="EUR"),
        invoice(6, at(0, 1), "I3", "5.00", "2026-04-01", order_id="SO3"),
        payment(7, at(0, 2), "I3", "5.00"),
        event(
            8,
            "credit.command.release_order",
            at(3),
            order_id="SO2",
            by="ann",
            reason="known customer",
        ),
    ]
    decisions = [
        order_decision("credit.order.approved", 1, at(0), "SO1"),
        order_decision(
            "credit.order.blocked",
            2,
            at(0),
            "SO2",
            reasons=[{"code": "LIMIT_EXCEEDED"}],
        ),
        order_decision(
            "credit.order.blocked",
            3,
            at(0),
            "SO3",
            reasons=[{"code": "ACCOUNT_ON_HOLD"}],
        ),
        order_decision(
            "credit.order.blocked",
            4,
            at(0),
            "SO4",
            reasons=[{"code": "LIMIT_EXCEEDED"}],
        ),
        order_decision(
            "credit.order.blocked",
            5,
            at(0),
            "SO5",
            reasons=[{"code": "LIMIT_EXCEEDED"}],
        ),
        order_decision("credit.order.released", 7, at(0, 2), "SO4", by="auto"),
        order_decision("credit.order.released", 8, at(3), "SO2", by="ann"),
    ]
    o = policy_figures("x", DEFAULT, read_history(events), decisions).orders
    assert (o.approved, o.blocked, o.released) == (1, 4, 2)
    assert (o.released_auto, o.released_manual) == (1, 1)
    assert (o.invoiced_while_blocked, o.still_blocked) == (1, 1)
    assert o.blocked_by_reason == (("ACCOUNT_ON_HOLD", 1), ("LIMIT_EXCEEDED", 3))
    # waits of 2 h and 72 h: nearest-rank median 2 h, 90th percentile 72 h
    assert (o.median_release_hours, o.p90_release_hours) == (
        Decimal("2.0"),
        Decimal("72.0"),
    )
    assert dict(o.release_buckets)["1 hour to 1 day"] == 1
    assert dict(o.release_buckets)["1 to 7 days"] == 1


def test_nearest_rank_percentiles() -> None:
    assert nearest_rank([], 0.5) is None
    assert nearest_rank([7], 0.9) == 7
    assert nearest_rank(list(range(1, 11)), 0.5) == 5
    assert nearest_rank(list(range(1, 11)), 0.9) == 9


# ---- through the evaluator ----------------------------------------------------------


def evaluated_history() -> list[dict[str, Any]]:
    """I1 takes the account to WARNING itself; I2 is issued on WARNING and paid 8
    days late; SO1 is blocked and released 2 days later by the payment of I1."""
    return [
        event(
            1,
            "erp.credit_profile.set",
            at(0),
            currency="EUR",
            credit_limit="100.00",
            risk_class="A",
        ),
        invoice(2, at(0, 1), "I1", "90.00", "2026-04-01"),
        invoice(3, at(1), "I2", "5.00", "2026-04-02"),
        event(
            4,
            "erp.order.placed",
            at(1, 2),
            order_id="SO1",
            amount="50.00",
            currency="EUR",
        ),
        payment(5, at(3, 2), "I1", "90.00"),
        payment(6, at(39), "I2", "5.00"),  # 2026-04-10
        event(7, "clock.tick", at(40)),
    ]


def test_evaluated_decisions_give_the_figures_a_controller_would_count() -> None:
    events = evaluated_history()
    figures = policy_figures(
        "default", DEFAULT, read_history(events), evaluate(events, DEFAULT)
    )
    by_status = {s.status: (s.invoices, s.late) for s in figures.early_signs.by_status}
    assert by_status == {"OK": (1, 0), "WARNING": (1, 1), "HOLD": (0, 0)}
    o = figures.orders
    assert (o.blocked, o.released, o.released_auto) == (1, 1, 1)
    assert o.median_release_hours == Decimal("48.0")


def test_the_report_is_the_same_bytes_for_the_same_figures_and_compares_policies(
    tmp_path: Path,
) -> None:
    events = evaluated_history()
    policies = policies_for(None, None)
    assert [label for label, _ in policies] == ["default", "stricter", "looser"]
    first = build_report("hand-made", events, policies, top=1)
    decisions = list(reversed(evaluate(events, DEFAULT)))
    again = build_report("hand-made", events, policies, decisions=decisions, top=1)
    assert first == again
    page = render_html(first)
    assert page == render_html(again)
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") >= 4
    for label in ("default", "stricter", "looser"):
        assert f"<th>{label}</th>" in page
    (series,) = first.series
    assert series.account == "main/C1"
    assert series.exposure[0] == Decimal("90.00")  # day 1: the invoice of 90
    assert series.exposure[-1] == Decimal("50.00")  # SO1, released, never invoiced

    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    out = tmp_path / "report.html"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "monitor",
            "backtest",
            str(path),
            "--top",
            "1",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"Report: file://{out.resolve()}\n"
    assert out.read_text(encoding="utf-8") == render_html(
        build_report(str(path), events, policies, top=1)
    )


# ---- the live service's audit log ---------------------------------------------------

CUSTOMERS = 6
CONVERTERS = {"ibm": ibm.events, "online-retail": online_retail.events}


@pytest.mark.integration
@pytest.mark.parametrize("dataset", ["ibm", "online-retail"])
def test_the_report_from_the_audit_log_is_the_evaluators_report(
    dataset: str, tmp_path: Path, kafka_bootstrap: str, schema_dsn: str
) -> None:
    settings = make_settings(tmp_path, partitions=3, retention_days=3650).model_copy(
        update={"pg_dsn": SecretStr(schema_dsn)}
    )
    env = env_of(settings)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "monitor", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    worker = Worker(settings, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        replayed = cli(
            "replay",
            dataset,
            "--customers",
            str(CUSTOMERS),
            "--wait",
            "--wait-timeout",
            "240",
            "--quiet",
        )
        assert replayed.returncode == 0, replayed.stderr + worker.tail()
    finally:
        worker.stop()
        asyncio.run(delete_topics(settings))

    out = tmp_path / "live.html"
    live = cli(
        "backtest",
        dataset,
        "--customers",
        str(CUSTOMERS),
        "--from-audit",
        "--out",
        str(out),
    )
    assert live.returncode == 0, live.stderr
    assert "warning" not in live.stderr, live.stderr
    assert live.stdout == f"Report: file://{out.resolve()}\n"

    # The same figures, decision by decision, and the same page byte for byte.
    events = list(CONVERTERS[dataset](customers=CUSTOMERS))
    history = read_history(events)
    stored = asyncio.run(read_decisions(schema_dsn))
    evaluated = evaluate(events, DEFAULT)
    assert len(stored) == len(evaluated) > 0
    assert policy_figures("default", DEFAULT, history, stored) == policy_figures(
        "default", DEFAULT, history, evaluated
    )
    offline = build_report(dataset, events, policies_for(None, None))
    assert out.read_text(encoding="utf-8") == render_html(offline)
    figures = offline.decisions
    assert figures.early_signs.invoices == len(history.invoices)
    if dataset == "online-retail":
        assert figures.orders.blocked > 0  # the shop's data has orders; IBM's has none
