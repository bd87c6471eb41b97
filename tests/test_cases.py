"""Every scenario case, through the offline evaluator in-process and through its CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from monitor.domain.policy import Policy
from monitor.evaluate import evaluate_lines
from schemas.events import output_adapter

from .casecheck import CASE_DIRS, events_jsonl, load_cases, problems

CASES = load_cases()
ROOT = Path(__file__).resolve().parent.parent


def run_case(case: dict) -> list[dict]:
    policy = Policy.from_toml(case.get("policy", ""))
    lines = events_jsonl(case).splitlines(keepends=True)
    return list(evaluate_lines(lines, policy, snapshots=True))


def test_the_shared_and_extra_cases_are_all_here() -> None:
    assert len([c for c in CASES]) >= 35
    assert {p.parent.name for d in CASE_DIRS for p in d.glob("*.json")} == {"shared", "extra"}


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case_holds_through_the_evaluator(case: dict) -> None:
    outputs = run_case(case)

    assert problems(case, outputs) == []
    for output in outputs:
        output_adapter.validate_python(output)  # every output matches the contract


def test_checker_notices_a_wrong_expectation() -> None:
    case = next(c for c in CASES if c["name"] == "payments-reduce-exposure")
    outputs = run_case(case)
    broken = {**case, "expect": {**case["expect"], "snapshots": {
        "main/C1": {"exposure.total": "113298.76"}}}}

    assert problems(broken, outputs) == [
        "main/C1 exposure.total: got '113298.75', want '113298.76'"
    ]


def test_cases_pass_through_the_credit_monitor_command() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "tools" / "run_cases.py"), str(ROOT),
         *map(str, CASE_DIRS)],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{len(CASES)}/{len(CASES)} cases pass" in run.stdout
