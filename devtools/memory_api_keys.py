"""An in-memory `ApiKeyIssuer` for tests and the local stack (no API Gateway).

It plays API Gateway's part too: `key_id_for(value)` tells which key id an `X-API-Key`
header value belongs to, and `tier_of(key_id)` which usage plan it was put on.
"""

from __future__ import annotations

import secrets
import threading

from pydantic import SecretStr

from serverless_credits.ledger.provisioning import IssuedKey, Tier


class InMemoryKeyIssuer:
    def __init__(self, prefix: str = "local") -> None:
        self._prefix = prefix
        self._lock = threading.Lock()
        self._by_value: dict[str, str] = {}
        self._tiers: dict[str, Tier] = {}
        self._accounts: dict[str, str] = {}

    def issue(self, *, account_id: str, tier: Tier) -> IssuedKey:
        key_id = f"{self._prefix}{secrets.token_hex(5)}"
        value = secrets.token_urlsafe(30)
        with self._lock:
            self._by_value[value] = key_id
            self._tiers[key_id] = tier
            self._accounts[key_id] = account_id
        return IssuedKey(api_key_id=key_id, value=SecretStr(value))

    def revoke(self, api_key_id: str) -> None:
        with self._lock:
            self._by_value = {v: k for v, k in self._by_value.items() if k != api_key_id}
            self._tiers.pop(api_key_id, None)
            self._accounts.pop(api_key_id, None)

    def key_id_for(self, value: str | None) -> str | None:
        """The key id of an enabled key value (what API Gateway puts in `apiKeyId`)."""
        if not value:
            return None
        with self._lock:
            return self._by_value.get(value)

    def tier_of(self, api_key_id: str) -> Tier | None:
        with self._lock:
            return self._tiers.get(api_key_id)
