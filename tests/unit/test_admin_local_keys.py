"""API keys on the local stack behave like API Gateway's: the key API emulator
(`devtools.local_apigateway`) serves the calls `ApiGatewayKeyIssuer` makes, over the key
store the local gateway authenticates with; and the AdminFunction, invoked through the
stack's Lambda endpoint as `credits-admin --local` does, creates, rotates and revokes keys
that work, or stop working, on the running gateway at once."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from werkzeug.serving import make_server

from devtools import dynamodb_local
from devtools.local_apigateway import KeyApi, with_key_api
from devtools.local_stack import LocalStack, StackSettings
from devtools.memory_api_keys import InMemoryKeyIssuer
from serverless_credits.integrations.apigateway_keys import ApiGatewayKeyIssuer
from serverless_credits.ledger.provisioning import Tier

PLANS = {"FreeUsagePlan": "free", "ProUsagePlan": "pro"}


def local_client(service: str, endpoint: str, **options: Any) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        **options,
    )


@pytest.fixture
def key_api() -> Iterator[tuple[InMemoryKeyIssuer, Any]]:
    """The emulator on a free port, and a boto3 `apigateway` client pointed at it."""
    store = InMemoryKeyIssuer(prefix="")
    fallback_calls: list[str] = []

    def fallback(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        fallback_calls.append(environ["PATH_INFO"])
        start_response("204 No Content", [])
        return []

    server = make_server(
        "127.0.0.1", 0, with_key_api(fallback, KeyApi(store, PLANS)), threaded=True
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = local_client("apigateway", f"http://127.0.0.1:{server.server_port}")
    try:
        yield store, client
    finally:
        server.shutdown()
        server.server_close()


def test_the_issuer_against_the_emulator(key_api: tuple[InMemoryKeyIssuer, Any]) -> None:
    store, client = key_api
    issuer = ApiGatewayKeyIssuer(client, {Tier.FREE: "FreeUsagePlan", Tier.PRO: "ProUsagePlan"})

    key = issuer.issue(account_id="acct_1", tier=Tier.FREE)

    value = key.value.get_secret_value()
    assert store.key_id_for(value) == key.api_key_id
    assert store.tier_of(key.api_key_id) == Tier.FREE
    assert issuer.tier_of(key.api_key_id) is Tier.FREE
    listed = client.get_api_keys(includeValues=True)["items"]
    assert [(k["id"], k["value"], k["tags"]) for k in listed] == [
        (key.api_key_id, value, {"accountId": "acct_1", "tier": "free"})
    ]
    assert "value" not in client.get_api_key(apiKey=key.api_key_id)

    issuer.move(key.api_key_id, from_tier=Tier.FREE, to_tier=Tier.PRO)
    issuer.move(key.api_key_id, from_tier=Tier.FREE, to_tier=Tier.PRO)  # safe to repeat

    assert store.tier_of(key.api_key_id) == Tier.PRO
    assert [k["id"] for k in client.get_usage_plan_keys(usagePlanId="ProUsagePlan")["items"]] == [
        key.api_key_id
    ]
    assert client.get_usage_plan_keys(usagePlanId="FreeUsagePlan")["items"] == []

    issuer.revoke(key.api_key_id)
    issuer.revoke(key.api_key_id)  # already gone: no error

    assert store.key_id_for(value) is None
    with pytest.raises(ClientError) as missing:
        client.get_api_key(apiKey=key.api_key_id)
    assert missing.value.response["Error"]["Code"] == "NotFoundException"


def test_the_emulators_refusals_are_api_gateways(key_api: tuple[InMemoryKeyIssuer, Any]) -> None:
    store, client = key_api
    key = client.create_api_key(name="k", enabled=True)

    def code(call: Any, **arguments: Any) -> str:
        with pytest.raises(ClientError) as refused:
            call(**arguments)
        return str(refused.value.response["Error"]["Code"])

    client.create_usage_plan_key(usagePlanId="FreeUsagePlan", keyId=key["id"], keyType="API_KEY")
    assert (
        code(
            client.create_usage_plan_key,
            usagePlanId="FreeUsagePlan",
            keyId=key["id"],
            keyType="API_KEY",
        )
        == "ConflictException"
    )
    assert (
        code(client.create_usage_plan_key, usagePlanId="nope", keyId=key["id"], keyType="API_KEY")
        == "NotFoundException"
    )
    assert (
        code(
            client.create_usage_plan_key,
            usagePlanId="ProUsagePlan",
            keyId="nope",
            keyType="API_KEY",
        )
        == "NotFoundException"
    )
    assert (
        code(client.delete_usage_plan_key, usagePlanId="ProUsagePlan", keyId=key["id"])
        == "NotFoundException"
    )
    assert code(client.delete_api_key, apiKey="nope") == "NotFoundException"
    disabled = client.create_api_key(name="off", enabled=False)
    assert store.key_id_for(disabled["value"]) is None  # a disabled key is refused


# ---------------------------------------------------------------- the whole local stack
@pytest.fixture(scope="module")
def stack(
    dynamodb_local_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    settings = StackSettings(
        api_port=0,
        lambda_port=0,
        dynamodb_endpoint=dynamodb_local_endpoint,
        table_name=f"credits-admin-{uuid.uuid4().hex[:8]}",
        state_file=tmp_path_factory.mktemp("stack") / "stack.json",
    )
    with LocalStack(settings) as running:
        yield running


def admin(stack: LocalStack, operation: str, **fields: Any) -> dict[str, Any]:
    """Invoke the AdminFunction over the stack's Lambda endpoint, as another process would."""
    client = local_client(
        "lambda",
        stack.lambda_endpoint,
        config=Config(retries={"total_max_attempts": 1}, read_timeout=30),
    )
    response = client.invoke(
        FunctionName="AdminFunction",
        Payload=json.dumps({"operation": operation, "actor": "tester@local", **fields}),
    )
    assert "FunctionError" not in response, response["Payload"].read()
    result: dict[str, Any] = json.loads(response["Payload"].read())
    return result


