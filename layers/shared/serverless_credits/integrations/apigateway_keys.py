"""API Gateway access for provisioning (boto3 `apigateway`): create an API key and attach it
to the tier's usage plan, move it to another plan, delete it. An operator-side data-access
module (the AdminFunction's); no HTTP function uses it.

The endpoint comes from boto3's own configuration: `AWS_ENDPOINT_URL_API_GATEWAY` points it at
the local stack's key API emulator (`devtools.local_apigateway`), as `AWS_ENDPOINT_URL_DYNAMODB`
points the table at DynamoDB Local."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import boto3
from botocore.exceptions import ClientError
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

    def _plan(self, tier: Tier) -> str:
        plan_id = self._plans.get(tier)
        if not plan_id:
            raise ProvisioningError(
                f"No usage plan for tier {tier.value!r}: set {PLAN_SETTINGS[tier]} "
                "(the stack's FreeUsagePlanId / ProUsagePlanId outputs)"
            )
        return plan_id

    def issue(self, *, account_id: str, tier: Tier) -> IssuedKey:
        plan_id = self._plan(tier)
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
        """Delete the key: API Gateway refuses it at once. A key already gone is no error
        (a retried revocation, or a rotation that failed half-way)."""
        try:
            self._client.delete_api_key(apiKey=api_key_id)
        except ClientError as exc:
            if _code(exc) != "NotFoundException":
                raise

    def move(self, api_key_id: str, *, from_tier: Tier, to_tier: Tier) -> None:
        """Attach the key to `to_tier`'s usage plan, then detach it from `from_tier`'s (a key
        on both plans for a moment rather than on none). Safe to repeat."""
        if from_tier == to_tier:
            return
        new_plan, old_plan = self._plan(to_tier), self._plan(from_tier)
        try:
            self._client.create_usage_plan_key(
                usagePlanId=new_plan, keyId=api_key_id, keyType="API_KEY"
            )
        except ClientError as exc:
            if _code(exc) != "ConflictException":  # already on the new plan
                raise
        try:
            self._client.delete_usage_plan_key(usagePlanId=old_plan, keyId=api_key_id)
        except ClientError as exc:
            if _code(exc) != "NotFoundException":  # already off the old plan
                raise

    def tier_of(self, api_key_id: str) -> Tier | None:
        """The tier whose usage plan the key is on (None: on none of ours, or no such key)."""
        for tier, plan_id in self._plans.items():
            pages = self._client.get_paginator("get_usage_plan_keys").paginate(usagePlanId=plan_id)
            for page in pages:
                if any(item.get("id") == api_key_id for item in page.get("items", [])):
                    return tier
        return None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


__all__ = ["ApiGatewayKeyIssuer"]
