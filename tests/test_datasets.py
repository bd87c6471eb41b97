"""The converters in `monitor.datasets` give valid, time-sorted contract events whose
amounts and dates match the public data files in `data/`."""

from __future__ import annotations

import datetime as dt
import gzip
import io
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from monitor.datasets import __main__ as cli
from monitor.datasets import ibm, online_retail
from monitor.datasets.common import (
    LimitRule,
    RiskRule,
    RuleError,
    replicate_customers,
    write_jsonl,
)
from monitor.domain.policy import Policy
from monitor.evaluate import evaluate_lines
from schemas.parse import validate

Event = dict[str, Any]


def _valid_and_sorted(events: Iterable[Event]) -> list[Event]:
    out = list(events)
    for event in out:
        validate(event)  # raises InvalidEvent
    times = [e["time"] for e in out]
    assert times == sorted(times)
    return out


def _of_type(events: list[Event], kind: str) -> list[Event]:
    return [e for e in events if e["type"] == kind]


def _evaluate(events: Iterable[Event]) -> list[Event]:
    lines = [orjson.dumps(e) for e in events]
    return list(evaluate_lines(lines, Policy.default_policy(), snapshots=True))


# ---- IBM -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ibm_events() -> list[Event]:
    return list(ibm.events(ibm.read_rows(max_rows=300)))


def test_ibm_slice_gives_valid_events_sorted_by_time(ibm_events: list[Event]) -> None:
    events = _valid_and_sorted(ibm_events)
    assert len(_of_type(events, "erp.invoice.issued")) == 300
    assert len(_of_type(events, "erp.payment.received")) == 300


def test_ibm_first_row_gives_its_invoice_and_payment(ibm_events: list[Event]) -> None:
    # 391,0379-NEVHP,4/6/2013,0000611365,1/2/2013,2/1/2013,55.94,No,1/15/2013,...
    by_id = {e["id"]: e for e in ibm_events}
    invoice = by_id["invoice-0000611365"]
    assert invoice["time"] == "2013-01-02T09:00:00Z"
    assert invoice["subject"] == "main/0379-NEVHP"
    assert invoice["data"] == {
        "company": "main",
        "customer_id": "0379-NEVHP",
        "invoice_id": "0000611365",
        "amount": "55.94",
        "currency": "USD",
        "due_date": "2013-02-01",
    }
    payment = by_id["payment-0000611365"]
    assert payment["time"] == "2013-01-15T08:00:00Z"
    assert payment["data"]["amount"] == "55.94"
    assert payment["data"]["allocations"] == [
        {"invoice_id": "0000611365", "amount": "55.94"}
    ]
    assert "invoice-0000611365" not in {
        e["id"] for e in ibm_events if e["type"] == "erp.invoice.disputed"
    }


def test_ibm_disputed_late_row_is_disputed_on_its_due_date(
    ibm_events: list[Event],
) -> None:
    # 406,8976-AMJEO,3/3/2012,0007900770,1/26/2013,2/25/2013,61.74,Yes,3/3/2013,...
    by_id = {e["id"]: e for e in ibm_events}
    disputed = by_id["dispute-0007900770"]
    resolved = by_id["dispute-resolved-0007900770"]
    assert disputed["time"] == "2013-02-25T09:30:00Z"
    assert disputed["source"] == "synthetic/ibm-ar"
    assert disputed["data"]["synthetic"] is True
    assert (
        resolved["time"]
        == by_id["payment-0007900770"]["time"]
        == ("2013-03-03T08:00:00Z")
    )
    assert ibm_events.index(resolved) > ibm_events.index(by_id["payment-0007900770"])


def test_ibm_amount_without_decimals_gets_two(ibm_events: list[Event]) -> None:
    # the sixth row's amount is written "94" in the file
    amounts = [e["data"]["amount"] for e in _of_type(ibm_events, "erp.invoice.issued")]
    assert "94.00" in amounts
    assert all(len(a.rpartition(".")[2]) == 2 for a in amounts)


