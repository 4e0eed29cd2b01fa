"""API Gateway access for provisioning (boto3 `apigateway`): create an API key and attach it
to the tier's usage plan. An operator-side data-access module; no HTTP function uses it."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import boto3
from pydantic import SecretStr

from serverless_credits.config import Settings, get_settings
from serverless_credits.ledger.provisioning import IssuedKey, ProvisioningError, Tier

PLAN_SETTINGS = {Tier.FREE: "FREE_USAGE_PLAN_ID", Tier.PRO: "PRO_USAGE_PLAN_ID"}


class ApiGatewayKeyIssuer:
    """`ApiKeyIssuer` over API Gateway: `CreateApiKey` + `CreateUsagePlanKey`."""

    def __init__(self, client: Any, usage_plans: Mapping[Tier, str]) -> None:
        self._client = client
        self._plans = dict(usage_plans)

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, client: Any = None
    ) -> ApiGatewayKeyIssuer:
        """Usage plan ids from FREE_USAGE_PLAN_ID / PRO_USAGE_PLAN_ID (the stack's outputs)."""
        settings = settings or get_settings()
        plans = {
            tier: plan_id
            for tier, plan_id in (
                (Tier.FREE, settings.free_usage_plan_id),
                (Tier.PRO, settings.pro_usage_plan_id),
            )
            if plan_id
        }
        return cls(client or boto3.client("apigateway"), plans)

    def issue(self, *, account_id: str, tier: Tier) -> IssuedKey:
        plan_id = self._plans.get(tier)
        if not plan_id:
            raise ProvisioningError(
                f"No usage plan for tier {tier.value!r}: set {PLAN_SETTINGS[tier]} "
                "(the stack's FreeUsagePlanId / ProUsagePlanId outputs)"
            )
        created = self._client.create_api_key(
            name=f"credits-{account_id}-{uuid.uuid4().hex[:8]}",
            description=f"Serverless Credits key of {account_id} ({tier.value})",
            enabled=True,
            tags={"accountId": account_id, "tier": tier.value},
        )
        key_id = str(created["id"])
        try:
            self._client.create_usage_plan_key(usagePlanId=plan_id, keyId=key_id, keyType="API_KEY")
        except Exception:
            self.revoke(key_id)
            raise
        return IssuedKey(api_key_id=key_id, value=SecretStr(str(created["value"])))

    def revoke(self, api_key_id: str) -> None:
        self._client.delete_api_key(apiKey=api_key_id)


__all__ = ["ApiGatewayKeyIssuer"]
