"""Account provisioning: account + API key on a usage-plan tier + key -> account mapping."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import boto3
import pytest
from pydantic import SecretStr

from devtools.api_events import api_event, invoke
from devtools.memory_api_keys import InMemoryKeyIssuer
from functions.balance.app import lambda_handler
from serverless_credits import wiring
from serverless_credits.config import Settings, get_settings
from serverless_credits.domain.commands import CreateAccountCommand
from serverless_credits.domain.errors import AccountAlreadyExists, AccountNotFound
from serverless_credits.integrations.apigateway_keys import ApiGatewayKeyIssuer
from serverless_credits.ledger.provisioning import (
    IssuedKey,
    ProvisioningError,
    Tier,
)
from serverless_credits.storage.store import CreditsStore


def command(account_id: str = "acct_new", **fields: Any) -> CreateAccountCommand:
    return CreateAccountCommand(account_id=account_id, opening_balance=Decimal(25), **fields)


def test_provisioning_creates_the_account_a_key_and_the_mapping(moto_store: CreditsStore) -> None:
    issuer = InMemoryKeyIssuer()

    provisioned = wiring.provisioner().provision_account(command(), Tier.PRO, issuer=issuer)

    assert provisioned.tier is Tier.PRO
    assert provisioned.account.plan == "pro"
    assert moto_store.accounts.get("acct_new", consistent=True) is not None
    mapping = moto_store.catalog.get_api_key_mapping(provisioned.api_key_id)
    assert mapping is not None
    assert (mapping.account_id, mapping.plan) == ("acct_new", "pro")
    assert issuer.tier_of(provisioned.api_key_id) is Tier.PRO
    assert "SecretStr" in repr(provisioned.api_key) or "**" in repr(provisioned.api_key)

    # The key works end to end: API Gateway resolves the value to the key id it passes on.
    key_id = issuer.key_id_for(provisioned.api_key.get_secret_value())
    response = invoke(lambda_handler, api_event("/v1/credits/balance", api_key_id=key_id))
    assert response.status == 200
    assert response.body["balance"] == 25


def test_an_existing_account_is_not_provisioned_twice(moto_store: CreditsStore) -> None:
    issuer = InMemoryKeyIssuer()
    wiring.provisioner().provision_account(command(), Tier.FREE, issuer=issuer)
    issued: list[str] = []
    original = issuer.issue

    def spy(**kwargs: Any) -> IssuedKey:
        key = original(**kwargs)
        issued.append(key.api_key_id)
        return key

    issuer.issue = spy  # type: ignore[method-assign]
    with pytest.raises(AccountAlreadyExists):
        wiring.provisioner().provision_account(command(), Tier.PRO, issuer=issuer)
    assert issued == []


def test_a_key_is_revoked_when_its_mapping_cannot_be_stored(
    moto_store: CreditsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    issuer = InMemoryKeyIssuer()
    wiring.provisioner().provision_account(command(), Tier.FREE, issuer=issuer)

    def broken(_: Any) -> None:
        raise RuntimeError("table unavailable")

    monkeypatch.setattr(moto_store.catalog, "put_api_key_mapping", broken)
    keys: list[IssuedKey] = []
    original = issuer.issue

    def remember(**kwargs: Any) -> IssuedKey:
        keys.append(original(**kwargs))
        return keys[-1]

    issuer.issue = remember  # type: ignore[method-assign]

    with pytest.raises(RuntimeError):
        wiring.provisioner().issue_api_key("acct_new", Tier.PRO, issuer=issuer)
    assert issuer.key_id_for(keys[0].value.get_secret_value()) is None


def test_a_second_key_for_an_account(moto_store: CreditsStore) -> None:
    issuer = InMemoryKeyIssuer()
    first = wiring.provisioner().provision_account(command(), Tier.FREE, issuer=issuer)
    second = wiring.provisioner().issue_api_key("acct_new", Tier.PRO, issuer=issuer)
    assert second.api_key_id != first.api_key_id
    for key_id in (first.api_key_id, second.api_key_id):
        assert (
            invoke(lambda_handler, api_event("/v1/credits/balance", api_key_id=key_id)).status
            == 200
        )
    with pytest.raises(AccountNotFound):
        wiring.provisioner().issue_api_key("acct_missing", Tier.FREE, issuer=issuer)


def test_revoking_a_key_in_memory() -> None:
    issuer = InMemoryKeyIssuer()
    key = issuer.issue(account_id="a", tier=Tier.FREE)
    assert issuer.key_id_for(key.value.get_secret_value()) == key.api_key_id
    issuer.revoke(key.api_key_id)
    assert issuer.key_id_for(key.value.get_secret_value()) is None
    assert issuer.key_id_for(None) is None
    assert issuer.tier_of(key.api_key_id) is None


# ---------------------------------------------------------------- API Gateway (moto)
@pytest.fixture
def plans(moto_store: CreditsStore) -> dict[Tier, str]:
    """A REST API stage with a free and a pro usage plan, as template.yaml deploys them."""
    client = boto3.client("apigateway", region_name="us-east-1")
    api = client.create_rest_api(name="credits")
    root = client.get_resources(restApiId=api["id"])["items"][0]["id"]
    client.put_method(
        restApiId=api["id"],
        resourceId=root,
        httpMethod="GET",
        authorizationType="NONE",
        apiKeyRequired=True,
    )
    client.put_integration(restApiId=api["id"], resourceId=root, httpMethod="GET", type="MOCK")
    client.create_deployment(restApiId=api["id"], stageName="dev")
    stage = [{"apiId": api["id"], "stage": "dev"}]
    return {
        Tier.FREE: client.create_usage_plan(
            name="free", apiStages=stage, throttle={"rateLimit": 5, "burstLimit": 10}
        )["id"],
        Tier.PRO: client.create_usage_plan(
            name="pro", apiStages=stage, throttle={"rateLimit": 100, "burstLimit": 200}
        )["id"],
    }


def test_the_api_gateway_issuer_attaches_the_key_to_the_tiers_plan(
    moto_store: CreditsStore, plans: dict[Tier, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FREE_USAGE_PLAN_ID", plans[Tier.FREE])
    monkeypatch.setenv("PRO_USAGE_PLAN_ID", plans[Tier.PRO])
    get_settings.cache_clear()
    issuer = ApiGatewayKeyIssuer.from_settings()

    provisioned = wiring.provisioner().provision_account(
        command("acct_aws"), Tier.PRO, issuer=issuer
    )

    client = boto3.client("apigateway", region_name="us-east-1")
    key = client.get_api_key(apiKey=provisioned.api_key_id, includeValue=True)
    assert key["enabled"] is True
    assert key["value"] == provisioned.api_key.get_secret_value()
    assert key["tags"] == {"accountId": "acct_aws", "tier": "pro"}
    pro_keys = [k["id"] for k in client.get_usage_plan_keys(usagePlanId=plans[Tier.PRO])["items"]]
    free_keys = [k["id"] for k in client.get_usage_plan_keys(usagePlanId=plans[Tier.FREE])["items"]]
    assert pro_keys == [provisioned.api_key_id]
    assert free_keys == []
    mapping = moto_store.catalog.get_api_key_mapping(provisioned.api_key_id)
    assert mapping is not None
    assert mapping.account_id == "acct_aws"


def test_a_tier_without_a_plan_id_is_a_clear_error(moto_store: CreditsStore) -> None:
    issuer = ApiGatewayKeyIssuer.from_settings(
        Settings.model_validate({"TABLE_NAME": "credits", "FREE_USAGE_PLAN_ID": "plan1"}),
        client=boto3.client("apigateway", region_name="us-east-1"),
    )
    with pytest.raises(ProvisioningError, match="PRO_USAGE_PLAN_ID"):
        issuer.issue(account_id="acct", tier=Tier.PRO)


def test_a_key_that_cannot_join_its_plan_is_deleted(
    moto_store: CreditsStore, plans: dict[Tier, str]
) -> None:
    client = boto3.client("apigateway", region_name="us-east-1")

    class PlanRefuses:
        def __getattr__(self, name: str) -> Any:
            return getattr(client, name)

        def create_usage_plan_key(self, **_: Any) -> Any:
            raise client.exceptions.NotFoundException(
                {"Error": {"Code": "NotFoundException", "Message": "Invalid Usage Plan"}},
                "CreateUsagePlanKey",
            )

    issuer = ApiGatewayKeyIssuer(PlanRefuses(), plans)
    with pytest.raises(client.exceptions.NotFoundException):
        issuer.issue(account_id="acct", tier=Tier.FREE)
    assert client.get_api_keys()["items"] == []


def test_issued_key_values_are_secret() -> None:
    key = IssuedKey("id", SecretStr("value-123"))
    assert "value-123" not in repr(key)
