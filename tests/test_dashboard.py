"""The Grafana dashboard: current, well formed, and querying only what exists.

* The committed JSON is what deploy/grafana/dashboard.py generates.
* Its panels use the provisioned datasources, fit the grid without overlapping,
  and include what on-call staff watch.
* Every Prometheus expression parses (promtool) and names only metrics that
  `CreditMetrics` defines (or `up`).
* Every SQL query names only tables and views of the migrations, and
  (``-m integration``) runs against a freshly migrated schema holding one account
  on hold, returning it.
"""

from __future__ import annotations

import importlib.util
import json
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg
import pytest
import yaml

from monitor.metrics import CreditMetrics
from monitor.store.migrations.migrate import available_migrations, migrate
from tests.promql import SCRAPE_METRICS, check_promql, metric_names

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "deploy" / "grafana"
COMMITTED = GRAFANA / "dashboards" / "credit-monitor.json"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dashboard", GRAFANA / "dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(COMMITTED.read_text())
    return loaded


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def _targets(
    dashboard: dict[str, Any], ds_type: str
) -> list[tuple[str, dict[str, Any]]]:
    return [
        (panel["title"], target)
        for panel in _panels(dashboard)
        for target in panel["targets"]
        if target["datasource"]["type"] == ds_type
    ]


def _promql(dashboard: dict[str, Any]) -> dict[str, str]:
    return {
        f"{title} [{t['refId']}]": t["expr"]
        for title, t in _targets(dashboard, "prometheus")
    }


def _sql(dashboard: dict[str, Any]) -> dict[str, str]:
    return {title: t["rawSql"] for title, t in _targets(dashboard, "postgres")}


# ---- the file ------------------------------------------------------------------------


def test_committed_dashboard_is_what_the_generator_makes() -> None:
    generated = _load_generator().render()

    assert COMMITTED.read_text() == generated, (
        "deploy/grafana/dashboards/credit-monitor.json is stale: run "
        "`.venv/bin/python deploy/grafana/dashboard.py` and commit the result"
    )


def test_grafana_provisions_the_dashboard_folder_compose_mounts() -> None:
    provider_file = GRAFANA / "provisioning" / "dashboards" / "dashboards.yml"
    (provider,) = yaml.safe_load(provider_file.read_text())["providers"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]

    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in mounts
    assert provider["type"] == "file"


# ---- its structure -------------------------------------------------------------------


def test_dashboard_has_a_stable_uid_and_known_panel_types(
    dashboard: dict[str, Any],
) -> None:
    assert dashboard["uid"] == "credit-monitor"
    assert dashboard["title"] == "Credit monitor"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and all(ids)
    assert {p["type"] for p in dashboard["panels"]} <= {
        "row",
        "stat",
        "timeseries",
        "table",
    }
    for panel in _panels(dashboard):
        assert panel["title"] and panel["description"], panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"


def test_every_query_uses_a_provisioned_datasource(dashboard: dict[str, Any]) -> None:
    ds_file = GRAFANA / "provisioning" / "datasources" / "datasources.yml"
    provisioned = {
        d["uid"]: d["type"] for d in yaml.safe_load(ds_file.read_text())["datasources"]
    }

    for panel in _panels(dashboard):
        for ref in [panel["datasource"], *(t["datasource"] for t in panel["targets"])]:
            assert provisioned.get(ref["uid"]) == ref["type"], (panel["title"], ref)


