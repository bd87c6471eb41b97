"""Turning raw bytes into a validated input event, or into a reason a person can act on."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from .events import INPUT_TYPES, Envelope


# One decoder for every record: `json.loads` with options builds a new one per call.
_DECODER = json.JSONDecoder(parse_float=Decimal)


class InvalidEvent(ValueError):
    """A record that is not a valid contract event; `original` is what arrived."""

    def __init__(self, message: str, original: Any) -> None:
        super().__init__(message)
        self.original = original


def decode(raw: bytes | str) -> Any:
    """JSON text to Python, numbers as exact decimals; raises `InvalidEvent`."""
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEvent(
                f"not UTF-8 text: byte {raw[exc.start]:#04x} at position {exc.start}",
                raw.decode("utf-8", errors="replace"),
            ) from exc
    else:
        text = raw
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise InvalidEvent(
            f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", text
        ) from exc


def validate(doc: Any) -> Envelope:
    """A decoded JSON document to its typed event model; raises `InvalidEvent`."""
    if not isinstance(doc, dict):
        raise InvalidEvent(
            f"an event must be a JSON object, got {type(doc).__name__}", doc
        )
    kind = doc.get("type")
    model = INPUT_TYPES.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise InvalidEvent(
            f"unknown event type {kind!r}; expected one of {', '.join(sorted(INPUT_TYPES))}",
            doc,
        )
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise InvalidEvent(describe(exc), doc) from exc


def parse(raw: bytes | str) -> Envelope:
    return validate(decode(raw))


def describe(exc: ValidationError) -> str:
    """A validation error as short sentences naming each field: `data.amount: ...`."""
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "event"
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if err["type"] == "missing":
            parts.append(f"{where}: required field is missing")
        else:
            got = err.get("input")
            shown = "" if isinstance(got, (dict, list)) else f" (got {_short(got)})"
            parts.append(f"{where}: {msg}{shown}")
    more = len(exc.errors()) - 5
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def _short(value: Any) -> str:
    text = repr(str(value)) if isinstance(value, Decimal) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