def test_ibm_dispute_opens_after_invoice_and_before_payment() -> None:
    events = list(ibm.events())
    where = {e["id"]: n for n, e in enumerate(events)}
    disputed = [r for r in ibm.read_rows() if r.disputed]
    assert len(disputed) == 561
    for row in disputed:
        n = row.invoice_id
        assert (
            where[f"invoice-{n}"]
            < where[f"dispute-{n}"]
            < where[f"payment-{n}"]
            < where[f"dispute-resolved-{n}"]
        )


def test_ibm_payment_on_invoice_day_comes_after_the_invoice() -> None:
    rows = [r for r in ibm.read_rows() if r.days_to_settle == 0]
    assert len(rows) == 4
    ids = [e["id"] for e in ibm.events(rows)]
    for row in rows:
        n = row.invoice_id
        assert ids.index(f"invoice-{n}") < ids.index(f"payment-{n}")


def test_ibm_profile_precedes_first_invoice_with_rule_limit(
    ibm_events: list[Event],
) -> None:
    seen: set[str] = set()
    for event in ibm_events:
        customer = event["data"].get("customer_id")
        if event["type"] == "erp.credit_profile.set":
            seen.add(customer)
            assert event["data"]["credit_limit"] == "250.00"
            assert event["data"]["timezone"] == "UTC"
            assert event["data"]["payment_terms_days"] == 30
        elif customer is not None:
            assert customer in seen, f"{event['id']} before its customer's profile"


def test_ibm_limit_and_risk_rules_are_parameters() -> None:
    rows = list(ibm.read_rows(max_rows=300))
    events = list(
        ibm.events(
            rows,
            limit_rule=LimitRule.parse("max-invoice:3,round=100"),
            risk_rule=RiskRule.parse("fixed:D"),
            customers=2,
        )
    )
    profiles = _of_type(events, "erp.credit_profile.set")
    assert len(profiles) == 2
    for profile in profiles:
        mine = [
            r.amount for r in rows if r.customer_id == profile["data"]["customer_id"]
        ]
        expected = (max(mine) * 3 / 100).to_integral_value(
            rounding="ROUND_CEILING"
        ) * 100
        assert Decimal(profile["data"]["credit_limit"]) == expected
        assert profile["data"]["risk_class"] == "D"
    assert {e["data"]["customer_id"] for e in events if "customer_id" in e["data"]} == {
        p["data"]["customer_id"] for p in profiles
    }


def test_ibm_events_evaluate_without_rejections(ibm_events: list[Event]) -> None:
    outputs = _evaluate(ibm_events)
    assert not _of_type(outputs, "credit.event.rejected")
    snapshots = _of_type(outputs, "credit.account.snapshot")
    # every invoice of the slice is paid in full by the end
    assert all(s["data"]["exposure"]["open_receivables"] == "0.00" for s in snapshots)


# ---- rules ---------------------------------------------------------------------------


def test_limit_rule_rounds_up_and_keeps_a_minimum() -> None:
    rule = LimitRule.parse("median-invoice:4,round=100,min=200")
    assert rule.limit_for([Decimal(10), Decimal(30), Decimal(1000)]) == Decimal(
        "200.00"
    )
    assert rule.limit_for([Decimal("101.50")]) == Decimal("500.00")
    assert rule.limit_for([]) == Decimal("200.00")
    assert LimitRule.parse("fixed:250").limit_for([Decimal(1)]) == Decimal("250.00")


@pytest.mark.parametrize(
    "text", ["250", "fixed", "median-invoice:x", "fixed:250,floor=3", "fixed:-1"]
)
def test_limit_rule_rejects_bad_text(text: str) -> None:
    with pytest.raises(RuleError):
        LimitRule.parse(text)


def test_risk_rule_bands_late_share() -> None:
    rule = RiskRule.parse("late-share:0.1,0.3,0.6")
    assert [rule.risk_class(late, 10) for late in (0, 1, 3, 6, 7)] == [
        "A",
        "A",
        "B",
        "C",
        "D",
    ]
    assert rule.risk_class(0, 0) == "A"
    with pytest.raises(RuleError):
        RiskRule.parse("late-share:0.6,0.3,0.1")


