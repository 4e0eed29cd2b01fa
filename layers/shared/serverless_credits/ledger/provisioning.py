"""Account provisioning: create the account, issue its API key on a usage-plan tier, and
record which account the key belongs to (the `APIKEY#<id>` item the HTTP API reads).

Issuing keys is behind the `ApiKeyIssuer` protocol: `apigateway_keys.ApiGatewayKeyIssuer`
talks to API Gateway; `devtools.memory_api_keys.InMemoryKeyIssuer` serves tests and the
local stack. The key's value is returned once, as a `SecretStr`, and never logged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from pydantic import SecretStr

from serverless_credits.domain.commands import CreateAccountCommand
from serverless_credits.domain.models import Account, ApiKeyMapping, utc_now
from serverless_credits.ledger.operations import Ledger


class Tier(StrEnum):
    """Usage-plan tiers (`FreeUsagePlan`, `ProUsagePlan` in template.yaml)."""

    FREE = "free"
    PRO = "pro"


class ProvisioningError(RuntimeError):
    """Provisioning cannot run as configured (e.g. no usage plan id for a tier)."""


@dataclass(frozen=True)
class IssuedKey:
    api_key_id: str
    value: SecretStr


class ApiKeyIssuer(Protocol):
    def issue(self, *, account_id: str, tier: Tier) -> IssuedKey:
        """Create an enabled API key attached to the tier's usage plan."""
        ...

    def revoke(self, api_key_id: str) -> None:
        """Delete a key (clean-up after a failed provisioning, key rotation)."""
        ...


@dataclass(frozen=True)
class ProvisionedAccount:
    account: Account
    tier: Tier
    api_key_id: str
    api_key: SecretStr


class KeyMappings(Protocol):
    def put_api_key_mapping(self, mapping: ApiKeyMapping) -> None: ...


class Provisioner:
    """Creates accounts with their keys, over a ledger and the API-key mappings."""

    def __init__(
        self,
        ledger: Ledger,
        mappings: KeyMappings,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._ledger = ledger
        self._mappings = mappings
        self._clock = clock

    def issue_api_key(self, account_id: str, tier: Tier, *, issuer: ApiKeyIssuer) -> IssuedKey:
        """Issue a key for an existing account and map it to the account."""
        self._ledger.account(account_id)  # AccountNotFound before any key exists
        key = issuer.issue(account_id=account_id, tier=tier)
        mapping = ApiKeyMapping(
            api_key_id=key.api_key_id,
            account_id=account_id,
            plan=tier.value,
            created_at=self._clock(),
        )
        try:
            self._mappings.put_api_key_mapping(mapping)
        except Exception:
            issuer.revoke(key.api_key_id)  # no key without an account behind it
            raise
        return key

    def provision_account(
        self, command: CreateAccountCommand, tier: Tier, *, issuer: ApiKeyIssuer
    ) -> ProvisionedAccount:
        """Create an account on `tier` and give it an API key on that tier's usage plan."""
        account = self._ledger.create_account(command.model_copy(update={"plan": tier.value}))
        key = self.issue_api_key(account.account_id, tier, issuer=issuer)
        return ProvisionedAccount(
            account=account, tier=tier, api_key_id=key.api_key_id, api_key=key.value
        )


__all__ = [
    "ApiKeyIssuer",
    "IssuedKey",
    "KeyMappings",
    "ProvisionedAccount",
    "Provisioner",
    "ProvisioningError",
    "Tier",
]
