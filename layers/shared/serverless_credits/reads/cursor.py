"""Opaque, tamper-evident pagination cursors for the transactions and holds routes.

A cursor names where a page ended: a ledger sequence (transactions), or another position its
route defines and `verify` checks (holds: `reads.holds`). It is `base64url(payload)` + "." +
`base64url(HMAC-SHA256)`, where the MAC also covers the account id and the query's filters
(its *scope*) without carrying them: a cursor only continues the query it came from, for the
account it was issued to. Anything else (edited, truncated, another account's, another
filter's) is rejected as a client error naming the `cursor` parameter.

The key is a Secrets Manager secret (`CursorSigningSecret` in `template.yaml`) that
`wiring.cursor_signer` reads at runtime; `CURSOR_SIGNING_KEY` stands in for it in local
development and tests (docs/security.md). Without a key the paged routes fail closed rather
than issue unsigned cursors.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass

from serverless_credits.config import Settings
from serverless_credits.domain.errors import ValidationFailed

VERSION = 1
MAX_CURSOR_LENGTH = 512
MIN_KEY_LENGTH = 16
LEDGER_SEQUENCE = re.compile(r"^[1-9][0-9]{0,11}$")  # the transactions route's position


class CursorSigningKeyMissing(RuntimeError):
    """The function has no usable `CURSOR_SIGNING_KEY`: a deployment error, not a client's."""


class InvalidCursor(ValidationFailed):
    def __init__(self) -> None:
        super().__init__(
            "Invalid cursor: pass the nextCursor of a previous page of the same query unchanged",
            {"field": "cursor"},
        )


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, repr=False)
class CursorSigner:
    """Signs and verifies cursors with one HMAC key (never shown in repr or logs)."""

    key: bytes

    @classmethod
    def from_key(cls, value: str, *, source: str = "CURSOR_SIGNING_KEY") -> CursorSigner:
        """A signer for `value` (`source` names where it came from, for the error)."""
        if len(value) < MIN_KEY_LENGTH:
            raise CursorSigningKeyMissing(
                f"{source} is missing or shorter than "
                f"{MIN_KEY_LENGTH} characters: refusing to issue or accept pagination cursors"
            )
        return cls(value.encode())

    @classmethod
    def from_settings(cls, settings: Settings) -> CursorSigner:
        """The local/test key from the settings (`CURSOR_SIGNING_KEY`)."""
        secret = settings.cursor_signing_key
        return cls.from_key(secret.get_secret_value() if secret is not None else "")

    def __repr__(self) -> str:
        return "CursorSigner(key=***)"

    def _mac(self, account_id: str, scope: str, payload: str) -> bytes:
        message = f"v{VERSION}\n{account_id}\n{scope}\n{payload}".encode()
        return hmac.new(self.key, message, hashlib.sha256).digest()

    def sign(self, *, account_id: str, scope: str, position: str) -> str:
        """A cursor continuing after `position` for this account and scope."""
        payload = _b64encode(
            json.dumps({"v": VERSION, "p": position}, separators=(",", ":")).encode()
        )
        return f"{payload}.{_b64encode(self._mac(account_id, scope, payload))}"

    def verify(
        self,
        token: str,
        *,
        account_id: str,
        scope: str,
        position: re.Pattern[str] = LEDGER_SEQUENCE,
    ) -> str:
        """The position a cursor continues after (matching `position`), or `InvalidCursor`."""
        if not token or len(token) > MAX_CURSOR_LENGTH or token.count(".") != 1:
            raise InvalidCursor()
        payload, signature = token.split(".")
        try:
            given = _b64decode(signature)
            data = json.loads(_b64decode(payload))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise InvalidCursor() from None
        if not hmac.compare_digest(given, self._mac(account_id, scope, payload)):
            raise InvalidCursor()
        if not isinstance(data, dict) or data.get("v") != VERSION:
            raise InvalidCursor()
        found = data.get("p")
        if not isinstance(found, str) or not position.fullmatch(found):
            raise InvalidCursor()
        return found


__all__ = ["LEDGER_SEQUENCE", "CursorSigner", "CursorSigningKeyMissing", "InvalidCursor"]
