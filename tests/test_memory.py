"""What the worker and the evaluator keep per account is sized to its content.

orjson returns bytes with an allocation rounded up to at least 4 KiB; one such image
kept per account made a worker hold several times its accounts' state. These tests
measure the traced allocation of what is kept, not its `len`.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from monitor.domain.engine import CreditEngine
from monitor.domain.policy import Policy
from monitor.domain.state import account_to_state, kept_json
from streams.app import CreditStreams, PartitionEngine

from .streamkit import make_settings

ACCOUNTS = 300
# A bytes object's header plus the allocator's rounding, per object.
PER_OBJECT_OVERHEAD = 64


def _events(customer: str, n0: int) -> list[dict[str, Any]]:
    def ev(n: int, type_: str, **data: Any) -> dict[str, Any]:
        return {"specversion": "1.0", "id": f"{customer}-{n}", "source": "erp/test",
                "type": type_, "time": f"2026-02-0{1 + n}T10:00:00Z",
                "data": {"company": "main", "customer_id": customer, **data}}
    return [
        ev(0, "erp.credit_profile.set", currency="EUR", credit_limit="5000.00",
           risk_class="B"),
        ev(1, "erp.order.placed", order_id=f"O{n0}", amount="120.00", currency="EUR"),
        ev(2, "erp.invoice.issued", invoice_id=f"I{n0}", amount="120.00",
           currency="EUR", due_date="2026-03-01", order_ids=[f"O{n0}"]),
    ]


def _traced_size_of(build: Callable[[], list[Any]]) -> tuple[int, int]:
    """(traced bytes freed when the objects `build` returns are dropped, their total
    length); tracing is on while they are made, so their real allocation is seen."""
    gc.collect()
    tracemalloc.start()
    try:
        kept = build()
        length = sum(len(x) for x in kept)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        kept.clear()
        gc.collect()
        return before - tracemalloc.get_traced_memory()[0], length
    finally:
        tracemalloc.stop()


def test_kept_json_is_the_same_text_in_an_allocation_of_its_own_size() -> None:
    docs = [{"account": f"main/C{i}", "figures": ["12.50"] * 20} for i in range(1000)]
    assert all(kept_json(d) == orjson.dumps(d) for d in docs)
    size, length = _traced_size_of(lambda: [kept_json(d) for d in docs])
    assert size <= length + PER_OBJECT_OVERHEAD * len(docs), (size, length)


def test_the_evaluators_saved_images_are_sized_to_the_states() -> None:
    engine = CreditEngine(Policy.default_policy())

    def build() -> list[bytes]:
        for i in range(ACCOUNTS):
            for event in _events(f"C{i}", i):
                engine.process(event, {})
        images = engine._images
        assert images is not None and len(images) == ACCOUNTS
        kept = list(images.values())
        images.clear()
        return kept

    size, length = _traced_size_of(build)
    assert size <= length + PER_OBJECT_OVERHEAD * ACCOUNTS, (size, length)


def test_the_workers_table_values_are_sized_to_the_states(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    streams = CreditStreams(make_settings(tmp_path), Policy.default_policy())
    engine = CreditEngine(Policy.default_policy(), saved_state=streams._saved_state)
    streams.engines = {0: PartitionEngine(0, engine)}
    streams.stale = False
    sent: list[str] = []

    async def send(topic: Any, key: bytes | None, value: bytes,
                   partition: int | None = None) -> None:
        sent.append(topic if isinstance(topic, str) else topic.get_topic_name())

    monkeypatch.setattr(streams, "_send", send)

    async def feed() -> None:
        offset = 0
        for i in range(ACCOUNTS):
            for event in _events(f"C{i}", i):
                await streams.on_record(SimpleNamespace(
                    topic="in", partition=0, offset=offset, value=orjson.dumps(event),
                    timestamp=None))
                offset += 1

    data = streams.accounts.data

    def build() -> list[bytes]:
        asyncio.run(feed())
        keys = [k for k in list(data.keys()) if k.startswith(b"main/")]
        assert len(keys) == ACCOUNTS
        # What the table holds is the account as the engine has it.
        assert orjson.loads(data[b"main/C7"])["a"] == account_to_state(
            engine.accounts["main/C7"])
        return [data.pop(k) for k in keys]

    size, length = _traced_size_of(build)
    assert size <= length + PER_OBJECT_OVERHEAD * ACCOUNTS, (size, length)
