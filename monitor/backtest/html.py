"""The backtest report as one self-contained HTML page with inline SVG charts.

The page depends only on the `Report`: no generation time, no random ids, numbers
written with fixed decimals, so the same figures always give the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from html import escape

from .exposure import AccountSeries
from .figures import PolicyFigures
from .score_power import LATE_DAYS
from .report import Report

COLOURS = {"OK": "#4c9a6a", "WARNING": "#e0a030", "HOLD": "#c8443c"}
SERIES_COLOURS = ("#3b6fb6", "#c8443c", "#888888", "#4c9a6a", "#8e5bb5")

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;
max-width:64em;color:#222;line-height:1.4;padding:0 1em}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.8em 0}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f4f4f4}
.note{color:#555;font-size:.9em}svg{display:block;margin:.5em 0}
svg text{font-size:11px;fill:#333}
"""


def _num(value: Decimal | int | None, places: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{places}f}"


def _pct(value: Decimal | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["<table><tr>", *(f"<th>{escape(h)}</th>" for h in head), "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return "".join(out)


# ---- charts -----------------------------------------------------------------------


def _svg_open(width: int, height: int, title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}">'
    )


def bar_chart(
    groups: Sequence[tuple[str, Sequence[tuple[str, float]]]],
    *,
    colours: Sequence[str] = SERIES_COLOURS,
    title: str = "",
    width: int = 640,
    height: int = 220,
    stacked: bool = False,
) -> str:
    """Grouped (or stacked) bars: one group per label, one bar per (name, value)."""
    names = [name for name, _ in groups[0][1]] if groups else []
    top = (
        max(
            (
                sum(v for _, v in bars)
                if stacked
                else max((v for _, v in bars), default=0)
                for _, bars in groups
            ),
            default=0,
        )
        or 1.0
    )
    left, bottom, legend = 50, 30, 18 * len(names) if names else 0
    plot_w, plot_h = width - left - 10, height - bottom - 20 - legend
    out = [_svg_open(width, height, title)]
    out.append(f'<text x="{left}" y="12">{escape(title)}</text>')
    y0 = 20 + plot_h
    out.append(
        f'<line x1="{left}" y1="{y0}" x2="{left + plot_w}" y2="{y0}" stroke="#999"/>'
    )
    out.append(f'<text x="{left - 4}" y="24" text-anchor="end">{top:,.4g}</text>')
    out.append(f'<text x="{left - 4}" y="{y0}" text-anchor="end">0</text>')
    slot = plot_w / max(1, len(groups))
    for g, (label, bars) in enumerate(groups):
        x = left + g * slot + slot * 0.1
        bar_w = slot * 0.8 / (1 if stacked else max(1, len(bars)))
        base = float(y0)
        for b, (name, value) in enumerate(bars):
            h = plot_h * value / top
            colour = colours[b % len(colours)]
            bx = x if stacked else x + b * bar_w
            by = base - h if stacked else y0 - h
            out.append(
                f'<rect x="{bx:.1f}" y="{by:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{escape(label)}, '
                f"{escape(name)}: {value:,.4g}</title></rect>"
            )
            if stacked:
                base -= h
        out.append(
            f'<text x="{x + slot * 0.4:.1f}" y="{y0 + 14}" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    for n, name in enumerate(names):
        y = height - legend + n * 18 + 6
        out.append(
            f'<rect x="{left}" y="{y}" width="12" height="12" '
            f'fill="{colours[n % len(colours)]}"/>'
            f'<text x="{left + 18}" y="{y + 10}">{escape(name)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def line_chart(
    days: Sequence[str],
    lines: Sequence[tuple[str, Sequence[Decimal]]],
    *,
    title: str = "",
    width: int = 640,
    height: int = 180,
) -> str:
    """Lines over days; the x axis is labelled with the first and last day."""
    top = float(max((max(v, default=0) for _, v in lines), default=0)) or 1.0
    low = float(min((min(v, default=0) for _, v in lines), default=0))
    low = min(low, 0.0)
    left, plot_w, plot_h = 70, width - 80, height - 60
    out = [
        _svg_open(width, height, title),
        f'<text x="{left}" y="12">{escape(title)}</text>',
        f'<text x="{left - 4}" y="24" text-anchor="end">{top:,.0f}</text>',
        f'<text x="{left - 4}" y="{20 + plot_h}" text-anchor="end">{low:,.0f}</text>',
    ]
    span = top - low or 1.0
    step = plot_w / max(1, len(days) - 1)
    zero = 20 + plot_h * (top / span)
    out.append(
        f'<line x1="{left}" y1="{zero:.1f}" x2="{left + plot_w}" y2="{zero:.1f}" '
        'stroke="#bbb"/>'
    )
    for n, (name, values) in enumerate(lines):
        points = " ".join(
            f"{left + i * step:.1f},{20 + plot_h * (top - float(v)) / span:.1f}"
            for i, v in enumerate(values)
        )
        colour = SERIES_COLOURS[n % len(SERIES_COLOURS)]
        out.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
            f'points="{points}"/>'
        )
        out.append(
            f'<rect x="{left + n * 130}" y="{height - 14}" width="12" height="4" '
            f'fill="{colour}"/><text x="{left + n * 130 + 16}" y="{height - 9}">'
            f"{escape(name)}</text>"
        )
    if days:
        out.append(f'<text x="{left}" y="{35 + plot_h}">{escape(days[0])}</text>')
        out.append(
            f'<text x="{left + plot_w}" y="{35 + plot_h}" text-anchor="end">'
            f"{escape(days[-1])}</text>"
        )
    out.append("</svg>")
    return "".join(out)


# ---- sections ---------------------------------------------------------------------


def _early_signs(f: PolicyFigures) -> str:
    es = f.early_signs
    rows = [
        [
            s.status,
            _num(s.invoices),
            _num(s.late),
            _num(s.late_over_10),
            _pct(s.late_share),
        ]
        for s in es.by_status
    ]
    rows.append(
        [
            "all",
            _num(es.invoices),
            _num(es.late),
            _num(es.late_over_10),
            _pct(None if not es.invoices else Decimal(es.late) / es.invoices),
        ]
    )
    chart = bar_chart(
        [
            (
                s.status,
                [
                    ("paid on time", float(s.invoices - s.late)),
                    ("paid late", float(s.late - s.late_over_10)),
                    ("more than 10 days late", float(s.late_over_10)),
                ],
            )
            for s in es.by_status
        ],
        colours=("#4c9a6a", "#e0a030", "#c8443c"),
        title="Invoices by the account's status when issued",
        stacked=True,
    )
    predictors = _table(
        [
            "sign at issue",
            "late means",
            "true pos.",
            "false pos.",
            "false neg.",
            "true neg.",
            "precision",
            "recall",
        ],
        [
            [
                p.signal,
                f"> {p.late_days} days",
                _num(p.true_positive),
                _num(p.false_positive),
                _num(p.false_negative),
                _num(p.true_negative),
                _pct(p.precision),
                _pct(p.recall),
            ]
            for p in es.predictors
        ],
    )
    unpaid = (
        f" {es.unpaid:,} invoices were still unpaid at the end of the history; "
        "their lateness is counted to the end."
        if es.unpaid
        else ""
    )
    return (
        "<h2>1. Was the customer already flagged when a late invoice was issued?</h2>"
        '<p class="note">Status at issue: the account\'s status just before the '
        "invoice was applied (the latest status change caused by an earlier event; "
        "a change the invoice itself caused does not count). Late: paid in full "
        "more than 0 days after the due date, in the account's time zone. Precision: "
        "of the invoices issued under the sign, the share paid late. Recall: of the "
        f"invoices paid late, the share issued under the sign.{unpaid} The data sets "
        "have no credit profiles: they are invented (data/README.md). On the IBM "
        "history the default risk rule classes each customer by its share of late "
        "invoices over the whole history, which nobody knew in advance, and a worse "
        "class means shorter grace: for figures without that hindsight, run with "
        "<code>--risk-rule fixed:B</code>.</p>"
        + _table(
            [
                "status at issue",
                "invoices",
                "paid late",
                "> 10 days late",
                "share late",
            ],
            rows,
        )
        + chart
        + predictors
    )


def _orders(f: PolicyFigures) -> str:
    o = f.orders
    if not (o.approved or o.blocked):
        return (
            "<h2>2. Orders blocked and released</h2>"
            "<p>This history has no orders, so no order was gated.</p>"
        )
    rows = [
        ["orders approved", _num(o.approved)],
        ["orders blocked", _num(o.blocked)],
        *[[f"  blocked for {code}", _num(n)] for code, n in o.blocked_by_reason],
        ["released", _num(o.released)],
        ["  automatically", _num(o.released_auto)],
        ["  by a person", _num(o.released_manual)],
        [
            "invoiced while blocked (taken off the blocked list)",
            _num(o.invoiced_while_blocked),
        ],
        ["still blocked at the end", _num(o.still_blocked)],
        ["median time to release (hours)", _num(o.median_release_hours, 1)],
        ["90th percentile time to release (hours)", _num(o.p90_release_hours, 1)],
    ]
    chart = (
        bar_chart(
            [(name, [("released orders", float(n))]) for name, n in o.release_buckets],
            title="Time from block to release",
        )
        if o.released
        else "<p>No blocked order was released, so there is no time to release.</p>"
    )
    return (
        "<h2>2. Orders blocked and released</h2>" + _table(["", "orders"], rows) + chart
    )


def _riskiest(report: Report) -> str:
    risks = {r.account: r for r in report.decisions.accounts}
    rows = []
    for account in report.riskiest:
        r = risks[account]
        rows.append(
            [
                account,
                _num(r.hold_days, 1),
                _num(r.warning_days, 1),
                _num(r.status_changes),
                _num(r.invoices),
                _num(r.late_invoices),
            ]
        )
    charts = "".join(_series_chart(s) for s in report.series)
    return (
        f"<h2>3. Exposure and overdue of the {len(report.riskiest)} riskiest "
        "accounts</h2>"
        '<p class="note">Riskiest: longest on HOLD, then on WARNING, then most late '
        "invoices. Values at the end of each day, from replaying the history "
        "through the credit engine under the policy in use.</p>"
        + _table(
            [
                "account",
                "days on HOLD",
                "days on WARNING",
                "status changes",
                "invoices",
                "paid late",
            ],
            rows,
        )
        + charts
    )


def _series_chart(s: AccountSeries) -> str:
    currency = f" ({s.currency})" if s.currency else ""
    return line_chart(
        s.days,
        [("exposure", s.exposure), ("overdue", s.overdue), ("limit", s.limit)],
        title=f"{s.account}{currency}",
    )


def _comparison(report: Report) -> str:
    policies = report.comparison
    head = ["", *(p.label for p in policies)]
    thresholds = [
        [name, *(dict(p.thresholds)[name] for p in policies)]
        for name, _ in policies[0].thresholds
    ]

    def pred(p: PolicyFigures, signal: str, days: int) -> tuple[str, str]:
        for x in p.early_signs.predictors:
            if x.signal == signal and x.late_days == days:
                return _pct(x.precision), _pct(x.recall)
        return "–", "–"

    figures: list[list[str]] = [
        ["status changes", *(_num(p.status_changes) for p in policies)],
        [
            "accounts ever on WARNING",
            *(_num(p.accounts_ever_on_warning) for p in policies),
        ],
        ["accounts ever on HOLD", *(_num(p.accounts_ever_on_hold) for p in policies)],
        [
            "account-days on WARNING",
            *(_num(p.warning_account_days, 1) for p in policies),
        ],
        ["account-days on HOLD", *(_num(p.hold_account_days, 1) for p in policies)],
    ]
    for signal in ("WARNING or HOLD", "HOLD"):
        for days in (0, 10):
            figures.append(
                [
                    f"precision of {signal}, > {days} days late",
                    *(pred(p, signal, days)[0] for p in policies),
                ]
            )
            figures.append(
                [
                    f"recall of {signal}, > {days} days late",
                    *(pred(p, signal, days)[1] for p in policies),
                ]
            )
    figures += [
        ["orders blocked", *(_num(p.orders.blocked) for p in policies)],
        ["orders released", *(_num(p.orders.released) for p in policies)],
        [
            "orders invoiced while blocked",
            *(_num(p.orders.invoiced_while_blocked) for p in policies),
        ],
        [
            "median hours to release",
            *(_num(p.orders.median_release_hours, 1) for p in policies),
        ],
        [
            "p90 hours to release",
            *(_num(p.orders.p90_release_hours, 1) for p in policies),
        ],
    ]

    def share(value: Decimal | None) -> float:
        return float(value * 100) if value is not None else 0.0

    chart = bar_chart(
        [
            (
                p.label,
                [
                    (f"{x.signal} precision %", share(x.precision))
                    for x in p.early_signs.predictors
                    if x.late_days == 0
                ]
                + [
                    (f"{x.signal} recall %", share(x.recall))
                    for x in p.early_signs.predictors
                    if x.late_days == 0
                ],
            )
            for p in policies
        ],
        title="Early signs of late payment (> 0 days), per policy",
        height=300,
    )
    return (
        "<h2>4. Policies side by side</h2>"
        '<p class="note">Each policy is run by the offline evaluator over the same '
        "history; the first is the policy in use.</p>"
        + _table(["threshold", *head[1:]], thresholds)
        + _table(["figure", *head[1:]], figures)
        + chart
    )


def render_html(report: Report) -> str:
    """The whole page."""
    f = report.decisions
    period = f"{(report.first_event or '')[:10]} to {(report.last_event or '')[:10]}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Credit backtest: {escape(report.title)}</title>"
        f"<style>{CSS}</style></head><body>"
        f"<h1>Credit backtest: {escape(report.title)}</h1>"
        f"<p>{report.events:,} events from {escape(period)}, {report.accounts:,} "
        f"accounts, {report.invoices:,} invoices. Policy in use: "
        f"<b>{escape(f.label)}</b>. Sections 1 to 3 show the decisions made under "
        "it; the live service's audit log and the offline evaluator give the same "
        "page for the same history.</p>"
        + _early_signs(f)
        + _orders(f)
        + _riskiest(report)
        + _comparison(report)
        + _score_power(report)
        + '<p class="note">Data: see data/README.md for the origin and terms of the '
        "data sets; credit profiles, payments of the online shop and dispute dates "
        "are invented there.</p></body></html>\n"
    )


