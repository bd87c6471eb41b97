"""Writes the scenario cases in tests/cases/extra/, one per class of credit fault.

The cases use the same format as ../shared/cases (see tests/cases/shared/README.md).
Each expectation was worked out by hand from CONTRACT.md; run this script after editing
a case: `python tests/cases/build_extra.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).parent / "extra"


class Case:
    def __init__(self, name: str, about: str, policy: str | None = None) -> None:
        self.name, self.about, self.policy = name, about, policy
        self.events: list[dict] = []
        self.decisions: list[dict] = []
        self.snapshots: dict[str, dict] = {}

    def ev(self, type_: str, time: str, customer: str | None = "C1", id_: str | None = None,
           **data: object) -> Case:
        if customer is not None:
            data = {"company": "main", "customer_id": customer, **data}
        self.events.append({
            "specversion": "1.0",
            "id": id_ or f"{self.name}-{len(self.events) + 1:03d}",
            "source": "erp/test",
            "type": type_,
            "time": time,
            "data": data,
        })
        return self

    def profile(self, time: str, limit: str = "1000.00", customer: str = "C1",
                **extra: object) -> Case:
        return self.ev("erp.credit_profile.set", time, customer, currency="EUR",
                       credit_limit=limit, risk_class=extra.pop("risk_class", "B"), **extra)

    def expect(self, type_: str, **fields: object) -> Case:
        self.decisions.append({"type": type_, **fields})
        return self

    def snapshot(self, account: str = "main/C1", **fields: object) -> Case:
        self.snapshots[account] = {k.replace("__", "."): v for k, v in fields.items()}
        return self

    def write(self) -> None:
        doc = {"name": self.name, "about": self.about, "events": self.events,
               "expect": {"decisions": self.decisions, "snapshots": self.snapshots}}
        if self.policy:
            doc["policy"] = self.policy
        (OUT / f"{self.name}.json").write_text(json.dumps(doc, indent=1) + "\n")


def cases() -> list[Case]:
    out = []

    c = Case("redelivered-event-changes-nothing",
             "The same event delivered twice (same source and id) is applied once.")
    c.profile("2026-01-01T08:00:00Z")
    c.ev("erp.order.placed", "2026-01-02T08:00:00Z", id_="dup-1", order_id="SO1",
         amount="300.00", currency="EUR")
    c.ev("erp.order.placed", "2026-01-02T08:00:00Z", id_="dup-1", order_id="SO1",
         amount="300.00", currency="EUR")
    c.expect("credit.order.approved", order_id="SO1")
    c.snapshot(status="OK", exposure__open_orders="300.00", exposure__total="300.00")
    out.append(c)

    c = Case("rejected-event-redelivered-later-changes-nothing",
             "An event rejected once stays judged: redelivered after the account has "
             "changed so that it would now pass, it changes nothing and produces nothing.")
    c.ev("credit.command.release_order", "2026-01-01T07:00:00Z", id_="rel-1",
         order_id="SO1", by="ops", reason="customer called")
    c.profile("2026-01-01T08:00:00Z")
    c.ev("erp.order.placed", "2026-01-02T08:00:00Z", order_id="SO1", amount="1500.00",
         currency="EUR")
    c.ev("credit.command.release_order", "2026-01-02T09:00:00Z", id_="rel-1",
         order_id="SO1", by="ops", reason="customer called")
    c.expect("credit.event.rejected")
    c.expect("credit.order.blocked", order_id="SO1", reasons=["LIMIT_EXCEEDED"])
    c.snapshot(exposure__open_orders="0.00", blocked_orders=["SO1"])
    out.append(c)

    c = Case("account-known-only-from-rejected-events",
             "A rejected event is the first and only event of an account, before any "
             "clock: it is rejected with its reason, nothing is owed, and the account's "
             "snapshot says so with no time of its own. (An event that fails validation, "
             "like C2's payment, makes no account at all.)")
    c.ev("credit.command.release_order", "2026-01-01T07:00:00Z", order_id="SO1",
         by="ops", reason="customer called")
    c.ev("erp.payment.received", "2026-01-01T08:00:00Z", customer="C2", payment_id="P1",
         amount="100.00", currency="EUR",
         allocations=[{"invoice_id": "INV1", "amount": "150.00"}])
    c.expect("credit.event.rejected")
    c.expect("credit.event.rejected")
    c.snapshot(status="OK", exposure__total="0", blocked_orders=[], as_of=None)
    out.append(c)

    c = Case("second-order-with-same-number-is-rejected",
             "A document number used twice in one account is rejected, not counted twice.")
    c.profile("2026-01-01T08:00:00Z")
    c.ev("erp.order.placed", "2026-01-02T08:00:00Z", order_id="SO1", amount="300.00",
         currency="EUR")
    c.ev("erp.order.placed", "2026-01-02T09:00:00Z", order_id="SO1", amount="300.00",
         currency="EUR")
    c.expect("credit.order.approved", order_id="SO1")
    c.expect("credit.event.rejected")
    c.snapshot(exposure__total="300.00")
    out.append(c)

    c = Case("payment-allocated-before-its-invoice-arrives",
             "A payment allocated to an invoice the monitor has not seen yet lowers "
             "exposure at once and settles the invoice when it arrives.")
    c.profile("2026-01-01T08:00:00Z")
    c.ev("erp.payment.received", "2026-01-02T08:00:00Z", payment_id="P1", amount="300.00",
         currency="EUR", allocations=[{"invoice_id": "INV1", "amount": "300.00"}])
    c.ev("erp.invoice.issued", "2026-01-03T08:00:00Z", invoice_id="INV1", amount="300.00",
         currency="EUR", due_date="2026-01-10")
    c.ev("clock.tick", "2026-02-01T00:00:00Z", customer=None)
    c.snapshot(status="OK", exposure__open_receivables="0.00",
               exposure__unapplied_credit="0.00", exposure__total="0.00",
               overdue__amount="0.00")
    out.append(c)

    c = Case("late-allocation-event-waits-for-its-payment",
             "erp.payment.allocated that arrives before its payment is kept and applied "
             "when the payment arrives.")
    c.profile("2026-01-01T08:00:00Z")
    c.ev("erp.invoice.issued", "2026-01-02T08:00:00Z", invoice_id="INV1", amount="400.00",
         currency="EUR", due_date="2026-01-20")
    c.ev("erp.payment.allocated", "2026-01-05T08:00:00Z", payment_id="P1",
         invoice_id="INV1", amount="400.00")
    c.ev("erp.payment.received", "2026-01-05T07:00:00Z", payment_id="P1", amount="400.00",
         currency="EUR")
    c.ev("clock.tick", "2026-02-01T00:00:00Z", customer=None)
    c.snapshot(status="OK", exposure__open_receivables="0.00",
               exposure__unapplied_credit="0.00", overdue__amount="0.00")
    out.append(c)

    c = Case("reversed-payment-reopens-the-invoice",
             "Reversing a payment undoes its allocations: the invoice is open and "
             "overdue again.")
    c.profile("2026-01-01T08:00:00Z")
    c.ev("erp.invoice.issued", "2026-01-02T08:00:00Z", invoice_id="INV1", amount="500.00",
         currency="EUR", due_date="2026-01-15")
    c.ev("erp.payment.received", "2026-01-10T08:00:00Z", payment_id="P1", amount="500.00",
         currency="EUR", allocations=[{"invoice_id": "INV1", "amount": "500.00"}])
    c.ev("erp.payment.reversed", "2026-01-20T08:00:00Z", payment_id="P1")
    c.expect("credit.account.status_changed", status="WARNING", reasons=["OVERDUE"])
    c.snapshot(status="WARNING", exposure__open_receivables="500.00",
               exposure__unapplied_credit="0.00", overdue__amount="500.00",
               overdue__oldest_days=5)
    out.append(c)

    c = Case("cancelled-invoice-gives-value-back-to-its-order",
             "Cancelling an invoice gives back to its open order what it consumed; the "
             "goods are counted once throughout.")
    c.profile("2026-01-01T08:00:00Z")
    c.ev("erp.order.placed", "2026-01-02T08:00:00Z", order_id="SO1", amount="500.00",
         currency="EUR")
    c.ev("erp.invoice.issued", "2026-01-03T08:00:00Z", invoice_id="INV1", amount="300.00",
         currency="EUR", due_date="2026-02-03", order_id="SO1")
    c.ev("erp.invoice.cancelled", "2026-01-04T08:00:00Z", invoice_id="INV1")
    c.expect("credit.order.approved", order_id="SO1")
    c.snapshot(exposure__open_orders="500.00", exposure__open_receivables="0.00",
               exposure__total="500.00")
    out.append(c)

    c = Case("payment-on-cancelled-invoice-becomes-unapplied",
             "Money allocated to an invoice that is cancelled stays the customer's, as "
             "unapplied credit.")
    c.profile("2026-01-01T08:00:00Z")
    c.ev("erp.invoice.issued", "2026-01-02T08:00:00Z", invoice_id="INV1", amount="300.00",
         currency="EUR", due_date="2026-02-03")
    c.ev("erp.payment.received", "2026-01-03T08:00:00Z", payment_id="P1", amount="300.00",
         currency="EUR", allocations=[{"invoice_id": "INV1", "amount": "300.00"}])
    c.ev("erp.invoice.cancelled", "2026-01-04T08:00:00Z", invoice_id="INV1")
    c.snapshot(exposure__open_receivables="0.00", exposure__unapplied_credit="300.00",
               exposure__total="-300.00", available_credit="1300.00")
    out.append(c)

    c = Case("invoice-larger-than-order-adds-only-the-excess",
             "An invoice consumes its order's open value; only what goes beyond it is new "
             "exposure, and a credit note never gives the order its value back.")
    c.profile("2026-01-01T08:00:00Z")
    c.ev("erp.order.placed", "2026-01-02T08:00:00Z", order_id="SO1", amount="400.00",
         currency="EUR")
    c.ev("erp.invoice.issued", "2026-01-03T08:00:00Z", invoice_id="INV1", amount="450.00",
         currency="EUR", due_date="2026-02-03", order_id="SO1")
    c.ev("erp.credit_note.issued", "2026-01-04T08:00:00Z", credit_note_id="CN1",
         amount="50.00", currency="EUR", invoice_id="INV1")
    c.expect("credit.order.approved", order_id="SO1")
    c.snapshot(exposure__open_orders="0.00", exposure__open_receivables="400.00",
               exposure__total="400.00")
    out.append(c)

    c = Case("delivery-without-order-counts-until-invoiced",
             "Goods delivered without an order are exposure until their invoice takes "
             "them over; a delivery of an ordered item adds nothing.")
    c.profile("2026-01-01T08:00:00Z")
    c.ev("erp.delivery.posted", "2026-01-02T08:00:00Z", delivery_id="DN1", amount="200.00",
         currency="EUR")
    c.ev("erp.order.placed", "2026-01-02T09:00:00Z", order_id="SO2", amount="100.00",
         currency="EUR")
    c.ev("erp.delivery.posted", "2026-01-02T10:00:00Z", delivery_id="DN2", amount="100.00",
         currency="EUR", order_id="SO2")
    c.ev("erp.invoice.issued", "2026-01-03T08:00:00Z", invoice_id="INV1", amount="200.00",
         currency="EUR", due_date="2026-02-03", delivery_id="DN1")
    c.expect("credit.order.approved", order_id="SO2")
    c.snapshot(exposure__uninvoiced_deliveries="0.00", exposure__open_orders="100.00",
               exposure__open_receivables="200.00", exposure__total="300.00")
    out.append(c)

    c = Case("order-without-rate-waits-and-is-released-when-rate-arrives",
             "An order in a currency with no known rate is blocked and released "
             "automatically when the rate arrives.")
    c.profile("2026-01-01T08:00:00Z")
    c.ev("erp.order.placed", "2026-01-02T08:00:00Z", order_id="SO1", amount="100.00",
         currency="USD")
    c.ev("fx.rate.set", "2026-01-02T09:00:00Z", customer=None, currency="EUR",
         quote_currency="USD", rate="1.25")
    c.expect("credit.order.blocked", order_id="SO1", reasons=["FX_RATE_MISSING"])
    c.expect("credit.order.released", order_id="SO1", by="auto")
    c.snapshot(status="OK", exposure__open_orders="80.00", blocked_orders=[])
    out.append(c)

    c = Case("invoice-without-rate-warns-until-rate-arrives",
             "A document with no rate into the account currency is listed as unconverted "
             "and puts the account on WARNING until a rate arrives.")
    c.profile("2026-01-01T08:00:00Z")
    c.ev("erp.invoice.issued", "2026-01-02T08:00:00Z", invoice_id="INV1", amount="1000",
         currency="JPY", due_date="2026-02-01")
    c.ev("fx.rate.set", "2026-01-03T00:00:00Z", customer=None, currency="JPY",
         quote_currency="EUR", rate="0.0061")
    c.expect("credit.account.status_changed", status="WARNING", reasons=["FX_RATE_MISSING"])
    c.expect("credit.account.status_changed", status="OK", reasons=[])
    c.snapshot(status="OK", exposure__total="6.10", unconverted=[])
    out.append(c)

    c = Case("order-without-credit-profile-is-blocked",
             "Without a credit profile an order is blocked and the account is on HOLD.")
    c.ev("erp.order.placed", "2026-01-02T08:00:00Z", customer="C9", order_id="SO1",
         amount="10.00", currency="EUR")
    c.expect("credit.order.blocked", order_id="SO1", reasons=["NO_CREDIT_PROFILE"])
    c.expect("credit.account.status_changed", status="HOLD", reasons=["NO_CREDIT_PROFILE"])
    c.snapshot("main/C9", status="HOLD", currency="EUR", blocked_orders=["SO1"],
               exposure__total="0.00")
    out.append(c)

    c = Case("missing-profile-may-be-approved-by-policy",
             "With on_missing_profile = approve, an account without a profile is not "
             "held and reports in the currency of its first document.",
             policy='[default]\non_missing_profile = "approve"\n')
    c.ev("erp.order.placed", "2026-01-02T08:00:00Z", customer="C9", order_id="SO1",
         amount="10.00", currency="GBP")
    c.expect("credit.order.approved", order_id="SO1")
    c.snapshot("main/C9", status="OK", currency="GBP", exposure__total="10.00",
               utilization=None)
    out.append(c)

    c = Case("manual-block-holds-and-unblock-releases",
             "A manual block in the profile holds the account; lifting it releases the "
             "orders held for it.")
    c.profile("2026-01-01T08:00:00Z", blocked=True)
    c.ev("erp.order.placed", "2026-01-02T08:00:00Z", order_id="SO1", amount="100.00",
         currency="EUR")
    c.profile("2026-01-03T08:00:00Z", blocked=False)
    c.expect("credit.account.status_changed", status="HOLD", reasons=["MANUAL_BLOCK"])
    c.expect("credit.order.blocked", order_id="SO1", reasons=["ACCOUNT_ON_HOLD"])
    c.expect("credit.account.status_changed", status="OK", reasons=[])
    c.expect("credit.order.released", order_id="SO1", by="auto")
    c.snapshot(status="OK", exposure__open_orders="100.00", blocked_orders=[])
    out.append(c)

    c = Case("limit-hold-ends-only-below-release-level",
             "A HOLD for the limit lasts until exposure is at or below 95% of the limit.")
    c.profile("2026-01-01T08:00:00Z")
    c.ev("erp.invoice.issued", "2026-01-02T08:00:00Z", invoice_id="INV1", amount="1100.00",
         currency="EUR", due_date="2026-03-01")
    c.ev("erp.payment.received", "2026-01-03T08:00:00Z", payment_id="P1", amount="120.00",
         currency="EUR", allocations=[{"invoice_id": "INV1", "amount": "120.00"}])
    c.ev("erp.order.placed", "2026-01-03T09:00:00Z", order_id="SO1", amount="10.00",
         currency="EUR")
    c.ev("erp.payment.received", "2026-01-04T08:00:00Z", payment_id="P2", amount="40.00",
         currency="EUR")
    c.expect("credit.account.status_changed", status="HOLD", reasons=["LIMIT_EXCEEDED"])
    c.expect("credit.order.blocked", order_id="SO1", reasons=["ACCOUNT_ON_HOLD"])
    c.expect("credit.account.status_changed", status="WARNING", reasons=["UTILIZATION_HIGH"])
    c.expect("credit.order.released", order_id="SO1", by="auto")
    c.snapshot(status="WARNING", exposure__total="950.00", exposure__unapplied_credit="40.00")
    out.append(c)

    c = Case("expiring-then-expired-limit",
             "A limit close to its end warns; after valid_until the effective limit is "
             "zero and the account is on HOLD.")
    c.profile("2026-01-01T08:00:00Z", valid_until="2026-01-10")
    c.ev("erp.invoice.issued", "2026-01-02T08:00:00Z", invoice_id="INV1", amount="100.00",
         currency="EUR", due_date="2026-03-01")
    c.ev("clock.tick", "2026-01-11T00:00:00Z", customer=None)
    c.ev("erp.order.placed", "2026-01-11T08:00:00Z", order_id="SO1", amount="10.00",
         currency="EUR")
    c.expect("credit.account.status_changed", status="WARNING", reasons=["LIMIT_EXPIRING"])
    c.expect("credit.account.status_changed", status="HOLD",
             reasons=["LIMIT_EXCEEDED", "LIMIT_EXPIRED"])
    c.expect("credit.order.blocked", order_id="SO1", reasons=["ACCOUNT_ON_HOLD"])
    c.snapshot(status="HOLD", effective_limit="0.00", credit_limit="1000.00",
               utilization=None)
    out.append(c)

    c = Case("overdue-warns-then-holds-and-payment-lifts-it",
             "An unpaid invoice warns the day after it is due, holds at 30 days overdue, "
             "and its payment ends the hold and releases the orders held.")
    c.profile("2026-01-01T08:00:00Z")
    c.ev("erp.invoice.issued", "2026-01-01T09:00:00Z", invoice_id="INV1", amount="200.00",
         currency="EUR", due_date="2026-01-31")
    c.ev("clock.tick", "2026-01-31T23:00:00Z", customer=None)
    c.ev("clock.tick", "2026-02-01T00:10:00Z", customer=None)
    c.ev("clock.tick", "2026-03-01T00:10:00Z", customer=None)
    c.ev("clock.tick", "2026-03-02T00:10:00Z", customer=None)
    c.ev("erp.order.placed", "2026-03-02T09:00:00Z", order_id="SO1", amount="50.00",
         currency="EUR")
    c.ev("erp.payment.received", "2026-03-03T09:00:00Z", payment_id="P1", amount="200.00",
         currency="EUR", allocations=[{"invoice_id": "INV1", "amount": "200.00"}])
    c.expect("credit.account.status_changed", status="WARNING", reasons=["OVERDUE"])
    c.expect("credit.account.status_changed", status="HOLD", reasons=["OVERDUE"])
    c.expect("credit.order.blocked", order_id="SO1", reasons=["ACCOUNT_ON_HOLD"])
    c.expect("credit.account.status_changed", status="OK", reasons=[])
    c.expect("credit.order.released", order_id="SO1", by="auto")
    c.snapshot(status="OK", overdue__amount="0.00", exposure__total="50.00")
    out.append(c)

    c = Case("order-checked-against-overdue-at-its-own-time",
             "An order arriving when an invoice is already 30 days overdue meets a held "
             "account, even if no clock tick came in between.")
    c.profile("2026-01-01T08:00:00Z")
    c.ev("erp.invoice.issued", "2026-01-01T09:00:00Z", invoice_id="INV1", amount="200.00",
         currency="EUR", due_date="2026-01-31")
    c.ev("erp.order.placed", "2026-03-05T09:00:00Z", order_id="SO1", amount="50.00",
         currency="EUR")
    c.expect("credit.order.blocked", order_id="SO1", reasons=["ACCOUNT_ON_HOLD"])
    c.expect("credit.account.status_changed", status="HOLD", reasons=["OVERDUE"])
    c.snapshot(status="HOLD", overdue__oldest_days=33, **{"overdue__buckets__31-60": "200.00"})
    out.append(c)

    c = Case("small-overdue-is-reported-but-triggers-nothing",
             "An overdue amount below overdue_min_amount is reported but changes no status.")
    c.profile("2026-01-01T08:00:00Z")
    c.ev("erp.invoice.issued", "2026-01-01T09:00:00Z", invoice_id="INV1", amount="0.50",
         currency="EUR", due_date="2026-01-10")
    c.ev("clock.tick", "2026-03-01T00:00:00Z", customer=None)
    c.snapshot(status="OK", overdue__amount="0.50", overdue__oldest_days=50)
    out.append(c)

    c = Case("grace-days-delay-overdue",
             "With grace days, an invoice is overdue only after due date plus grace; its "
             "days overdue still count from the due date.",
             policy="[default]\ngrace_days = 5\n")
    c.profile("2026-01-01T08:00:00Z")
    c.ev("erp.invoice.issued", "2026-01-01T09:00:00Z", invoice_id="INV1", amount="100.00",
         currency="EUR", due_date="2026-01-10")
    c.ev("clock.tick", "2026-01-15T12:00:00Z", customer=None)
    c.ev("clock.tick", "2026-01-16T12:00:00Z", customer=None)
    c.expect("credit.account.status_changed", status="WARNING", reasons=["OVERDUE"])
    c.snapshot(status="WARNING", overdue__oldest_days=6)
    out.append(c)

    c = Case("credit-note-without-invoice-is-unapplied-credit",
             "A credit note that names no invoice lowers exposure as unapplied credit and "
             "is never blocked, even on HOLD.")
    c.profile("2026-01-01T08:00:00Z")
    c.ev("erp.invoice.issued", "2026-01-02T08:00:00Z", invoice_id="INV1", amount="1200.00",
         currency="EUR", due_date="2026-02-01")
    c.ev("erp.credit_note.issued", "2026-01-03T08:00:00Z", credit_note_id="CN1",
         amount="300.00", currency="EUR")
    c.expect("credit.account.status_changed", status="HOLD", reasons=["LIMIT_EXCEEDED"])
    c.expect("credit.account.status_changed", status="WARNING", reasons=["UTILIZATION_HIGH"])
    c.snapshot(status="WARNING", exposure__unapplied_credit="300.00",
               exposure__open_receivables="1200.00", exposure__total="900.00")
    out.append(c)

    c = Case("raise-of-approved-order-is-gated",
             "Raising an approved order gates the raise; a blocked raise leaves the "
             "approved part counted.")
    c.profile("2026-01-01T08:00:00Z")
    c.ev("erp.order.placed", "2026-01-02T08:00:00Z", order_id="SO1", amount="800.00",
         currency="EUR")
    c.ev("erp.order.amended", "2026-01-03T08:00:00Z", order_id="SO1", amount="1200.00")
    c.ev("erp.order.amended", "2026-01-04T08:00:00Z", order_id="SO1", amount="700.00")
    c.expect("credit.order.approved", order_id="SO1")
    c.expect("credit.order.blocked", order_id="SO1", reasons=["LIMIT_EXCEEDED"])
    c.snapshot(status="OK", exposure__open_orders="700.00", blocked_orders=[])
    out.append(c)

    c = Case("controller-releases-blocked-order-by-hand",
             "A credit controller's release command releases a blocked order at once and "
             "keeps who and why; a release of an order that is not blocked is rejected.")
    c.profile("2026-01-01T08:00:00Z")
    c.ev("erp.order.placed", "2026-01-02T08:00:00Z", order_id="SO1", amount="1500.00",
         currency="EUR")
    c.ev("credit.command.release_order", "2026-01-02T09:00:00Z", order_id="SO1",
         by="alice", reason="customer prepays next week")
    c.ev("credit.command.release_order", "2026-01-02T10:00:00Z", order_id="SO1",
         by="alice", reason="again")
    c.expect("credit.order.blocked", order_id="SO1", reasons=["LIMIT_EXCEEDED"])
    c.expect("credit.order.released", order_id="SO1", by="alice")
    c.expect("credit.account.status_changed", status="HOLD", reasons=["LIMIT_EXCEEDED"])
    c.expect("credit.event.rejected")
    c.snapshot(status="HOLD", exposure__open_orders="1500.00", blocked_orders=[])
    out.append(c)

    c = Case("large-order-waits-for-approval",
             "Above max_order_amount an order waits for approval and is not released "
             "automatically.",
             policy='[default]\nmax_order_amount = "500.00"\n')
    c.profile("2026-01-01T08:00:00Z")
    c.ev("erp.order.placed", "2026-01-02T08:00:00Z", order_id="SO1", amount="600.00",
         currency="EUR")
    c.ev("erp.payment.received", "2026-01-03T08:00:00Z", payment_id="P1", amount="50.00",
         currency="EUR")
    c.expect("credit.order.blocked", order_id="SO1", reasons=["APPROVAL_REQUIRED"])
    c.snapshot(status="OK", blocked_orders=["SO1"], exposure__total="-50.00")
    out.append(c)

    c = Case("bad-events-are-rejected-and-processing-goes-on",
             "Events with an unknown type, a negative amount, an unknown currency, a bad "
             "date or a missing field are rejected with a reason; the rest still apply.")
    c.profile("2026-01-01T08:00:00Z")
    c.ev("erp.order.teleported", "2026-01-02T08:00:00Z", order_id="SO0")
    c.ev("erp.order.placed", "2026-01-02T08:00:00Z", order_id="SO1", amount="-5.00",
         currency="EUR")
    c.ev("erp.order.placed", "2026-01-02T08:00:00Z", order_id="SO2", amount="5.00",
         currency="XYZ")
    c.ev("erp.invoice.issued", "2026-01-02T08:00:00Z", invoice_id="INV1", amount="5.00",
         currency="EUR", due_date="2026-02-30")
    c.ev("erp.payment.received", "2026-01-02T08:00:00Z", payment_id="P1", currency="EUR")
    c.ev("erp.payment.received", "2026-01-02T08:00:00Z", payment_id="P2", amount="10.00",
         currency="EUR", allocations=[{"invoice_id": "X", "amount": "11.00"}])
    c.ev("erp.order.placed", "2026-01-02T09:00:00Z", order_id="SO3", amount="5.00",
         currency="EUR")
    for _ in range(6):
        c.expect("credit.event.rejected")
    c.expect("credit.order.approved", order_id="SO3")
    c.snapshot(status="OK", exposure__total="5.00")
    out.append(c)

    c = Case("risk-class-d-has-tighter-thresholds",
             "Risk class D warns at 70% and blocks above 90% of the limit by default.")
    c.profile("2026-01-01T08:00:00Z", risk_class="D")
    c.ev("erp.order.placed", "2026-01-02T08:00:00Z", order_id="SO1", amount="750.00",
         currency="EUR")
    c.ev("erp.order.placed", "2026-01-02T09:00:00Z", order_id="SO2", amount="200.00",
         currency="EUR")
    c.expect("credit.order.approved", order_id="SO1")
    c.expect("credit.account.status_changed", status="WARNING", reasons=["UTILIZATION_HIGH"])
    c.expect("credit.order.blocked", order_id="SO2", reasons=["LIMIT_EXCEEDED"])
    c.snapshot(status="WARNING", exposure__total="750.00", blocked_orders=["SO2"])
    out.append(c)

    c = Case("accounts-are-kept-apart-by-company",
             "The same customer number in two companies is two credit accounts.")
    c.profile("2026-01-01T08:00:00Z")
    c.ev("erp.credit_profile.set", "2026-01-01T08:00:00Z", customer=None, company="sub",
         customer_id="C1", currency="EUR", credit_limit="100.00", risk_class="B")
    c.ev("erp.order.placed", "2026-01-02T08:00:00Z", customer=None, company="sub",
         customer_id="C1", order_id="SO1", amount="150.00", currency="EUR")
    c.ev("erp.order.placed", "2026-01-02T08:00:00Z", order_id="SO1", amount="150.00",
         currency="EUR")
    c.expect("credit.order.blocked", order_id="SO1", reasons=["LIMIT_EXCEEDED"])
    c.expect("credit.order.approved", order_id="SO1")
    c.snapshot("main/C1", exposure__total="150.00", status="OK")
    c.snapshot("sub/C1", exposure__total="0.00", blocked_orders=["SO1"])
    out.append(c)

    c = Case("payment-in-another-currency-is-converted",
             "A payment in a foreign currency lowers exposure at the latest rate, in "
             "either direction of the quoted pair.")
    c.ev("fx.rate.set", "2026-01-01T00:00:00Z", customer=None, currency="EUR",
         quote_currency="USD", rate="1.25")
    c.profile("2026-01-01T08:00:00Z")
    c.ev("erp.invoice.issued", "2026-01-02T08:00:00Z", invoice_id="INV1", amount="500.00",
         currency="EUR", due_date="2026-02-01")
    c.ev("erp.payment.received", "2026-01-03T08:00:00Z", payment_id="P1", amount="125.00",
         currency="USD")
    c.snapshot(exposure__unapplied_credit="100.00", exposure__total="400.00")
    out.append(c)
    return out


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    for case in cases():
        case.write()
    print(f"wrote {len(cases())} cases to {OUT}")
