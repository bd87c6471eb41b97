"""The `credit-monitor api ...`, `account ...`, `accounts ...` and `orders ...` commands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

from monitor.api.auth import ROLES, TokenBook, TokenFileError, new_token

OPENAPI_FILE = Path(__file__).resolve().parent.parent.parent / "schemas" / "generated" \
    / "openapi.json"


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    api = sub.add_parser("api", help="the operator HTTP API: serve it, make tokens, "
                         "write its OpenAPI document")
    api_sub = api.add_subparsers(dest="api_command", required=True)
    api_sub.add_parser("serve", help="serve the API (CREDIT_MONITOR_API_* settings)")
    tok = api_sub.add_parser("token", help="make a new token; prints it once, and the "
                             "entry to add to the token file")
    tok.add_argument("name", help="who holds it; recorded as `by` on releases")
    tok.add_argument("--role", choices=ROLES, required=True)
    spec = api_sub.add_parser("openapi", help="write the OpenAPI document")
    spec.add_argument("--check", action="store_true",
                      help="exit 1 if the committed document is out of date")

    acc = sub.add_parser("account", help="look at one account through the API")
    acc_sub = acc.add_subparsers(dest="account_command", required=True)
    show = acc_sub.add_parser("show", help="exposure, documents, overdue, holds and why")
    show.add_argument("account", metavar="COMPANY/CUSTOMER_ID")
    show.add_argument("--json", action="store_true")

    accs = sub.add_parser("accounts", help="accounts through the API")
    accs_sub = accs.add_subparsers(dest="accounts_command", required=True)
    held = accs_sub.add_parser("on-hold", help="accounts on hold, the longest held first")
    held.add_argument("--json", action="store_true")

    orders = sub.add_parser("orders", help="blocked orders through the API")
    orders_sub = orders.add_subparsers(dest="orders_command", required=True)
    blocked = orders_sub.add_parser("blocked", help="orders waiting on credit")
    blocked.add_argument("--account", metavar="COMPANY/CUSTOMER_ID")
    blocked.add_argument("--json", action="store_true")
    rel = orders_sub.add_parser("release", help="release a blocked order (controllers)")
    rel.add_argument("account", metavar="COMPANY/CUSTOMER_ID")
    rel.add_argument("order_id", metavar="ORDER_ID")
    rel.add_argument("--reason", required=True, help="why; kept in the audit log")


def openapi_document() -> str:
    from monitor.api.app import create_app
    from monitor.settings import Settings

    app = create_app(Settings(), TokenBook.empty())  # type: ignore[call-arg]
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"


def run(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    from monitor.api import client
    from monitor.settings import SettingsError, load_settings

    try:
        if args.command == "api":
            return _run_api(args, out, err)
        settings = load_settings()
        if args.command == "account":
            client.show_account(settings, args.account, out, args.json)
        elif args.command == "accounts":
            client.list_on_hold(settings, out, args.json)
        elif args.orders_command == "blocked":
            client.list_blocked(settings, args.account, out, args.json)
        else:
            client.release_order(settings, args.account, args.order_id, args.reason, out)
        return 0
    except (SettingsError, TokenFileError) as exc:
        print(f"credit-monitor {args.command}: {exc}", file=err)
        return 2
    except client.ApiError as exc:
        print(f"credit-monitor {args.command}: {exc}", file=err)
        return 3 if exc.status in (401, 403) else 1


def _run_api(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.api_command == "token":
        token, entry = new_token(args.name, args.role)
        out.write(f"token (shown once; give it to {args.name}):\n{token}\n\n"
                  f"add to the token file (CREDIT_MONITOR_API_TOKENS_FILE):\n{entry}")
        return 0
    if args.api_command == "openapi":
        text = openapi_document()
        if args.check:
            if not OPENAPI_FILE.exists() or OPENAPI_FILE.read_text() != text:
                print(f"{OPENAPI_FILE} is out of date: run `credit-monitor api openapi`",
                      file=err)
                return 1
            return 0
        OPENAPI_FILE.write_text(text)
        out.write(f"wrote {OPENAPI_FILE}\n")
        return 0
    return _serve()


def _serve() -> int:
    import uvicorn

    from monitor.api.app import create_app
    from monitor.logs import configure
    from monitor.settings import load_settings

    settings = load_settings()
    configure(settings.log_format, settings.log_level)
    if settings.api_tokens_file is None:
        tokens = TokenBook.empty()
        print("credit-monitor api: no CREDIT_MONITOR_API_TOKENS_FILE; every request will "
              "be refused", file=sys.stderr)
    else:
        tokens = TokenBook.from_file(settings.api_tokens_file)
    uvicorn.run(create_app(settings, tokens), host=settings.api_host,
                port=settings.api_port, log_config=None, access_log=True)
    return 0
