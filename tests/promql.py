"""Helpers for the tests of PromQL in the Grafana dashboard and the alert rules.

promtool and amtool come from Debian's `prometheus` and `prometheus-alertmanager`
packages, installed by `bash deploy/tools.sh` (.ci/run calls it). A test that needs
one fails, never skips, when it is missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

TOOLS_HINT = (
    "install it with `bash deploy/tools.sh` (Debian's prometheus and "
    "prometheus-alertmanager packages)"
)

# Metrics Prometheus itself adds to every scrape.
SCRAPE_METRICS = frozenset({"up"})

_KEYWORDS = frozenset(
    {"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right", "inf", "nan"}
)
_STRING = re.compile(r'"(?:\\.|[^"\\])*"' + r"|'(?:\\.|[^'\\])*'")
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_LABEL_LIST = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
# A name not preceded by a word character or a dot (so no unit of `30m` and no
# digits of `0.99`) and not followed by `(` (a function or an aggregation).
_NAME = re.compile(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")


def require_tool(name: str) -> str:
    """Path of a command-line tool, or fail the calling test saying how to get it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on PATH: {TOOLS_HINT}", pytrace=False)
    return path


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects.

    Strings, label matchers, ranges and label lists are cut out first, so what
    is left of the names is metrics, functions (followed by `(`) and keywords.
    """
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _LABEL_LIST.sub("", text)
    return {name for name in _NAME.findall(text) if name.lower() not in _KEYWORDS}


def check_promql(expressions: Mapping[str, str], tmp_path: Path) -> None:
    """Fail unless promtool parses every expression (name -> PromQL)."""
    promtool = require_tool("promtool")
    rules = {
        "groups": [
            {
                "name": "parse-only",
                "rules": [
                    {"record": f"check:expr_{n}", "expr": expr}
                    for n, expr in enumerate(expressions.values())
                ],
            }
        ]
    }
    path = tmp_path / "expressions.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        numbered = "\n".join(
            f"  expr_{n}: {name}" for n, name in enumerate(expressions)
        )
        pytest.fail(
            f"promtool cannot parse an expression:\n{result.stdout}{result.stderr}"
            f"\nwhich is:\n{numbered}",
            pytrace=False,
        )
