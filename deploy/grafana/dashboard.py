"""The "Credit monitor" Grafana dashboard, built with grafanalib.

    python deploy/grafana/dashboard.py           # writes dashboards/credit-monitor.json
    python deploy/grafana/dashboard.py --check   # exit 1 if that file is stale

The JSON is committed and provisioned by docker-compose.yml (see
provisioning/dashboards/dashboards.yml); edit this file and regenerate, never
the JSON. tests/test_dashboard.py checks the file is current, that every
Prometheus query names metrics of monitor/metrics.py and that every SQL query
runs against the schema of monitor/store/migrations.

What on-call staff look at, top to bottom: the state now (stats), credit
(holds, blocked orders, reasons, exposure), the accounts behind those numbers
(tables from PostgreSQL), and the health of the pipeline (latency, lag,
rejected events, the audit sink).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from grafanalib.core import (
    Dashboard,
    GridPos,
    RowPanel,
    SqlTarget,
    Stat,
    Table,
    Target,
    Templating,
    Time,
    TimeSeries,
)

OUTPUT = Path(__file__).resolve().parent / "dashboards" / "credit-monitor.json"

# The uids of provisioning/datasources/datasources.yml.
PROMETHEUS = {"type": "prometheus", "uid": "credit-monitor-prometheus"}
POSTGRES = {"type": "postgres", "uid": "credit-monitor-postgres"}

GREEN = {"color": "green", "value": None}


def _steps(*steps: tuple[str, float]) -> list[dict[str, Any]]:
    """Threshold steps: green below the first value, then each colour from it."""
    return [GREEN, *({"color": color, "value": value} for color, value in steps)]


def _prom(expr: str, legend: str = "", ref: str = "A") -> Target:
    return Target(expr=expr, legendFormat=legend, refId=ref, datasource=PROMETHEUS)


class _CodeSqlTarget(SqlTarget):  # type: ignore[misc]
    """A raw SQL query, opened in the code editor rather than the query builder."""

    def to_json_data(self) -> dict[str, Any]:
        data: dict[str, Any] = super().to_json_data()
        data["editorMode"] = "code"
        for unused in ("expr", "query", "target", "metric", "step", "intervalFactor"):
            data.pop(unused, None)
        return data


def _sql(sql: str) -> _CodeSqlTarget:
    return _CodeSqlTarget(
        rawSql=sql.strip(), format="table", refId="A", datasource=POSTGRES
    )


def _stat(
    title: str,
    expr: str,
    pos: GridPos,
    *,
    description: str,
    thresholds: list[dict[str, Any]],
    unit: str = "none",
) -> Stat:
    return Stat(
        title=title,
        description=description,
        dataSource=PROMETHEUS,
        targets=[_prom(expr)],
        gridPos=pos,
        reduceCalc="lastNotNull",
        format=unit,
        graphMode="area",
        colorMode="background",
        thresholds=thresholds,
        noValue="no data",
    )


def _timeseries(
    title: str,
    targets: list[Target],
    pos: GridPos,
    *,
    description: str,
    unit: str = "short",
    thresholds: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> TimeSeries:
    for ref, target in zip("ABCDEFGH", targets, strict=False):
        target.refId = ref
    return TimeSeries(
        title=title,
        description=description,
        dataSource=PROMETHEUS,
        targets=targets,
        gridPos=pos,
        unit=unit,
        thresholds=thresholds or [GREEN],
        thresholdsStyleMode="line" if thresholds else "off",
        legendDisplayMode="list",
        tooltipMode="multi",
        **extra,
    )


def _table(title: str, sql: str, pos: GridPos, *, description: str) -> Table:
    return Table(
        title=title,
        description=description,
        dataSource=POSTGRES,
        targets=[_sql(sql)],
        gridPos=pos,
        filterable=True,
        thresholds=[GREEN],
    )


def _row(title: str, y: int) -> RowPanel:
    return RowPanel(title=title, gridPos=GridPos(h=1, w=24, x=0, y=y))


# ---- the panels, top to bottom --------------------------------------------------------


def _now(y: int) -> list[Any]:
    def at(column: int) -> GridPos:
        return GridPos(h=4, w=4, x=4 * column, y=y + 1)

    return [
        _row("Now", y),
        _stat(
            "Monitor instances up",
            'sum(up{job="credit-monitor"})',
            at(0),
            description="Instances Prometheus can scrape. Zero: no order is decided.",
            thresholds=[
                {"color": "red", "value": None},
                {"color": "green", "value": 1},
            ],
        ),
        _stat(
            "Accounts on hold",
            'sum(credit_monitor_accounts{status="HOLD"})',
            at(1),
            description="Accounts whose orders are all blocked until the hold ends.",
            thresholds=_steps(("orange", 1), ("red", 25)),
        ),
        _stat(
            "Blocked orders",
            "sum(credit_monitor_blocked_orders)",
            at(2),
            description="Orders waiting for release (automatic or by credit control).",
            thresholds=_steps(("orange", 1), ("red", 50)),
        ),
        _stat(
            "Rejected events, last hour",
            "sum(increase(credit_monitor_rejected_events_total[1h]))",
            at(3),
            description="Input events that could not be applied: see the table below.",
            thresholds=_steps(("orange", 1), ("red", 20)),
        ),
        _stat(
            "Consumer lag",
            "sum(credit_monitor_consumer_lag_records)",
            at(4),
            description="Input records not yet processed, over all partitions.",
            thresholds=_steps(("orange", 100), ("red", 1000)),
        ),
        _stat(
            "Audit backlog",
            "sum(credit_monitor_audit_backlog_records)",
            at(5),
            description=(
                "Records held by the audit sink, unwritten to PostgreSQL. Briefly "
                "above zero under load; for minutes: PostgreSQL is failing."
            ),
            thresholds=_steps(("orange", 1), ("red", 500)),
        ),
    ]


def _credit(y: int) -> list[Any]:
    return [
        _row("Credit", y),
        _timeseries(
            "Accounts on hold and on warning",
            [
                _prom(
                    'sum by (status) (credit_monitor_accounts{status=~"HOLD|WARNING"})',
                    "{{status}}",
                )
            ],
            GridPos(h=8, w=12, x=0, y=y + 1),
            description="Holds over time; a sudden rise raises HoldsRisingFast.",
        ),
        _timeseries(
            "Blocked orders",
            [_prom("sum(credit_monitor_blocked_orders)", "blocked now")],
            GridPos(h=8, w=12, x=12, y=y + 1),
            description="Orders blocked and not yet released, over time.",
        ),
        _timeseries(
            "Order decisions per minute",
            [
                _prom(
                    'sum by (type) (rate(credit_monitor_decisions_total{type=~"credit.order.*"}[5m])) * 60',
                    "{{type}}",
                )
            ],
            GridPos(h=8, w=8, x=0, y=y + 9),
            description="Approved, blocked and released orders.",
            unit="short",
        ),
        _timeseries(
            "Why orders are blocked and accounts change status (last hour)",
            [
                _prom(
                    'sum by (type, reason) (increase(credit_monitor_decision_reasons_total{reason!="none", type=~"credit.order.blocked|credit.account.status_changed"}[1h]))',
                    "{{reason}} ({{type}})",
                )
            ],
            GridPos(h=8, w=8, x=8, y=y + 9),
            description="Reason codes of the decisions of the last hour.",
        ),
        _timeseries(
            "Exposure and overdue, per currency",
            [
                _prom(
                    "sum by (currency) (credit_monitor_exposure)",
                    "exposure {{currency}}",
                ),
                _prom(
                    "sum by (currency) (credit_monitor_overdue)", "overdue {{currency}}"
                ),
            ],
            GridPos(h=8, w=8, x=16, y=y + 9),
            description="Totals over all accounts, each in its account currency.",
        ),
    ]


def _accounts(y: int) -> list[Any]:
    return [
        _row("Accounts (PostgreSQL)", y),
        _table(
            "Accounts on hold",
            """
