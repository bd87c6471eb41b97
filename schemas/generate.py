"""Generate the JSON Schema of every event and the AsyncAPI 3 document from the models.

`python -m schemas.generate` rewrites `schemas/generated/`; `--check` exits 1 when the
committed files differ from what the models give (the test suite runs it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from . import events as ev
from . import topics

OUT = Path(__file__).parent / "generated"

INPUTS: list[type[BaseModel]] = [
    ev.CreditProfileSet, ev.OrderPlaced, ev.OrderAmended, ev.OrderCancelled,
    ev.OrderClosed, ev.OrderReopened, ev.DeliveryPosted, ev.InvoiceIssued,
    ev.InvoiceCancelled, ev.CreditNoteIssued, ev.PaymentReceived, ev.PaymentAllocated,
    ev.PaymentReversed, ev.InvoiceDisputed, ev.InvoiceDisputeResolved,
    ev.ReleaseOrderCommanded, ev.FxRateSet, ev.ClockTicked,
]
DECISIONS: list[type[BaseModel]] = [
    ev.OrderApproved, ev.OrderBlocked, ev.OrderReleased, ev.AccountStatusChanged,
    ev.AccountGradeChanged, ev.LimitReviewSuggested,
]


def _type_of(model: type[BaseModel]) -> str:
    return model.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]


def json_schemas() -> dict[str, dict[str, Any]]:
    """One standalone JSON Schema per event type, keyed by file name."""
    out = {}
    for model in [*INPUTS, *DECISIONS, ev.AccountSnapshot, ev.EventRejected]:
        schema = model.model_json_schema(mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"urn:credit-monitor:event:{_type_of(model)}"
        out[f"{_type_of(model)}.schema.json"] = schema
    return out


def asyncapi() -> dict[str, Any]:
    """The AsyncAPI 3.0 document for ERP integrators."""
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}

    def message(model: type[BaseModel]) -> dict[str, str]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
        messages[model.__name__] = {
            "name": _type_of(model),
            "title": model.__name__,
            "summary": (model.__doc__ or _type_of(model)).strip().splitlines()[0],
            "contentType": "application/cloudevents+json; charset=utf-8",
            "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
            "bindings": {"kafka": {"key": {
                "type": "string",
                "description": "the credit account, `company/customer_id`",
            }}},
        }
        return {"$ref": f"#/components/messages/{model.__name__}"}

    def refs(models: list[type[BaseModel]]) -> dict[str, Any]:
        return {m.__name__: message(m) for m in models}

    channels = {
        "creditEvents": {
            "address": topics.INPUT,
            "description": "ERP account events and release commands keyed by account; "
            "FX rates and clock ticks are written to every partition.",
            "messages": refs(INPUTS),
        },
        "creditBroadcast": {
            "address": topics.BROADCAST,
            "description": "FX rates and clock ticks that the service copies into every "
            "partition of credit.events.",
            "messages": refs([ev.FxRateSet, ev.ClockTicked]),
        },
        "creditDecisions": {
            "address": topics.DECISIONS,
            "description": "Order decisions, account status and grade changes and limit review suggestions, keyed by account.",
            "messages": refs(DECISIONS),
        },
        "creditSnapshots": {
            "address": topics.SNAPSHOTS,
            "description": "Latest snapshot of every account (compacted topic).",
            "messages": refs([ev.AccountSnapshot]),
        },
        "creditRejected": {
            "address": topics.REJECTED,
            "description": "Records that could not be applied, with the reason.",
            "messages": refs([ev.EventRejected]),
        },
    }

    def op(action: str, channel: str, summary: str) -> dict[str, Any]:
        return {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": summary,
            "messages": [
                {"$ref": f"#/channels/{channel}/messages/{name}"}
                for name in channels[channel]["messages"]
            ],
        }

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Credit monitor events",
            "version": "1.0.0",
            "description": "Events ERP modules send to the credit monitor and the "
            "decisions it sends back. Every message is a CloudEvents 1.0 JSON document; "
            "money amounts are decimal strings.",
        },
        "defaultContentType": "application/cloudevents+json; charset=utf-8",
        "servers": {"local": {
            "host": "127.0.0.1:9092", "protocol": "kafka",
            "description": "The local broker started by deploy/kafka.sh",
        }},
        "channels": channels,
        "operations": {
            "receiveErpEvents": op("receive", "creditEvents", "The monitor consumes ERP events."),
            "receiveBroadcasts": op("receive", "creditBroadcast", "The monitor consumes FX rates and ticks."),
            "sendDecisions": op("send", "creditDecisions", "The monitor publishes decisions."),
            "sendSnapshots": op("send", "creditSnapshots", "The monitor publishes snapshots."),
            "sendRejected": op("send", "creditRejected", "The monitor publishes rejected records."),
        },
        "components": {"schemas": dict(sorted(schemas.items())), "messages": messages},
    }


def rendered() -> dict[str, str]:
    files = {name: schema for name, schema in json_schemas().items()}
    files["asyncapi.json"] = asyncapi()
    out = {name: json.dumps(doc, indent=2, sort_keys=False) + "\n" for name, doc in files.items()}
    # The operator API's document, from the FastAPI app itself.
    from monitor.api.command import openapi_document

    out["openapi.json"] = openapi_document()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if files are stale")
    args = parser.parse_args(argv)
    files = rendered()
    if args.check:
        stale = [n for n, text in files.items()
                 if not (OUT / n).exists() or (OUT / n).read_text() != text]
        extra = sorted(p.name for p in OUT.glob("*.json") if p.name not in files)
        if stale or extra:
            print("stale generated schemas: " + ", ".join(stale + extra)
                  + "; run `python -m schemas.generate`", file=sys.stderr)
            return 1
        return 0
    OUT.mkdir(exist_ok=True)
    for old in OUT.glob("*.json"):
        if old.name not in files:
            old.unlink()
    for name, text in files.items():
        (OUT / name).write_text(text)
    print(f"wrote {len(files)} files to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
