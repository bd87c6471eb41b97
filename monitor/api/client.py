"""The command-line side of the operator API: `credit-monitor account show`,
`accounts on-hold`, `orders blocked` and `orders release` call the API over HTTP with
the token in CREDIT_MONITOR_API_TOKEN, so the CLI has exactly the rights of its token."""

from __future__ import annotations

import json
from typing import Any, TextIO
from urllib.parse import quote

import httpx

from monitor.settings import Settings


class ApiError(Exception):
    """The API refused or could not be reached; the message says which and why."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def call(settings: Settings, method: str, path: str, *,
         params: dict[str, Any] | None = None, body: dict[str, Any] | None = None) -> Any:
    if settings.api_token is None:
        raise ApiError("no token: set CREDIT_MONITOR_API_TOKEN (see README, Operator API)")
    headers = {"Authorization": f"Bearer {settings.api_token.get_secret_value()}"}
    try:
        reply = httpx.request(method, settings.api_url.rstrip("/") + path, params=params,
                              json=body, headers=headers, timeout=30.0)
    except httpx.HTTPError as exc:
        raise ApiError(f"cannot reach the API at {settings.api_url}: {exc}") from None
    if reply.status_code >= 400:
        try:
            detail = reply.json().get("detail")
        except ValueError:
            detail = reply.text
        raise ApiError(f"{reply.status_code}: {detail}", reply.status_code)
    return reply.json()


def account_path(account: str) -> str:
    company, sep, customer = account.partition("/")
    if not sep or not company or not customer:
        raise ApiError(f"expected COMPANY/CUSTOMER_ID, got {account!r}")
    return f"/v1/accounts/{quote(company, safe='')}/{quote(customer, safe='')}"


def show_account(settings: Settings, account: str, out: TextIO, as_json: bool) -> None:
    view = call(settings, "GET", account_path(account))
    if as_json:
        json.dump(view, out, indent=2)
        out.write("\n")
        return
    snap = view["snapshot"]
    cur = snap.get("currency") or ""
    exp = snap.get("exposure", {})
    out.write(f"{view['account']}  {view['status']}  as of {snap.get('as_of')}\n")
    out.write(f"  limit {snap.get('effective_limit')} {cur} (set {snap.get('credit_limit')})"
              f", exposure {exp.get('total')}, available {snap.get('available_credit')}\n")
    out.write("  exposure: " + ", ".join(
        f"{k} {v}" for k, v in exp.items() if k != "total") + "\n")
    score = snap.get("score")
    if score:
        out.write(f"  score {score['score']} grade {score['grade']}, recommended limit "
                  f"{score['recommended_limit']}: " + ", ".join(
                      f"{f['name']} {f['points']}/{f['weight']}" for f in score["factors"])
                  + "\n")
    overdue = snap.get("overdue", {})
    out.write(f"  overdue {overdue.get('amount')} (oldest {overdue.get('oldest_days')} days)\n")
    out.writelines(f"  reason {r.get('code')}: {r.get('detail')}\n" for r in snap.get("reasons", []))
    out.writelines(f"  blocked order {o['order_id']} {o['amount']} {o['currency']} since "
                  f"{o.get('blocked_at')}: {', '.join(r.get('code', '') for r in o['reasons'])}\n" for o in snap.get("blocked_orders", []))
    for kind, docs in snap.get("documents", {}).items():
        out.writelines(f"  open {kind[:-1]} {d['id']}: {d['open']} {d['currency']}\n" for d in docs)
    out.writelines(f"  {d['event_time']}  {d['type']}  {_what(d)}"
                  f"  {' '.join(d['reason_codes'])}\n" for d in view["recent_decisions"])


def _what(entry: dict[str, Any]) -> str:
    """The one figure that says what an audit entry was about."""
    data = entry.get("data") or {}
    for value in (entry.get("order_id"), entry.get("status"), data.get("grade"),
                  data.get("recommended_limit")):
        if value:
            return str(value)
    return ""


def list_on_hold(settings: Settings, out: TextIO, as_json: bool) -> None:
    rows = call(settings, "GET", "/v1/accounts/on-hold")
    if as_json:
        json.dump(rows, out, indent=2)
        out.write("\n")
        return
    out.writelines(f"{r['account']}  since {r['hold_since']}  exposure {r['exposure_total']} "
                  f"{r['currency']}  overdue {r['overdue_amount']}  "
                  f"{' '.join(r['reason_codes'])}\n" for r in rows)
    out.write(f"{len(rows)} account(s) on hold\n")


def list_blocked(settings: Settings, account: str | None, out: TextIO, as_json: bool) -> None:
    rows = call(settings, "GET", "/v1/orders/blocked",
                params={"account": account} if account else None)
    if as_json:
        json.dump(rows, out, indent=2)
        out.write("\n")
        return
    out.writelines(f"{r['account']}  {r['order_id']}  {r['amount']} {r['currency']}  since "
                  f"{r['blocked_at']}  {' '.join(r['reason_codes'])}\n" for r in rows)
    out.write(f"{len(rows)} blocked order(s)\n")


def release_order(settings: Settings, account: str, order_id: str, reason: str,
                  out: TextIO) -> None:
    done = call(settings, "POST", f"{account_path(account)}/orders/"
                f"{quote(order_id, safe='')}/release", body={"reason": reason})
    out.write(f"release of {done['account']} {done['order_id']} sent by {done['by']} as "
              f"{done['command_id']} ({done['kafka']['topic']}[{done['kafka']['partition']}]"
              f"@{done['kafka']['offset']}); {done['note']}\n")
