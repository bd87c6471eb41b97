"""Who may use the operator API: bearer tokens with a name and a role.

The token file is TOML and holds only the SHA-256 of each token, so reading it does
not let anyone call the API:

    [[tokens]]
    name = "ana.controller"   # recorded as `by` on every release this token makes
    role = "controller"       # viewer: read; controller: read and release orders
    sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

`credit-monitor api token NAME --role ROLE` makes a new token and prints its entry.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Role = Literal["viewer", "controller"]
ROLES: tuple[Role, ...] = ("viewer", "controller")
_RANK = {"viewer": 0, "controller": 1}


class TokenFileError(ValueError):
    """The token file cannot be used; the message names the entry and the problem."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The holder of a valid token."""

    name: str
    role: Role

    def may(self, role: Role) -> bool:
        """True when this principal has `role` or a stronger one."""
        return _RANK[self.role] >= _RANK[role]


@dataclass(frozen=True, slots=True)
class _Entry:
    digest: bytes
    principal: Principal


class TokenBook:
    """The known tokens; `identify` compares digests in constant time."""

    def __init__(self, entries: list[_Entry]) -> None:
        self._entries = entries

    @classmethod
    def empty(cls) -> TokenBook:
        return cls([])

    @classmethod
    def from_file(cls, path: Path) -> TokenBook:
        if path.is_dir():
            raise TokenFileError(f"{path} is a folder; CREDIT_MONITOR_API_TOKENS_FILE must "
                                 "name the TOML token file")
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise TokenFileError(f"{path}: cannot read: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise TokenFileError(f"{path}: not UTF-8 text") from None
        except tomllib.TOMLDecodeError as exc:
            raise TokenFileError(f"{path}: not TOML: {exc}") from None
        unknown = sorted(set(doc) - {"tokens"})
        if unknown:
            raise TokenFileError(f"{path}: unknown key {unknown[0]!r}; only [[tokens]]")
        raw = doc.get("tokens", [])
        if not isinstance(raw, list):
            raise TokenFileError(f"{path}: `tokens` must be an array of tables")
        entries: list[_Entry] = []
        names: set[str] = set()
        digests: set[bytes] = set()
        for n, item in enumerate(raw, start=1):
            where = f"{path}: tokens entry {n}"
            if not isinstance(item, dict):
                raise TokenFileError(f"{where}: must be a table")
            extra = sorted(set(item) - {"name", "role", "sha256"})
            if extra:
                raise TokenFileError(f"{where}: unknown key {extra[0]!r}; an entry has "
                                     "name, role and sha256")
            name, role, digest = item.get("name"), item.get("role"), item.get("sha256")
            if not isinstance(name, str) or not name.strip():
                raise TokenFileError(f"{where}: `name` must be a non-empty string")
            if role not in ROLES:
                raise TokenFileError(f"{where} ({name}): `role` must be one of {ROLES}")
            if not isinstance(digest, str) or len(digest) != 64:
                raise TokenFileError(f"{where} ({name}): `sha256` must be 64 hex digits")
            try:
                digest_bytes = bytes.fromhex(digest)
            except ValueError:
                raise TokenFileError(f"{where} ({name}): `sha256` is not hex") from None
            if name in names:
                raise TokenFileError(f"{where}: the name {name!r} is used twice")
            if digest_bytes in digests:
                raise TokenFileError(f"{where} ({name}): the same token is listed twice; "
                                     "one token has one name and one role")
            names.add(name)
            digests.add(digest_bytes)
            entries.append(_Entry(digest_bytes, Principal(name, role)))
        return cls(entries)

    def identify(self, token: str) -> Principal | None:
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for entry in self._entries:  # no early exit: every check costs the same
            if hmac.compare_digest(entry.digest, digest):
                found = entry.principal
        return found


def new_token(name: str, role: Role) -> tuple[str, str]:
    """A fresh random token and the TOML entry to add to the token file."""
    token = secrets.token_urlsafe(32)
    digest = hashlib.sha256(token.encode()).hexdigest()
    entry = f'[[tokens]]\nname = "{name}"\nrole = "{role}"\nsha256 = "{digest}"\n'
    return token, entry