# ---- Online Retail: small files ------------------------------------------------------

HEADER_2009 = (
    "Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country"
)
HEADER_2010 = (
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
)


def _gz(path: Path, header: str, rows: list[str]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8", newline="") as f:
        f.write("\n".join([header, *rows]) + "\n")
    return path


@pytest.fixture
def small_files(tmp_path: Path) -> tuple[Path, Path]:
    first = _gz(
        tmp_path / "a.csv.gz",
        HEADER_2009,
        [
            "100001,X1,thing,2,2010-06-01 10:00:00,1.25,12345,United Kingdom",
            "100001,X2,other,1,2010-06-01 10:01:00,0.005,12345,United Kingdom",
            "100001,X3,no customer,5,2010-06-01 10:00:00,9.99,,United Kingdom",
            "A100002,B,Adjust bad debt,1,2010-06-02 10:00:00,50.00,12345,United Kingdom",
            "C100003,X1,thing,-1,2010-06-03 11:00:00,1.25,12345,United Kingdom",
            "100004,X1,thing,-3,2010-06-04 11:00:00,1.00,12345,United Kingdom",
            "100005,X1,in the overlap,1,2010-12-01 09:00:00,7.00,12345,United Kingdom",
        ],
    )
    second = _gz(
        tmp_path / "b.csv.gz",
        HEADER_2010,
        [
            "100004,X9,before the cut,1,2010-11-30 23:59:00,3.00,12345,United Kingdom",
            "100005,X1,in the overlap,1,2010-12-01 09:00:00,7.00,12345,United Kingdom",
            "100006,X1,thing,4,2010-12-02 09:00:00,0.125,54321,France",
        ],
    )
    return first, second


def test_join_takes_each_file_on_its_side_of_the_cut_over(
    small_files: tuple[Path, Path],
) -> None:
    lines = list(online_retail.joined_lines(small_files))
    assert [line.invoice for line in lines].count("100005") == 1  # from the 2nd file
    assert lines[-2].invoice == "100005" and lines[-2].quantity == "1"
    assert "2010-11-30 23:59:00" not in {line.invoice_date for line in lines}


def test_documents_group_lines_and_drop_bad_debt_and_anonymous_lines(
    small_files: tuple[Path, Path],
) -> None:
    docs = {
        d.number: d
        for d in online_retail.documents(online_retail.joined_lines(small_files))
    }
    assert set(docs) == {"100001", "C100003", "100004", "100005", "100006"}
    sale = docs["100001"]
    assert sale.total == Decimal("2.50") + Decimal("0.005")
    assert sale.amount == Decimal("2.50")  # 2.505 rounded half-even
    assert sale.local_time == "2010-06-01 10:00:00"  # the earliest of its lines
    assert docs["100006"].amount == Decimal("0.50")
    assert docs["C100003"].amount == Decimal("1.25")


def test_small_files_give_sales_credit_notes_and_invented_payments(
    small_files: tuple[Path, Path],
) -> None:
    docs = online_retail.documents(online_retail.joined_lines(small_files))
    events = _valid_and_sorted(online_retail.events(docs, ibm_rows=[_row(45)]))
    kinds = [e["type"] for e in events if e["type"] != "clock.tick"]
    assert kinds.count("erp.order.placed") == 3  # 100004 (total -3.00) is skipped
    assert kinds.count("erp.invoice.issued") == 3
    assert kinds.count("erp.payment.received") == 3
    credit = _of_type(events, "erp.credit_note.issued")[0]
    assert credit["data"]["amount"] == "1.25"
    assert "invoice_id" not in credit["data"]

    # BST: 10:00 in London on 2010-06-01 is 09:00 UTC
    invoice = next(e for e in events if e["id"] == "invoice-100001")
    assert invoice["time"] == "2010-06-01T09:00:00Z"
    assert invoice["data"]["due_date"] == "2010-07-01"
    assert invoice["data"]["order_id"] == "SO100001"
    payment = next(e for e in events if e["id"] == "payment-100001")
    assert payment["time"] == "2010-07-16T07:00:00Z"  # + 45 days, 08:00 London
    assert payment["data"]["allocations"] == [
        {"invoice_id": "100001", "amount": "2.50"}
    ]

    profile = next(e for e in events if e["id"] == "profile-12345")
    assert profile["time"] == "2010-05-31T23:00:00Z"  # midnight in London
    assert profile["data"]["currency"] == "GBP"
    assert profile["data"]["timezone"] == "Europe/London"
    assert profile["data"]["risk_class"] == "D"  # every payment 45 days: late


def _row(days: int, customer: str = "X") -> ibm.Row:
    day = dt.date(2013, 1, 1)
    return ibm.Row(
        customer,
        "391",
        "1",
        day,
        day + dt.timedelta(days=30),
        Decimal(1),
        False,
        day + dt.timedelta(days=days),
        days,
        max(0, days - 30),
    )


def test_generated_events_are_marked_synthetic(small_files: tuple[Path, Path]) -> None:
    docs = online_retail.documents(online_retail.joined_lines(small_files))
    for event in online_retail.events(docs, ibm_rows=[_row(10)]):
        if event["type"] in ("erp.order.placed", "erp.credit_note.issued"):
            assert event["source"] == "uci/online-retail"
            assert "synthetic" not in event["data"]
        elif event["type"] == "erp.invoice.issued":
            assert event["source"] == "uci/online-retail"
            assert event["data"]["synthetic_fields"] == ["due_date"]
        else:
            assert event["source"] == "synthetic/online-retail"
            assert event["data"]["synthetic"] is True


# ---- Online Retail: the real files ---------------------------------------------------


@pytest.fixture(scope="module")
def retail_slice() -> list[online_retail.Document]:
    return online_retail.documents(online_retail.joined_lines(max_rows=4000))


def test_online_retail_slice_gives_valid_events_sorted_by_time(
    retail_slice: list[online_retail.Document],
) -> None:
    events = _valid_and_sorted(online_retail.events(retail_slice))
    orders = _of_type(events, "erp.order.placed")
    invoices = _of_type(events, "erp.invoice.issued")
    assert orders and len(orders) == len(invoices)
    assert _of_type(events, "erp.credit_note.issued")


def test_sale_order_and_invoice_carry_the_same_amount(
    retail_slice: list[online_retail.Document],
) -> None:
    events = list(online_retail.events(retail_slice))
    orders = {e["data"]["order_id"]: e for e in _of_type(events, "erp.order.placed")}
    for invoice in _of_type(events, "erp.invoice.issued"):
        order = orders[invoice["data"]["order_id"]]
        assert order["data"]["amount"] == invoice["data"]["amount"]
        assert order["time"] == invoice["time"]
        assert events.index(order) < events.index(invoice)


def test_evaluator_counts_a_sale_once(
    retail_slice: list[online_retail.Document],
) -> None:
    events = list(online_retail.events(retail_slice, customers=1))
    first_invoice = next(e for e in events if e["type"] == "erp.invoice.issued")
    upto = events[: events.index(first_invoice) + 1]
    assert not _of_type(upto, "erp.payment.received")

    outputs = _evaluate(upto)
    assert not _of_type(outputs, "credit.event.rejected")
    snapshot = _of_type(outputs, "credit.account.snapshot")[0]["data"]
    amount = first_invoice["data"]["amount"]
    assert snapshot["exposure"]["open_receivables"] == amount
    assert snapshot["exposure"]["open_orders"] == "0.00"
    assert snapshot["exposure"]["total"] == amount


def test_same_seed_gives_byte_identical_output(
    retail_slice: list[online_retail.Document],
) -> None:
    def jsonl(seed: int) -> bytes:
        out = io.BytesIO()
        write_jsonl(online_retail.events(retail_slice, seed=seed), out)
        return out.getvalue()

    first = jsonl(7)
    assert first == jsonl(7)
    assert first != jsonl(8)


def test_per_customer_payment_behaviour_draws_from_one_ibm_customer(
    retail_slice: list[online_retail.Document],
) -> None:
    rows = [_row(3, "fast"), _row(4, "fast"), _row(60, "slow"), _row(61, "slow")]
    events = online_retail.events(retail_slice, behaviour="per-customer", ibm_rows=rows)
    delays: dict[str, set[int]] = {}
    for payment in _of_type(list(events), "erp.payment.received"):
        data = payment["data"]
        delays.setdefault(data["customer_id"], set()).add(data["days_to_settle"])
    assert all(d <= {3, 4} or d <= {60, 61} for d in delays.values())
    assert any(d <= {3, 4} for d in delays.values())
    assert any(d <= {60, 61} for d in delays.values())


@pytest.fixture(scope="module")
def big_customers() -> list[online_retail.Document]:
    _, second = online_retail.default_paths()
    lines = (
        line
        for line in online_retail.read_lines(second)
        if line.customer_id in ("16446", "12346")
    )
    return online_retail.documents(lines)


def test_known_documents_of_2010_11_file_sum_right(
    big_customers: list[online_retail.Document],
) -> None:
    docs = {d.number: d for d in big_customers}
    assert docs["581483"].amount == Decimal("168469.60")
    assert docs["C581484"].amount == Decimal("168469.60")
    assert docs["541431"].amount == Decimal("77183.60")
    assert docs["C541433"].amount == Decimal("77183.60")

    events = {e["id"]: e for e in online_retail.events(big_customers)}
    assert events["order-581483"]["data"]["amount"] == "168469.60"
    assert events["invoice-581483"]["data"]["amount"] == "168469.60"
    assert events["invoice-581483"]["data"]["customer_id"] == "16446"
    note = events["credit-note-C581484"]
    assert note["data"]["amount"] == "168469.60"
    assert note["time"] == "2011-12-09T09:27:00Z"  # 09:27 in London, GMT in December
    assert events["invoice-581483"]["time"] == "2011-12-09T09:15:00Z"


# ---- replay and command line ---------------------------------------------------------


def test_replicated_customers_are_new_accounts_in_time_order(
    ibm_events: list[Event],
) -> None:
    copies = list(replicate_customers(ibm_events[:400], 3, shift=1000))
    ticks = _of_type(ibm_events[:400], "clock.tick")
    assert len(copies) == 3 * (400 - len(ticks)) + len(ticks)
    _valid_and_sorted(copies)
    ids = [(e["source"], e["id"]) for e in copies]
    assert len(set(ids)) == len(ids)
    customers = {e["data"]["customer_id"] for e in copies if "customer_id" in e["data"]}
    first = ibm_events[0]["data"]["customer_id"]
    assert {first, f"{first}-r1", f"{first}-r2"} <= customers

    sale = next(
        e
        for e in online_retail.events(_tiny_docs(), ibm_rows=[_row(5)])
        if e["type"] == "erp.invoice.issued"
    )
    shifted = list(replicate_customers([sale], 2))[1]
    assert shifted["data"]["customer_id"] == "1012346"
    assert shifted["data"]["invoice_id"] == "r1-581483"
    assert shifted["data"]["order_id"] == "r1-SO581483"
    assert shifted["subject"] == "main/1012346"
    assert sale["data"]["customer_id"] == "12346"  # the original is left alone


def _tiny_docs() -> list[online_retail.Document]:
    return [
        online_retail.Document("581483", "12346", "2011-12-09 09:15:00", Decimal(9))
    ]


def test_cli_writes_json_lines(tmp_path: Path) -> None:
    out = tmp_path / "ibm.jsonl"
    assert cli.main(["ibm", "--out", str(out), "--customers", "3"]) == 0
    events = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    _valid_and_sorted(events)
    assert len(_of_type(events, "erp.credit_profile.set")) == 3


def test_cli_refuses_a_bad_rule(tmp_path: Path) -> None:
    code = cli.main(["ibm", "--out", str(tmp_path / "x"), "--limit-rule", "lots"])
    assert code == 2
