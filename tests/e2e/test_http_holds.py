"""Holds as a customer sees them, over real HTTP on the local stack: a service reserves
through the Debit function (the Lambda Invoke API), the customer lists the open holds
(`GET /v1/credits/holds`, API key, cursor pages) and the balance's `reserved`, and a
captured or released hold leaves the list."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
import schemathesis
from schemathesis.specs.openapi.checks import response_schema_conformance

from devtools import template
from devtools.local_seed import LocalAccount
from tests.e2e.support import Api, eventually

if TYPE_CHECKING:
    from mypy_boto3_lambda.client import LambdaClient

pytestmark = pytest.mark.e2e

HOLDS = "/v1/credits/holds"
DOCUMENT = template.PROJECT_ROOT / "docs" / "openapi.json"


def debit_function(lambda_client: LambdaClient, **request: Any) -> dict[str, Any]:
    """One Debit function call that must succeed: its result."""
    response = lambda_client.invoke(
        FunctionName="DebitFunction", Payload=json.dumps(request).encode()
    )
    body: dict[str, Any] = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, body
    assert "error" not in body, body
    return body


def reserve(lambda_client: LambdaClient, account_id: str, amount: int, **fields: Any) -> str:
    result = debit_function(
        lambda_client,
        operation="reserve",
        accountId=account_id,
        amount=amount,
        idempotencyKey=f"e2e-hold-{uuid.uuid4()}",
        **fields,
    )
    hold_id: str = result["holdId"]
    return hold_id


def held(api: Api) -> tuple[Decimal, Decimal, Decimal]:
    """(balance, reserved, available) from the balance route."""
    balance = api.json("/v1/credits/balance")
    return (
        Decimal(str(balance["balance"])),
        Decimal(str(balance["reserved"])),
        Decimal(str(balance["available"])),
    )


def test_a_reserved_hold_is_listed_paged_and_gone_after_its_capture(
    lambda_client: LambdaClient,
    new_account: Callable[..., LocalAccount],
    api_for: Callable[[LocalAccount | None], Api],
) -> None:
    account = new_account(plan="pro", balance=Decimal(100))
    api = api_for(account)
    first = reserve(lambda_client, account.account_id, 30, description="a long call")
    second = reserve(lambda_client, account.account_id, 20)
    third = reserve(lambda_client, account.account_id, 5, expiresIn=3600)

    # At once: the account item lists every open hold (descriptions follow from the stream).
    assert held(api) == (Decimal(100), Decimal(55), Decimal(45))
    listed = api.json(HOLDS)
    assert (listed["hasMore"], listed["nextCursor"]) == (False, None)
    assert sorted(hold["holdId"] for hold in listed["data"]) == sorted([first, second, third])
    assert {hold["holdId"]: hold["amount"] for hold in listed["data"]} == {
        first: 30,
        second: 20,
        third: 5,
    }
    assert not any(hold["expired"] for hold in listed["data"])
    described = eventually(
        lambda: [h for h in api.json(HOLDS)["data"] if h["description"] == "a long call"],
        what="the hold's description from the stream",
    )
    assert [hold["holdId"] for hold in described] == [first]
    # A page with holds in it keeps the committed document's schema (the fuzz test's account
    # has none to show).
    operation = schemathesis.openapi.from_path(DOCUMENT)[HOLDS]["GET"]
    operation.Case(query={"limit": 3}).call_and_validate(
        base_url=api.base_url,
        headers={"X-API-Key": account.api_key},
        checks=[response_schema_conformance],
    )

    # Cursor pages: two, then one, together every hold once, in the order of one page.
    page = api.json(HOLDS, limit=2)
    assert page["hasMore"] is True
    rest = api.json(HOLDS, limit=2, cursor=page["nextCursor"])
    assert (rest["hasMore"], rest["nextCursor"]) == (False, None)
    assert [h["holdId"] for h in page["data"] + rest["data"]] == [
        h["holdId"] for h in api.json(HOLDS)["data"]
    ]

    captured = debit_function(
        lambda_client,
        operation="capture",
        accountId=account.account_id,
        holdId=first,
        amount=12,
        idempotencyKey=f"e2e-capture-{uuid.uuid4()}",
    )
    assert (captured["amount"], captured["released"], captured["available"]) == (12, 18, 63)
    debit_function(
        lambda_client,
        operation="release",
        accountId=account.account_id,
        holdId=third,
        idempotencyKey=f"e2e-release-{uuid.uuid4()}",
    )

    assert [hold["holdId"] for hold in api.json(HOLDS)["data"]] == [second]
    assert held(api) == (Decimal(88), Decimal(20), Decimal(68))


def test_a_holds_cursor_is_refused_to_another_account(
    lambda_client: LambdaClient,
    new_account: Callable[..., LocalAccount],
    api_for: Callable[[LocalAccount | None], Api],
) -> None:
    owner, stranger = new_account(plan="pro"), new_account(plan="pro")
    for amount in (1, 2):
        reserve(lambda_client, owner.account_id, amount)
    cursor = api_for(owner).json(HOLDS, limit=1)["nextCursor"]

    response = api_for(stranger).get(HOLDS, cursor=cursor)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"]["fields"][0]["field"] == "cursor"
    assert api_for(stranger).json(HOLDS)["data"] == []


def test_the_holds_route_needs_an_api_key(api_for: Callable[[LocalAccount | None], Api]) -> None:
    response = api_for(None).get(HOLDS)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "INVALID_API_KEY"
