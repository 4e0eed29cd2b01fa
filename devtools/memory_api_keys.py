"""An in-memory `ApiKeyIssuer` for tests and the local stack (no API Gateway).

It plays API Gateway's part too: `key_id_for(value)` tells which key id an `X-API-Key`
header value belongs to, and `tier_of(key_id)` which usage plan it was put on. The local
stack serves it over API Gateway's own key API as well (`devtools.local_apigateway`), so
the AdminFunction's `ApiGatewayKeyIssuer` creates, moves and deletes keys in this very store:
a key created, rotated or revoked by `credits-admin --local` works, or stops working, on the
running gateway at once.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import SecretStr

from serverless_credits.ledger.provisioning import IssuedKey, Tier


@dataclass
class StoredKey:
    """One API key as API Gateway keeps it, with the usage plans (tiers) it is on."""

    id: str
    value: str
    name: str
    description: str = ""
    enabled: bool = True
    tags: dict[str, str] = field(default_factory=dict)
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    tiers: list[Tier] = field(default_factory=list)  # in the order they were attached


class InMemoryKeyIssuer:
    def __init__(self, prefix: str = "local") -> None:
        self._prefix = prefix
        self._lock = threading.Lock()
        self._keys: dict[str, StoredKey] = {}
        self._by_value: dict[str, str] = {}

    # ------------------------------------------------------------ ApiKeyIssuer
    def issue(self, *, account_id: str, tier: Tier) -> IssuedKey:
        key = self.create_key(name=f"credits-{account_id}", tags={"accountId": account_id})
        self.attach(key.id, tier)
        return IssuedKey(api_key_id=key.id, value=SecretStr(key.value))

    def revoke(self, api_key_id: str) -> None:
        self.delete(api_key_id)

    # ------------------------------------------------------------ the gateway's view
    def key_id_for(self, value: str | None) -> str | None:
        """The key id of an enabled key value (what API Gateway puts in `apiKeyId`)."""
        if not value:
            return None
        with self._lock:
            key_id = self._by_value.get(value)
            key = self._keys.get(key_id) if key_id else None
            return key.id if key is not None and key.enabled else None

    def tier_of(self, api_key_id: str) -> Tier | None:
        """The usage plan the key is on (the latest attached, while a move is under way)."""
        with self._lock:
            key = self._keys.get(api_key_id)
            return key.tiers[-1] if key is not None and key.tiers else None

    # ------------------------------------------------------------ API Gateway's key API
    def create_key(
        self,
        *,
        name: str,
        description: str = "",
        enabled: bool = True,
        value: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> StoredKey:
        key = StoredKey(
            id=f"{self._prefix}{secrets.token_hex(5)}",
            value=value or secrets.token_urlsafe(30),
            name=name,
            description=description,
            enabled=enabled,
            tags=dict(tags or {}),
        )
        with self._lock:
            if key.value in self._by_value:
                raise ValueError("an API key with this value exists")
            self._keys[key.id] = key
            self._by_value[key.value] = key.id
        return key

    def get_key(self, api_key_id: str) -> StoredKey | None:
        with self._lock:
            return self._keys.get(api_key_id)

    def stored(self) -> list[StoredKey]:
        """Every key, oldest first."""
        with self._lock:
            return sorted(self._keys.values(), key=lambda key: (key.created, key.id))

    def delete(self, api_key_id: str) -> bool:
        """Delete a key (and take it off every plan); False when there was none."""
        with self._lock:
            key = self._keys.pop(api_key_id, None)
            if key is None:
                return False
            self._by_value.pop(key.value, None)
            return True

    def attach(self, api_key_id: str, tier: Tier) -> bool:
        """Put the key on a tier's usage plan; False when it is on it already."""
        with self._lock:
            key = self._keys[api_key_id]
            if tier in key.tiers:
                return False
            key.tiers.append(tier)
            return True

    def detach(self, api_key_id: str, tier: Tier) -> bool:
        """Take the key off a tier's usage plan; False when it was not on it."""
        with self._lock:
            key = self._keys.get(api_key_id)
            if key is None or tier not in key.tiers:
                return False
            key.tiers.remove(tier)
            return True

    def keys_on(self, tier: Tier) -> list[StoredKey]:
        with self._lock:
            return [key for key in self._keys.values() if tier in key.tiers]
