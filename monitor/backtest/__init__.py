"""Backtest: what a policy's decisions said about a history, against what happened.

`build_report` computes the figures (`report`, `figures`, `exposure`) from the input
events and the decisions, which come from the offline evaluator or from the live
service's audit log (`audit`); `render_html` turns them into one self-contained page.
"""

from .figures import PolicyFigures, policy_figures
from .history import read_history
from .html import render_html
from .report import Report, build_report, builtin_policies, evaluate

__all__ = [
    "PolicyFigures",
    "Report",
    "build_report",
    "builtin_policies",
    "evaluate",
    "policy_figures",
    "read_history",
    "render_html",
]
