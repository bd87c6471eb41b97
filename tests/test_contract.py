"""The contract models, the policy file and the evaluator's command line."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from monitor.domain.policy import Policy, PolicyError
from schemas import generate
from schemas.events import output_adapter
from schemas.parse import InvalidEvent, parse

ROOT = Path(__file__).resolve().parent.parent


def order(**data: object) -> bytes:
    body = {"customer_id": "C1", "order_id": "SO1", "amount": "10.00", "currency": "EUR",
            **data}
    return json.dumps({"specversion": "1.0", "id": "e1", "source": "erp/t",
                       "type": "erp.order.placed", "time": "2026-01-01T10:00:00+02:00",
                       "data": body}).encode()


def test_amount_given_as_json_number_is_read_through_its_decimal_text() -> None:
    raw = order().replace(b'"10.00"', b"0.1000000000000000055511151231257827")

    assert parse(raw).data.amount == Decimal("0.1000000000000000055511151231257827")


def test_event_time_is_kept_as_an_instant_in_utc() -> None:
    assert parse(order()).time.isoformat() == "2026-01-01T08:00:00+00:00"


def test_lower_case_currency_is_accepted_and_unknown_code_is_named() -> None:
    assert parse(order(currency="eur")).data.currency == "EUR"
    with pytest.raises(InvalidEvent, match="data.currency: 'ABC' is not an ISO 4217"):
        parse(order(currency="ABC"))


@pytest.mark.parametrize(("raw", "message"), [
    (b"\xff\xfe", "not UTF-8 text"),
    (b"{oops", "not JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"type": "erp.order.shipped"}', "unknown event type 'erp.order.shipped'"),
    (order(amount="-1"), "data.amount: Input should be greater than or equal to 0"),
    (order(amount="1e999999"), "data.amount"),
    (order(amount="NaN"), "data.amount"),
    (order().replace(b"+02:00", b""), "time"),
])
def test_bad_record_is_refused_with_a_reason_naming_the_field(raw: bytes,
                                                              message: str) -> None:
    with pytest.raises(InvalidEvent, match=message.replace("(", r"\(")):
        parse(raw)


def test_generated_schemas_and_asyncapi_are_up_to_date() -> None:
    assert generate.main(["--check"]) == 0, "run `python -m schemas.generate`"


def test_asyncapi_references_all_resolve() -> None:
    doc = json.loads((generate.OUT / "asyncapi.json").read_text())

    def refs(node: object) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if "$ref" in node else []
            return found + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    for ref in refs(doc):
        target: object = doc
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(target, dict) and part in target, ref
            target = target[part]
    assert doc["asyncapi"] == "3.0.0"
    assert {c["address"] for c in doc["channels"].values()} >= {
        "credit.events", "credit.decisions", "credit.snapshots", "credit.rejected"}


def test_without_a_file_the_policy_is_the_contracts() -> None:
    policy = Policy.default_policy()

    assert policy.for_class("B").warn_utilization == Decimal("0.85")
    assert policy.for_class("D").block_utilization == Decimal("0.90")
    assert policy.for_class("D").hold_overdue_days == 15
    assert policy.for_class("A").max_order_amount is None
    assert policy.for_class(None).on_missing_profile == "block"


def test_policy_file_overrides_keep_the_builtin_class_d_overrides() -> None:
    policy = Policy.from_toml('[default]\nwarn_utilization = 0.8\n[risk_class.A]\n'
                              'max_order_amount = "5000"\n')

    assert policy.for_class("B").warn_utilization == Decimal("0.8")
    assert policy.for_class("A").max_order_amount == Decimal("5000")
    assert policy.for_class("D").warn_utilization == Decimal("0.70")


@pytest.mark.parametrize(("text", "message"), [
    ("[default]\nwarn_utilisation = 1", "[default]: unknown key 'warn_utilisation'"),
    ("[risk_class.E]\ngrace_days = 1", "[risk_class.E]: unknown risk class"),
    ("[risk_class.C]\ngrace_days = -1", "[risk_class.C].grace_days"),
    ('[default]\non_missing_profile = "maybe"', "[default].on_missing_profile"),
    ("[limits]\nx = 1", "unknown table [limits]"),
    ("[default\n", "not valid TOML"),
])
def test_bad_policy_fails_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Policy.from_toml(text)


def cases_events() -> bytes:
    lines = []
    for path in sorted((ROOT / "tests" / "cases" / "shared").glob("*.json")):
        lines += [json.dumps(e) for e in json.loads(path.read_text())["events"]]
    return ("\n".join(lines) + "\nnot json\n").encode()


def test_evaluate_gives_the_same_bytes_from_a_file_stdin_and_python_m(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(cases_events())
    cli = [str(ROOT / ".venv" / "bin" / "credit-monitor")]
    if not Path(cli[0]).exists():
        cli = [sys.executable, "-m", "monitor"]

    from_file = subprocess.run([*cli, "evaluate", str(events), "--snapshots"],
                               capture_output=True, check=True).stdout
    again = subprocess.run([*cli, "evaluate", str(events), "--snapshots"],
                           capture_output=True, check=True).stdout
    from_stdin = subprocess.run([sys.executable, "-m", "monitor", "evaluate", "-",
                                 "--snapshots"], input=events.read_bytes(),
                                capture_output=True, check=True).stdout

    assert from_file == again
    assert from_stdin.replace(b'"file":"-"', b"") == from_file.replace(
        f'"file":"{events}"'.encode(), b"")
    outputs = [json.loads(line) for line in from_file.splitlines()]
    assert outputs[-1]["type"] == "credit.account.snapshot"
    assert any(o["type"] == "credit.event.rejected" and o["data"]["origin"]["line"] ==
               len(cases_events().splitlines()) for o in outputs)
    for o in outputs:
        output_adapter.validate_python(o)


def test_evaluate_with_a_bad_policy_file_exits_2_naming_the_key(tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text("[default]\nblock_utilisation = 1\n")
    run = subprocess.run([sys.executable, "-m", "monitor", "evaluate", "-", "--policy",
                          str(policy)], input=b"", capture_output=True)

    assert run.returncode == 2
    assert b"unknown key 'block_utilisation'" in run.stderr


def test_domain_type_checks_in_strict_mode() -> None:
    run = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)

    assert run.returncode == 0, run.stdout[-3000:]