def test_panels_fit_the_grid_without_overlapping(dashboard: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                other = cells.setdefault((x, y), panel["title"])
                assert other == panel["title"], f"{panel['title']} overlaps {other}"


def test_dashboard_shows_what_on_call_staff_watch(dashboard: dict[str, Any]) -> None:
    titles = {p["title"] for p in _panels(dashboard)}
    assert {
        "Accounts on hold",
        "Accounts on hold and on warning",
        "Blocked orders",
        "Largest exposures",
        "Overdue aging",
        "Decision latency",
        "Consumer lag per partition",
        "Rejected events per minute",
        "Audit sink",
    } <= titles
    by_title = {(p["title"], p["type"]) for p in _panels(dashboard)}
    assert ("Accounts on hold", "stat") in by_title
    assert ("Accounts on hold", "table") in by_title
    assert ("Largest exposures", "table") in by_title

    exprs = " ".join(_promql(dashboard).values())
    assert 'credit_monitor_accounts{status="HOLD"}' in exprs
    assert "histogram_quantile(0.99" in exprs


# ---- Prometheus queries --------------------------------------------------------------


def test_prometheus_queries_name_only_metrics_the_monitor_defines(
    dashboard: dict[str, Any],
) -> None:
    defined = CreditMetrics().sample_names() | SCRAPE_METRICS
    queries = _promql(dashboard)
    assert len(queries) >= 15

    for where, expr in queries.items():
        names = metric_names(expr)
        assert names, f"{where}: no metric found in {expr!r}"
        assert names <= defined, f"{where}: unknown metrics {sorted(names - defined)}"


def test_prometheus_queries_parse(dashboard: dict[str, Any], tmp_path: Path) -> None:
    check_promql(_promql(dashboard), tmp_path)


# ---- SQL queries ---------------------------------------------------------------------


def _relations_of_the_migrations() -> set[str]:
    sql = "\n".join(m.sql for m in available_migrations())
    return {
        n.lower()
        for n in re.findall(r"\bCREATE\s+(?:TABLE|VIEW)\s+(\w+)", sql, re.IGNORECASE)
    }


def test_sql_queries_name_only_tables_and_views_of_the_migrations(
    dashboard: dict[str, Any],
) -> None:
    relations = _relations_of_the_migrations()
    queries = _sql(dashboard)
    assert len(queries) == 5

    for title, sql in queries.items():
        used = {
            n.lower()
            for n in re.findall(r"\b(?:FROM|JOIN)\s+(\w+)", sql, re.IGNORECASE)
        }
        assert used, f"{title}: no table in {sql!r}"
        assert used <= relations, (
            f"{title}: unknown relations {sorted(used - relations)}"
        )


@pytest.fixture
async def migrated_dsn(pg_dsn: str) -> AsyncIterator[str]:
    """A fresh schema with the migrations applied, dropped after the test."""
    schema = f"cm_dash_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(pg_dsn, timeout=10)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
    finally:
        await conn.close()
    dsn = f"{pg_dsn}{'&' if '?' in pg_dsn else '?'}search_path={schema}"
    try:
        await migrate(dsn)
        yield dsn
    finally:
        conn = await asyncpg.connect(pg_dsn, timeout=30)
        try:
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        finally:
            await conn.close()


_SNAPSHOT = {
    "company": "main",
    "customer_id": "C-001",
    "currency": "EUR",
    "status": "HOLD",
    "reasons": [{"code": "LIMIT_EXCEEDED", "detail": "", "values": {}}],
    "overdue": {
        "amount": "300.00",
        "oldest_days": 45,
        "buckets": {
            "1-30": "100.00",
            "31-60": "200.00",
            "61-90": "0.00",
            "90+": "0.00",
        },
    },
    "blocked_orders": [
        {
            "order_id": "SO-1",
            "amount": "500.00",
            "currency": "EUR",
            "reasons": [{"code": "ACCOUNT_ON_HOLD", "detail": "", "values": {}}],
            "blocked_at": "2026-03-01T09:30:00Z",
        }
    ],
}


async def _one_account_on_hold(conn: asyncpg.Connection) -> None:
    await conn.execute(
        """
        INSERT INTO account_snapshots
            (account, company, customer_id, status, reason_codes, currency,
             exposure_total, overdue_amount, oldest_overdue_days, credit_limit,
             effective_limit, available_credit, utilization, blocked_orders_count,
             as_of, output_id, data, kafka_partition, kafka_offset)
        VALUES ('main/C-001', 'main', 'C-001', 'HOLD', '{LIMIT_EXCEEDED}', 'EUR',
                1200, 300, 45, 1000, 1000, 0, 1.2, 1,
                '2026-03-01T09:30:00Z', 'snap-1', $1::jsonb, 0, 7)
        """,
        json.dumps(_SNAPSHOT),
    )
    await conn.execute(
        """
        INSERT INTO rejected_events
            (output_id, error, event, origin, kafka_partition, kafka_offset)
        VALUES ('rej-1', 'unknown currency XXX', '{}'::jsonb,
                '{"topic": "credit.events", "partition": 0, "offset": 41}'::jsonb, 0, 3)
        """
    )


@pytest.mark.integration
async def test_sql_queries_run_against_the_migrated_schema(
    dashboard: dict[str, Any], migrated_dsn: str
) -> None:
    conn = await asyncpg.connect(migrated_dsn, timeout=10)
    try:
        await _one_account_on_hold(conn)
        results = {
            title: await conn.fetch(sql) for title, sql in _sql(dashboard).items()
        }
    finally:
        await conn.close()

    (hold,) = results["Accounts on hold"]
    assert hold["account"] == "main/C-001"
    assert hold["reasons"] == "LIMIT_EXCEEDED"
    (order,) = results["Blocked orders"]
    assert (order["order_id"], order["reasons"]) == ("SO-1", "ACCOUNT_ON_HOLD")
    (exposure,) = results["Largest exposures"]
    assert exposure["exposure_total"] == 1200
    (aging,) = results["Overdue aging"]
    assert (aging["currency"], aging["31-60 days"], aging["total"]) == ("EUR", 200, 300)
    (rejected,) = results["Latest rejected events"]
    assert (rejected["topic"], rejected["offset"]) == ("credit.events", "41")