def status(stack: LocalStack, key: str | None) -> int:
    headers = {"x-api-key": key} if key else {}
    return requests.get(
        f"{stack.api_url}/v1/credits/balance", headers=headers, timeout=10
    ).status_code


def test_keys_made_through_the_admin_function_work_on_the_running_gateway_at_once(
    stack: LocalStack,
) -> None:
    created = admin(stack, "accounts.create", name="Local Co", plan="free", credits=10)
    account = created["accountId"]

    assert status(stack, created["apiKey"]) == 200
    assert stack.keys.tier_of(created["apiKeyId"]) == Tier.FREE

    second = admin(stack, "keys.create", accountId=account)
    assert status(stack, second["apiKey"]) == 200

    rotated = admin(stack, "keys.rotate", accountId=account)

    assert set(rotated["revoked"]) == {created["apiKeyId"], second["apiKeyId"]}
    assert status(stack, created["apiKey"]) == 403
    assert status(stack, second["apiKey"]) == 403
    assert status(stack, rotated["apiKey"]) == 200

    moved = admin(stack, "accounts.set", accountId=account, plan="pro")
    assert moved["account"]["plan"] == "pro"
    assert stack.keys.tier_of(rotated["apiKeyId"]) == Tier.PRO
    assert status(stack, rotated["apiKey"]) == 200

    revoked = admin(stack, "keys.revoke", accountId=account, apiKeyId=rotated["apiKeyId"])

    assert revoked["revoked"] is True
    assert status(stack, rotated["apiKey"]) == 403
    assert admin(stack, "keys.list", accountId=account) == {"keys": []}


def test_the_demo_key_is_listed_and_the_stack_file_names_the_key_endpoint(
    stack: LocalStack,
) -> None:
    assert stack.demo is not None
    listed = admin(stack, "keys.list", accountId=stack.demo.account_id)["keys"]
    assert [k["apiKeyId"] for k in listed] == [stack.demo.api_key_id]
    assert stack.settings.state_file is not None
    described = json.loads(Path(stack.settings.state_file).read_text())
    assert described["apigatewayEndpoint"] == stack.lambda_endpoint
    assert "AdminFunction" in described["functions"]
    assert dynamodb_local.LOCAL_CREDENTIALS  # the stack ran on DynamoDB Local