def _auc_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _share_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _score_power(report: Report) -> str:
    sp = report.score_power
    if sp is None or not sp.invoices:
        return ""
    rows = [
        ["every invoice", f"{sp.invoices:,}", _auc_text(sp.auc_all), ""],
        [f"invoices from {sp.split} (test)", f"{sp.test:,}", _auc_text(sp.auc_score_test),
         _auc_text(sp.auc_baseline_test)],
    ]
    bounds = [[f"grade {b.grades}", f"{b.flagged:,}", _share_text(b.precision),
               _share_text(b.recall)] for b in sp.boundaries]
    return (
        "<h2>5. Does the credit score warn early?</h2>"
        f"<p>For each invoice, the score of its account just before the invoice was "
        f"issued (from the events before it only), against whether it was paid more "
        f"than {LATE_DAYS} days late: {sp.late:,} of {sp.invoices:,} were. ROC AUC of "
        "the score (1.0: every late invoice scored below every punctual one; 0.5: "
        "chance), and of a logistic regression fitted with scikit-learn on the same "
        f"inputs over the {sp.train:,} invoices issued before {sp.split}, both on "
        "the later invoices.</p>"
        + _table(["invoices", "count", "AUC of the score", "AUC of the fitted baseline"],
                 rows)
        + "<p>Calling an invoice late when its account's grade is at or below a "
        "boundary:</p>"
        + _table(["flagged when", "invoices flagged", "precision", "recall"], bounds)
    )
