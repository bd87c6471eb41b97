"""The operator API and its command line, against the real Kafka and PostgreSQL.

One account gets an order blocked by the running worker; then the API must show it with
the documents and reasons, refuse callers without a token or with the wrong role
(changing nothing), and carry a controller's release through Kafka to the worker, whose
`credit.order.released` names who released it and why, with both the request and the
release in the audit log.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import SecretStr

from monitor.api.auth import Principal, TokenBook, TokenFileError, new_token
from monitor.api.command import OPENAPI_FILE, openapi_document
from monitor.settings import Settings
from schemas import topics

from .streamkit import ROOT, Worker, delete_topics, env_of, free_port, make_settings, publish

ACCOUNT = "main/API-1"


def _event(n: int, type_: str, **data: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": f"api-{n}", "source": "erp/test", "type": type_,
            "time": f"2026-03-01T09:{n:02d}:00Z",
            "data": {"company": "main", "customer_id": "API-1", **data}}


EVENTS = [
    _event(1, "erp.credit_profile.set", currency="EUR", credit_limit="1000.00",
           risk_class="B"),
    _event(2, "erp.order.placed", order_id="SO-1", amount="400.00", currency="EUR"),
    _event(3, "erp.order.placed", order_id="SO-2", amount="900.00", currency="EUR"),
]


# ---- tokens: no services -------------------------------------------------------------


def test_token_file_roles_and_unknown_tokens(tmp_path: Path) -> None:
    viewer_token, viewer_entry = new_token("vera", "viewer")
    ctrl_token, ctrl_entry = new_token("carla", "controller")
    path = tmp_path / "tokens.toml"
    path.write_text(viewer_entry + "\n" + ctrl_entry)
    book = TokenBook.from_file(path)
    assert book.identify(viewer_token) == Principal("vera", "viewer")
    assert book.identify(ctrl_token) == Principal("carla", "controller")
    assert book.identify(viewer_token + "x") is None
    assert book.identify("") is None
    assert not Principal("vera", "viewer").may("controller")
    assert Principal("carla", "controller").may("viewer")
    # The file holds digests only: no token appears in it.
    assert viewer_token not in path.read_text() and ctrl_token not in path.read_text()


@pytest.mark.parametrize("text, complaint", [
    ('[[tokens]]\nname = "a"\nrole = "admin"\nsha256 = "' + "0" * 64 + '"\n', "role"),
    ('[[tokens]]\nname = "a"\nrole = "viewer"\nsha256 = "abc"\n', "64 hex"),
    ('[[tokens]]\nrole = "viewer"\nsha256 = "' + "0" * 64 + '"\n', "name"),
    ('[[tokens]]\nname = "a"\nrole = "viewer"\nsha256 = "' + "0" * 64 + '"\n'
     '[[tokens]]\nname = "a"\nrole = "viewer"\nsha256 = "' + "1" * 64 + '"\n', "twice"),
    ("tokens = 3\n", "array"),
    ("not toml [", "not TOML"),
    ('[[tokens]]\nname = "a"\nrole = "viewer"\nsha256 = "' + "0" * 64 + '"\n'
     '[[tokens]]\nname = "b"\nrole = "controller"\nsha256 = "' + "0" * 64 + '"\n',
     "same token is listed twice"),
    ('[[tokens]]\nname = "a"\nrole = "viewer"\nexpires = 3\nsha256 = "' + "0" * 64
     + '"\n', "unknown key 'expires'"),
    ("admins = []\n", "unknown key 'admins'"),
])
def test_a_bad_token_file_is_refused_naming_the_problem(
    tmp_path: Path, text: str, complaint: str
) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(text)
    with pytest.raises(TokenFileError, match=complaint):
        TokenBook.from_file(path)


def test_a_token_file_that_is_a_folder_or_not_text_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TokenFileError, match="is a folder"):
        TokenBook.from_file(tmp_path)
    binary = tmp_path / "tokens.toml"
    binary.write_bytes(b"\xff\xfe\x00tokens")
    with pytest.raises(TokenFileError, match="not UTF-8"):
        TokenBook.from_file(binary)


def test_the_committed_openapi_document_is_current() -> None:
    assert OPENAPI_FILE.read_text() == openapi_document(), (
        "run `credit-monitor api openapi` and commit schemas/generated/openapi.json")
    spec = json.loads(OPENAPI_FILE.read_text())
    release = spec["paths"]["/v1/accounts/{company}/{customer_id}/orders/{order_id}/release"]
    assert {"401", "403", "409", "202"} <= set(release["post"]["responses"])
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


# ---- against the services ----------------------------------------------------------


class Api:
    """`credit-monitor api serve` in a process of its own."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings = settings
        self.base = f"http://127.0.0.1:{settings.api_port}"
        out = open(log, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "api", "serve"], cwd=ROOT,
            env=env_of(settings), stdout=out, stderr=subprocess.STDOUT,
        )
        self.log = log

    def request(self, method: str, path: str, token: str | None = None,
                **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.request(method, self.base + path, headers=headers, timeout=10, **kw)

    def wait_until(self, path: str, token: str, ok: Any, timeout: float = 120) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text(errors="replace")[-3000:]
            try:
                reply = self.request("GET", path, token)
                last = (reply.status_code, reply.text[:500])
                if reply.status_code == 200 and ok(reply.json()):
                    return reply.json()
            except httpx.HTTPError as exc:
                last = exc
            time.sleep(0.5)
        raise AssertionError(f"{path} never became as wanted; last: {last}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def cli(settings: Settings, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = env_of(settings)
    env["CREDIT_MONITOR_API_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "monitor", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


async def input_records(settings: Settings) -> list[dict[str, Any]]:
    """Every record on the input topic, decoded."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        name = settings.topic(topics.INPUT)
        tps = [TopicPartition(name, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out = []
        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in tps])

        while await behind():
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                out.extend(orjson.loads(r.value) for r in records)
        return out
    finally:
        await consumer.stop()


async def audit_rows(dsn: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT type, order_id, data FROM audit_log WHERE account = $1 "
            "ORDER BY kafka_offset", ACCOUNT)
        return [{"type": r["type"], "order_id": r["order_id"],
                 "data": orjson.loads(r["data"])} for r in rows]
    finally:
        await conn.close()


@dataclass
class Stack:
    settings: Settings
    api: Api
    viewer: str
    controller: str
    dsn: str


@contextmanager
def running(tmp_path: Path, schema_dsn: str, events: list[dict[str, Any]]) -> Iterator[Stack]:
    """A worker in a world of its own (fresh topics and schema) fed `events`, and the
    API over it with a viewer token (vera) and a controller token (carla)."""
    viewer, viewer_entry = new_token("vera", "viewer")
    controller, ctrl_entry = new_token("carla", "controller")
    tokens_file = tmp_path / "tokens.toml"
    tokens_file.write_text(viewer_entry + ctrl_entry)
    settings = make_settings(tmp_path, partitions=2).model_copy(update={
        "pg_dsn": SecretStr(schema_dsn), "api_port": free_port(),
        "api_tokens_file": tokens_file,
    })
    settings = settings.model_copy(update={"api_url": f"http://127.0.0.1:{settings.api_port}"})
    worker = Worker(settings, tmp_path / "worker.log").start()
    api = None
    try:
        worker.wait_ready()
        asyncio.run(publish(settings, events))
        api = Api(settings, tmp_path / "api.log")
        yield Stack(settings, api, viewer, controller, schema_dsn)
    finally:
        if api is not None:
            api.stop()
        worker.stop()
        asyncio.run(delete_topics(settings))


@pytest.mark.integration
def test_release_through_the_api_reaches_kafka_the_worker_and_the_audit_log(
    tmp_path: Path, kafka_bootstrap: str, schema_dsn: str
) -> None:
    with running(tmp_path, schema_dsn, EVENTS) as stack:
        settings, api = stack.settings, stack.api
        viewer, controller = stack.viewer, stack.controller
        path = "/v1/accounts/main/API-1"
        view = api.wait_until(path, viewer, lambda v: v["snapshot"]["blocked_orders"])

        # What a controller needs to see: the blocked order, the documents, the reasons.
        snap = view["snapshot"]
        assert [o["order_id"] for o in snap["blocked_orders"]] == ["SO-2"]
        assert snap["blocked_orders"][0]["reasons"][0]["code"] == "LIMIT_EXCEEDED"
        assert [d["id"] for d in snap["documents"]["orders"]] == ["SO-1"]
        assert snap["exposure"]["total"] == "400.00"
        assert [d["type"] for d in view["recent_decisions"]] == [
            "credit.order.blocked", "credit.order.approved"]
        blocked = api.request("GET", "/v1/orders/blocked", viewer).json()
        assert [(b["account"], b["order_id"], b["amount"]) for b in blocked] == [
            (ACCOUNT, "SO-2", "900.00")]

        # Refusals change nothing.
        release = f"{path}/orders/SO-2/release"
        records_before = len(asyncio.run(input_records(settings)))
        no_token = api.request("POST", release, json={"reason": "paid by wire"})
        assert no_token.status_code == 401
        assert no_token.headers["www-authenticate"] == "Bearer"
        assert api.request("POST", release, "not-a-token",
                           json={"reason": "paid by wire"}).status_code == 401
        assert api.request("GET", path, "not-a-token").status_code == 401
        wrong_role = api.request("POST", release, viewer, json={"reason": "paid by wire"})
        assert wrong_role.status_code == 403
        assert "vera is a viewer" in wrong_role.json()["detail"]
        by_cli = cli(settings, viewer, "orders", "release", ACCOUNT, "SO-2",
                     "--reason", "paid by wire")
        assert by_cli.returncode == 3 and "403" in by_cli.stderr
        for bad in ("", "   ", "ok\x00"):
            assert api.request("POST", release, controller,
                               json={"reason": bad}).status_code == 422, repr(bad)
        assert api.request("GET", "/v1/accounts/main/A%00B", viewer).status_code == 422
        assert api.request("GET", "/v1/orders/blocked?account=a%00b",
                           viewer).status_code == 422
        assert api.request("GET", "/v1/accounts/main/NOBODY", viewer).status_code == 404
        assert len(asyncio.run(input_records(settings))) == records_before
        assert not [r for r in asyncio.run(audit_rows(schema_dsn))
                    if r["type"] == "credit.command.release_order"]

        # The CLI reads what the API reads.
        shown = cli(settings, viewer, "account", "show", ACCOUNT)
        assert shown.returncode == 0, shown.stderr
        assert "blocked order SO-2 900.00 EUR" in shown.stdout
        assert "LIMIT_EXCEEDED" in shown.stdout

        # A controller releases, from the command line.
        done = cli(settings, controller, "orders", "release", ACCOUNT, "SO-2",
                   "--reason", "paid by wire")
        assert done.returncode == 0, done.stderr
        assert "sent by carla" in done.stdout

        commands = [r for r in asyncio.run(input_records(settings))
                    if r["type"] == "credit.command.release_order"]
        assert len(commands) == 1
        assert commands[0]["data"] == {"company": "main", "customer_id": "API-1",
                                       "order_id": "SO-2", "by": "carla",
                                       "reason": "paid by wire"}

        view = api.wait_until(path, viewer, lambda v: not v["snapshot"]["blocked_orders"])
        assert view["snapshot"]["exposure"]["total"] == "1300.00"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = asyncio.run(audit_rows(schema_dsn))
            if any(r["type"] == "credit.order.released" for r in rows):
                break
            time.sleep(0.5)
        request = [r for r in rows if r["type"] == "credit.command.release_order"]
        released = [r for r in rows if r["type"] == "credit.order.released"]
        assert len(request) == 1 and request[0]["order_id"] == "SO-2"
        assert request[0]["data"]["by"] == "carla"
        assert request[0]["data"]["reason"] == "paid by wire"
        assert len(released) == 1
        assert released[0]["data"]["by"] == "carla"
        assert released[0]["data"]["reason"] == "paid by wire"

        # Nothing is blocked any more: a second release is refused, not sent.
        again = api.request("POST", release, controller, json={"reason": "twice"})
        assert again.status_code == 409
        assert len([r for r in asyncio.run(input_records(settings))
                    if r["type"] == "credit.command.release_order"]) == 1
        assert api.request("GET", "/v1/orders/blocked", viewer).json() == []


@pytest.mark.parametrize("path, method", [
    ("/v1/accounts/main/C%2F1", "GET"),
    ("/v1/accounts/main/C1/orders/SO%2F2026%2F001/release", "POST"),
    ("/v1/accounts/main/C%2F1/orders/SO%2F1/release", "POST"),
])
def test_ids_with_a_slash_reach_the_handler(tmp_path: Path, path: str, method: str) -> None:
    """ERP order numbers such as SO/2026/001 must be reachable: the request gets past
    routing to the store (down here, so 503), not a routing 404."""
    from fastapi.testclient import TestClient

    from monitor.api.app import create_app

    token, entry = new_token("carla", "controller")
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(entry)
    settings = Settings(pg_dsn=SecretStr(f"postgresql://x:y@127.0.0.1:{free_port()}/none"),
                        kafka_bootstrap=f"127.0.0.1:{free_port()}")
    with TestClient(create_app(settings, TokenBook.from_file(tokens))) as client:
        answer = client.request(method, path, headers={"Authorization": f"Bearer {token}"},
                                json={"reason": "paid by phone"} if method == "POST" else None)
    assert answer.status_code == 503, answer.text