SELECT account, array_to_string(reason_codes, ', ') AS reasons, hold_since,
       currency, exposure_total, effective_limit, overdue_amount,
       oldest_overdue_days, blocked_orders_count
  FROM accounts_on_hold
 ORDER BY hold_since DESC NULLS LAST, account
 LIMIT 200
""",
            GridPos(h=9, w=12, x=0, y=y + 1),
            description="From the view accounts_on_hold; newest holds first.",
        ),
        _table(
            "Blocked orders",
            """
SELECT blocked_at, account, order_id, amount, currency,
       array_to_string(reason_codes, ', ') AS reasons, account_status
  FROM blocked_orders
 ORDER BY blocked_at NULLS LAST, account, order_id
 LIMIT 200
""",
            GridPos(h=9, w=12, x=12, y=y + 1),
            description="From the view blocked_orders; oldest first.",
        ),
        _table(
            "Largest exposures",
            """
SELECT account, status, currency, exposure_total, effective_limit,
       available_credit, utilization, overdue_amount, oldest_overdue_days
  FROM largest_exposures
 ORDER BY exposure_total DESC, account
 LIMIT 20
""",
            GridPos(h=9, w=12, x=0, y=y + 10),
            description=(
                "From the view largest_exposures. Amounts are in each account's "
                "currency: compare within one currency."
            ),
        ),
        _table(
            "Overdue aging",
            """
SELECT currency,
       sum(amount) FILTER (WHERE bucket = '1-30') AS "1-30 days",
       sum(amount) FILTER (WHERE bucket = '31-60') AS "31-60 days",
       sum(amount) FILTER (WHERE bucket = '61-90') AS "61-90 days",
       sum(amount) FILTER (WHERE bucket = '90+') AS "over 90 days",
       sum(amount) AS total
  FROM overdue_aging
 GROUP BY currency
 ORDER BY total DESC NULLS LAST, currency
