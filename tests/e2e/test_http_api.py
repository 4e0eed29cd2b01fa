"""The customer HTTP API over real HTTP, through the local API Gateway stand-in."""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
import requests

from devtools import template
from devtools.local_seed import LocalAccount
from devtools.local_stack import LocalStack
from serverless_credits.domain.operations import sequence_of
from tests.e2e.support import FREE_PLAN, Api, eventually

pytestmark = pytest.mark.e2e

ROUTES = ("/v1/credits/balance", "/v1/credits/transactions", "/v1/credits/stats")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def gateway_body(response_type: str, request_id: str) -> Any:
    """What template.yaml's GatewayResponses make API Gateway answer, request id filled in."""
    responses = template.resource("CreditsApi")["Properties"]["GatewayResponses"]
    rendered = responses[response_type]["ResponseTemplates"]["application/json"].replace(
        "$context.requestId", request_id
    )
    return json.loads(rendered)


def assert_error_shape(response: requests.Response, status: int, code: str | None = None) -> Any:
    """The service's one error shape, with the request id API Gateway gave the request."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "requestId"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert UUID.match(body["requestId"])
    assert body["requestId"] == response.headers["x-amzn-RequestId"]
    if code is not None:
        assert body["error"]["code"] == code
    return body


def all_transactions(api: Api, **params: Any) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    page = api.json("/v1/credits/transactions", **params)
    entries.extend(page["data"])
    while page["hasMore"]:
        page = api.json("/v1/credits/transactions", **params, cursor=page["nextCursor"])
        entries.extend(page["data"])
    return entries


# ---------------------------------------------------------------- reads
def test_balance_is_the_sum_of_the_ledger(demo_api: Api) -> None:
    balance = demo_api.json("/v1/credits/balance")
    entries = all_transactions(demo_api, limit=100)

    assert Decimal(str(balance["balance"])) == sum(Decimal(str(e["amount"])) for e in entries)
    assert balance["available"] == balance["balance"] - balance["reserved"]
    assert balance["currency"] == "USD"
    assert set(balance) >= {"used", "total", "lowBalance", "autoReload", "lastUpdated"}


def test_transactions_page_by_cursor_and_by_offset_alike(demo_api: Api) -> None:
    by_cursor = all_transactions(demo_api, limit=4)
    by_offset: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = demo_api.json("/v1/credits/transactions", limit=4, offset=offset)
        by_offset.extend(page["data"])
        if not page["hasMore"]:
            break
        offset += 4

    ids = [entry["id"] for entry in by_cursor]
    assert len(ids) >= 14  # the seeded history: purchases, a grant, calls, a refund...
    assert len(set(ids)) == len(ids)
    assert ids == [entry["id"] for entry in by_offset]
    # Most recent first: transaction ids are txn_<sequence>_<hex>.
    assert ids == sorted(ids, key=lambda id_: sequence_of(id_) or 0, reverse=True)
    # Each entry's balanceAfter follows from the one before it.
    chronological = list(reversed(by_cursor))
    for previous, entry in itertools.pairwise(chronological):
        assert Decimal(str(entry["balanceAfter"])) == Decimal(
            str(previous["balanceAfter"])
        ) + Decimal(str(entry["amount"]))


def test_transactions_filter_by_type(demo_api: Api) -> None:
    debits = all_transactions(demo_api, type="debit", limit=3)
    assert debits
    assert {entry["type"] for entry in debits} == {"debit"}


def test_stats_count_the_seeded_calls(demo_api: Api) -> None:
    entries = all_transactions(demo_api, limit=100)
    stats = demo_api.json("/v1/credits/stats", days=7)

    charged = sum(-Decimal(str(e["amount"])) for e in entries if e["type"] == "debit")
    refunded = sum(Decimal(str(e["amount"])) for e in entries if e["type"] in ("refund", "void"))
    assert Decimal(str(stats["totalUsed"])) == charged - refunded
    assert stats["totalCalls"] == sum(1 for e in entries if e["type"] == "debit")
    assert len(stats["usage"]) == 7
    assert stats["byEndpoint"]


def test_account_summary(demo_api: Api, demo: LocalAccount) -> None:
    summary = demo_api.json("/v1/account/summary")
    balance = demo_api.json("/v1/credits/balance")

    assert summary["balance"]["balance"] == balance["balance"]
    assert summary["accountCreatedAt"]


def test_reads_consume_no_credits(demo_api: Api) -> None:
    before = demo_api.json("/v1/credits/balance")
    for route in ROUTES:
        demo_api.json(route)
    after = demo_api.json("/v1/credits/balance")
    assert after["balance"] == before["balance"]
    assert after["used"] == before["used"]


def test_the_deployed_url_shape_with_the_stage_works_too(
    stack: LocalStack, demo: LocalAccount
) -> None:
    response = requests.get(
        f"{stack.api_url}/{stack.stage}/v1/credits/balance",
        headers={"X-API-Key": demo.api_key},
        timeout=10,
    )
    assert response.status_code == 200


# ---------------------------------------------------------------- API Gateway's refusals
def test_no_key_is_403_in_the_shared_error_shape(api_for: Callable[..., Api]) -> None:
    response = api_for(None).get("/v1/credits/balance")

    body = assert_error_shape(response, 403, "INVALID_API_KEY")
    assert body == gateway_body("INVALID_API_KEY", body["requestId"])


def test_an_unknown_key_is_403(stack: LocalStack) -> None:
    response = requests.get(
        f"{stack.api_url}/v1/credits/balance", headers={"X-API-Key": "not-a-key"}, timeout=10
    )
    assert_error_shape(response, 403, "INVALID_API_KEY")


def test_an_unknown_route_is_403_missing_authentication_token(demo_api: Api) -> None:
    for response in (
        demo_api.get("/v1/credits/nothing-here"),
        demo_api.session.post(f"{demo_api.base_url}/v1/credits/balance", timeout=10),
    ):
        body = assert_error_shape(response, 403, "FORBIDDEN")
        assert body == gateway_body("MISSING_AUTHENTICATION_TOKEN", body["requestId"])


def test_over_quota_is_429_quota_exceeded(
    new_account: Callable[..., LocalAccount], api_for: Callable[..., Api]
) -> None:
    api = api_for(new_account(plan="free"))
    quota = int(FREE_PLAN["FreePlanQuotaPerDay"])
    served = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        response = api.get("/v1/credits/balance")
        if response.status_code == 429 and response.json()["error"]["code"] == "THROTTLED":
            time.sleep(0.25)  # stay under the plan's rate; throttled calls use no quota
            continue
        if response.status_code != 200:
            break
        served += 1
    body = assert_error_shape(response, 429, "QUOTA_EXCEEDED")
    assert body == gateway_body("QUOTA_EXCEEDED", body["requestId"])
    assert served == quota


def test_a_burst_past_the_plan_is_429_throttled(
    new_account: Callable[..., LocalAccount], api_for: Callable[..., Api]
) -> None:
    api = api_for(new_account(plan="free"))
    burst = int(FREE_PLAN["FreePlanBurstLimit"])
    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(lambda _: api.get("/v1/credits/balance"), range(burst + 8)))

    throttled = [r for r in responses if r.status_code == 429]
    assert throttled
    for response in throttled:
        body = assert_error_shape(response, 429)
        assert body["error"]["code"] in {"THROTTLED", "QUOTA_EXCEEDED"}
    assert any(r.json()["error"]["code"] == "THROTTLED" for r in throttled)
    assert all(r.status_code in (200, 429) for r in responses)


def test_keys_are_metered_separately(
    new_account: Callable[..., LocalAccount], api_for: Callable[..., Api]
) -> None:
    first, second = api_for(new_account(plan="free")), api_for(new_account(plan="free"))
    for _ in range(int(FREE_PLAN["FreePlanBurstLimit"])):
        first.get("/v1/credits/balance")
    assert second.get("/v1/credits/balance").status_code == 200


# ---------------------------------------------------------------- the handlers' own errors
def test_bad_parameters_get_the_shared_error_shape_naming_the_field(demo_api: Api) -> None:
    response = demo_api.get("/v1/credits/transactions", limit=0)

    body = assert_error_shape(response, response.status_code)
    assert response.status_code in (400, 422)
    assert "limit" in str(body["error"])


def test_each_account_sees_only_its_own_ledger(
    new_account: Callable[..., LocalAccount], api_for: Callable[..., Api]
) -> None:
    account = new_account(balance=Decimal(42))
    api = api_for(account)

    entries = eventually(lambda: all_transactions(api), what="the opening balance's entry")
    assert [entry["amount"] for entry in entries] == [42]
    assert api.json("/v1/credits/balance")["balance"] == 42