""",
            GridPos(h=9, w=12, x=12, y=y + 10),
            description="From the view overdue_aging: overdue amounts by age, per currency.",
        ),
        _table(
            "Latest rejected events",
            """
SELECT recorded_at, error, origin ->> 'topic' AS topic,
       origin ->> 'partition' AS partition, origin ->> 'offset' AS "offset",
       cause_id
  FROM rejected_events
 ORDER BY recorded_at DESC
 LIMIT 50
""",
            GridPos(h=8, w=24, x=0, y=y + 19),
            description=(
                "From the table rejected_events: what failed and where the original "
                "record is."
            ),
        ),
    ]


def _pipeline(y: int) -> list[Any]:
    latency = "credit_monitor_decision_latency_seconds_bucket"
    return [
        _row("Pipeline health", y),
        _timeseries(
            "Decision latency",
            [
                _prom(
                    f"histogram_quantile(0.5, sum by (le, since) (rate({latency}[5m])))",
                    "p50 since {{since}}",
                ),
                _prom(
                    f"histogram_quantile(0.99, sum by (le, since) (rate({latency}[5m])))",
                    "p99 since {{since}}",
                ),
            ],
            GridPos(h=8, w=12, x=0, y=y + 1),
            description=(
                "From arrival in Kafka (target: p99 under 0.1 s, the red line) and "
                "from the event's business time (includes the ERP's delay, and the "
                "events' age during a replay)."
            ),
            unit="s",
            thresholds=_steps(("red", 0.1)),
            scaleDistributionType="log",
            scaleDistributionLog=10,
        ),
        _timeseries(
            "Consumer lag per partition",
            [
                _prom(
                    "sum by (topic, partition) (credit_monitor_consumer_lag_records)",
                    "{{topic}}[{{partition}}]",
                )
            ],
            GridPos(h=8, w=12, x=12, y=y + 1),
            description="Records waiting on each input partition.",
        ),
        _timeseries(
            "Input events per second",
            [
                _prom(
                    "sum by (outcome) (rate(credit_monitor_events_total[5m]))",
                    "{{outcome}}",
                )
            ],
            GridPos(h=8, w=8, x=0, y=y + 9),
            description="Applied, duplicate (redelivered) and rejected input events.",
            unit="ops",
        ),
        _timeseries(
            "Rejected events per minute",
            [
                _prom(
                    "sum(rate(credit_monitor_rejected_events_total[5m])) * 60",
                    "all",
                ),
                _prom(
                    'sum by (type) (rate(credit_monitor_events_total{outcome="rejected"}[5m])) * 60',
                    "{{type}}",
                ),
            ],
            GridPos(h=8, w=8, x=8, y=y + 9),
            description="Rejections by input event type (unknown: not parseable).",
        ),
        _timeseries(
            "Audit sink",
            [
                _prom("sum(credit_monitor_audit_backlog_records)", "backlog (records)"),
                _prom(
                    "sum(increase(credit_monitor_audit_write_failures_total[5m]))",
                    "failed writes (5 min)",
                ),
                _prom(
                    "sum(rate(credit_monitor_audit_rows_written_total[5m]))",
                    "rows written per second",
                ),
                _prom("min(credit_monitor_audit_connected)", "connected (1 = yes)"),
            ],
            GridPos(h=8, w=8, x=16, y=y + 9),
            description=(
                "Copying decisions, snapshots and rejections into PostgreSQL. "
                "AuditBacklog fires when a batch waits for 5 minutes."
            ),
        ),
    ]


def build() -> Dashboard:
    """The dashboard, every panel with an id."""
    panels = [*_now(0), *_credit(5), *_accounts(22), *_pipeline(49)]
    return Dashboard(
        title="Credit monitor",
        uid="credit-monitor",
        description="Holds, blocked orders, exposure and the health of the pipeline.",
        tags=["credit-monitor"],
        timezone="browser",
        time=Time("now-6h", "now"),
        refresh="30s",
        editable=False,
        # Grafana 11's schema: targets and panels carry datasource references.
        schemaVersion=39,
        templating=Templating(),
        panels=panels,
    ).auto_panel_ids()


def _encode(value: Any) -> Any:
    to_json_data = getattr(value, "to_json_data", None)
    if to_json_data is None:
        raise TypeError(f"cannot encode {type(value).__name__} as dashboard JSON")
    return to_json_data()


def render() -> str:
    """The dashboard as the JSON text that is committed."""
    return json.dumps(build(), default=_encode, indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if argv == ["--check"]:
        if OUTPUT.read_text() != text:
            print(
                f"{OUTPUT} is stale: run `python deploy/grafana/dashboard.py`",
                file=sys.stderr,
            )
            return 1
        return 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
