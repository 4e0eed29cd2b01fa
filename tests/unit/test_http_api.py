"""What every customer HTTP route shares: the account from the API key, one error shape,
the request id, no 500 for client input, and the template's gateway responses and usage
plans."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools import template
from devtools.api_events import ApiAccount, api_event, invoke, load_event, open_account
from functions.account_summary import app as summary_app
from functions.balance import app as balance_app
from functions.stats import app as stats_app
from functions.transactions import app as transactions_app
from serverless_credits import wiring
from serverless_credits.domain.commands import DebitCommand
from serverless_credits.domain.errors import ApiKeyNotRecognised, ServiceBusy, StorageError
from serverless_credits.domain.models import ApiKeyMapping, utc_now
from serverless_credits.ledger.provisioning import Tier
from serverless_credits.reads import queries
from serverless_credits.storage.store import CreditsStore
from serverless_credits.transport import http_api

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]

ROUTES: dict[str, Handler] = {
    "/v1/credits/balance": balance_app.lambda_handler,
    "/v1/credits/balances": balance_app.lambda_handler,
    "/v1/credits/holds": balance_app.lambda_handler,
    "/v1/credits/transactions": transactions_app.lambda_handler,
    "/v1/credits/stats": stats_app.lambda_handler,
    "/v1/account/summary": summary_app.lambda_handler,
}
ERROR_CODE = re.compile(r"^[A-Z][A-Z_]+$")


def assert_error_shape(body: Any, request_id: str | None = None) -> None:
    assert set(body) == {"error", "requestId"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert ERROR_CODE.match(body["error"]["code"])
    assert isinstance(body["error"]["message"], str)
    if request_id is not None:
        assert body["requestId"] == request_id


@pytest.fixture
def owner(moto_store: CreditsStore) -> ApiAccount:
    account = open_account("acct_owner", opening_balance=100)
    wiring.ledger().debit(
        DebitCommand(account_id="acct_owner", idempotency_key="d1", action="sms", endpoint="/x")
    )
    return account


# ---------------------------------------------------------------- the template
def test_every_route_in_the_template_has_a_handler_here_and_an_api_key_requirement() -> None:
    api = template.resource("CreditsApi")["Properties"]
    assert api["Auth"]["ApiKeyRequired"] is True
    routed = {
        event["Properties"]["Path"]
        for spec in template.functions().values()
        for event in spec.events.values()
        if event.get("Type") == "Api"
    }
    assert routed == set(ROUTES)


def test_gateway_responses_use_the_one_error_shape() -> None:
    responses = template.resource("CreditsApi")["Properties"]["GatewayResponses"]
    expected_status = {
        "MISSING_AUTHENTICATION_TOKEN": 403,
        "INVALID_API_KEY": 403,
        "ACCESS_DENIED": 403,
        "THROTTLED": 429,
        "QUOTA_EXCEEDED": 429,
    }
    assert set(expected_status) | {"DEFAULT_4XX", "DEFAULT_5XX"} <= set(responses)
    for name, response in responses.items():
        text = response["ResponseTemplates"]["application/json"]
        # What API Gateway substitutes: the request id, and a message already JSON-quoted.
        rendered = text.replace("$context.requestId", "req-1").replace(
            "$context.error.messageString", json.dumps('Forbidden "quoted"')
        )
        body = json.loads(rendered)
        assert_error_shape(body, "req-1")
        if name in expected_status:
            assert int(response["StatusCode"]) == expected_status[name]
    assert (
        json.loads(
            responses["THROTTLED"]["ResponseTemplates"]["application/json"].replace(
                "$context.requestId", "r"
            )
        )["error"]["code"]
        == "THROTTLED"
    )


def test_the_template_offers_at_least_two_usage_plan_tiers_matching_the_provisioning_tiers() -> (
    None
):
    resources = template.load_template()["Resources"]
    plans = {
        logical_id: resource["Properties"]
        for logical_id, resource in resources.items()
        if resource["Type"] == "AWS::ApiGateway::UsagePlan"
    }
    assert len(plans) >= 2
    for properties in plans.values():
        assert properties["ApiStages"][0]["ApiId"] == {"Ref": "CreditsApi"}
        assert properties["Throttle"]["RateLimit"]
        assert properties["Quota"]["Limit"]
    outputs = template.load_template()["Outputs"]
    for tier in Tier:
        logical_id = f"{tier.value.capitalize()}UsagePlan"
        assert logical_id in plans
        assert outputs[f"{logical_id}Id"]["Value"] == {"Ref": logical_id}


# ---------------------------------------------------------------- API key -> account
@pytest.mark.parametrize("path", sorted(ROUTES))
def test_a_key_with_no_account_gets_403_in_the_error_shape(
    moto_store: CreditsStore, path: str
) -> None:
    response = invoke(
        ROUTES[path], api_event(path, {"limit": "0"}, api_key_id="unknown-key", request_id="rq-1")
    )

    assert response.status == 403
    assert_error_shape(response.body, "rq-1")
    assert response.body["error"]["code"] == "FORBIDDEN"
    assert response.headers["X-Request-Id"] == "rq-1"


@pytest.mark.parametrize("api_key_id", [None, "", "x" * 300, "bad key/../", 42])
def test_a_missing_or_malformed_key_id_is_refused_without_a_lookup(
    moto_store: CreditsStore, api_key_id: Any
) -> None:
    event = api_event("/v1/credits/balance", api_key_id=None)
    event["requestContext"]["identity"]["apiKeyId"] = api_key_id
    response = invoke(balance_app.lambda_handler, event)
    assert response.status == 403
    assert_error_shape(response.body)


def test_an_event_without_request_context_is_refused_with_a_request_id(
    moto_store: CreditsStore,
) -> None:
    event = api_event("/v1/credits/balance", api_key_id="k")
    del event["requestContext"]
    response = invoke(balance_app.lambda_handler, event)
    assert response.status == 403
    assert response.headers["X-Request-Id"]
    assert response.body["requestId"] == response.headers["X-Request-Id"]


def test_the_account_comes_from_the_key_and_never_from_the_request(
    moto_store: CreditsStore, owner: ApiAccount
) -> None:
    open_account("acct_other", opening_balance=999)
    event = api_event(
        "/v1/credits/balance",
        {"accountId": "acct_other", "account_id": "acct_other"},
        api_key_id=owner.api_key_id,
        headers={"X-Account-Id": "acct_other"},
        body=json.dumps({"accountId": "acct_other"}),
    )
    event["pathParameters"] = {"accountId": "acct_other"}

    response = invoke(balance_app.lambda_handler, event)

    assert response.status == 200
    assert response.body["balance"] == 99


def test_the_key_mapping_is_cached_briefly() -> None:
    class CountingStore:
        def __init__(self) -> None:
            self.mapping: ApiKeyMapping | None = ApiKeyMapping(
                api_key_id="k1", account_id="acct_1", plan="free", created_at=utc_now()
            )
            self.reads = 0

        def get_api_key_mapping(self, api_key_id: str) -> ApiKeyMapping | None:
            self.reads += 1
            return self.mapping

    now = [100.0]
    store = CountingStore()
    directory = http_api.ApiKeyDirectory(
        SimpleNamespace(catalog=store),  # type: ignore[arg-type]
        ttl_seconds=60,
        monotonic=lambda: now[0],
    )

    assert directory.account_for("k1") == "acct_1"
    assert directory.account_for("k1") == "acct_1"
    assert store.reads == 1
    store.mapping = None  # the key was unlinked: still served until the entry expires
    now[0] += 59
    assert directory.account_for("k1") == "acct_1"
    now[0] += 2
    with pytest.raises(ApiKeyNotRecognised):
        directory.account_for("k1")
    with pytest.raises(ApiKeyNotRecognised):
        directory.account_for("k1")
    assert store.reads == 3  # misses are not cached


def test_the_key_cache_is_bounded() -> None:
    class Store:
        def get_api_key_mapping(self, api_key_id: str) -> ApiKeyMapping:
            return ApiKeyMapping(
                api_key_id=api_key_id,
                account_id=f"acct_{api_key_id}",
                plan="free",
                created_at=utc_now(),
            )

    directory = http_api.ApiKeyDirectory(
        SimpleNamespace(catalog=Store()),  # type: ignore[arg-type]
        ttl_seconds=60,
        max_entries=3,
    )
    for number in range(10):
        assert directory.account_for(f"k{number}") == f"acct_k{number}"
    assert len(directory._cache) == 3
    directory.forget("k9")
    assert len(directory._cache) == 2


# ---------------------------------------------------------------- responses
@pytest.mark.parametrize("path", sorted(ROUTES))
def test_every_response_carries_the_request_id_header(
    moto_store: CreditsStore, owner: ApiAccount, path: str
) -> None:
    ok = invoke(ROUTES[path], api_event(path, api_key_id=owner.api_key_id, request_id="ok-1"))
    bad = invoke(
        ROUTES[path],
        api_event(
            path, {"limit": "0", "days": "0"}, api_key_id=owner.api_key_id, request_id="bad-1"
        ),
    )

    assert ok.status == 200
    assert ok.headers["X-Request-Id"] == "ok-1"
    assert ok.headers["Content-Type"] == "application/json"
    assert ok.headers["Cache-Control"] == "no-store"
    if bad.status != 200:  # balance and summary take no parameters
        assert bad.headers["X-Request-Id"] == "bad-1"
        assert_error_shape(bad.body, "bad-1")


def test_an_unknown_route_is_a_404_in_the_error_shape(
    moto_store: CreditsStore, owner: ApiAccount
) -> None:
    response = invoke(
        balance_app.lambda_handler,
        api_event("/v1/credits/nope", api_key_id=owner.api_key_id, request_id="r404"),
    )
    assert response.status == 404
    assert_error_shape(response.body, "r404")
    post = invoke(
        balance_app.lambda_handler,
        api_event("/v1/credits/balance", method="POST", api_key_id=owner.api_key_id),
    )
    assert post.status == 404


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        (RuntimeError("boom: /var/task/secret.py line 3 password=hunter2"), 500, "INTERNAL_ERROR"),
        (
            StorageError("get_item failed: ResourceNotFoundException table secret-table"),
            500,
            "INTERNAL_ERROR",
        ),
        (ServiceBusy("gave up after 40 attempts"), 503, "SERVICE_BUSY"),
    ],
)
def test_unexpected_failures_are_logged_and_answered_without_detail(
    owner: ApiAccount,
    monkeypatch: pytest.MonkeyPatch,
    failure: Exception,
    status: int,
    code: str,
) -> None:
    def explode(*_: Any, **__: Any) -> Any:
        raise failure

    logged: list[str] = []
    monkeypatch.setattr(queries, "balance", explode)
    monkeypatch.setattr(http_api.logger, "exception", lambda message, **_: logged.append(message))
    response = invoke(
        balance_app.lambda_handler,
        api_event("/v1/credits/balance", api_key_id=owner.api_key_id, request_id="r500"),
    )

    assert response.status == status
    assert_error_shape(response.body, "r500")
    assert response.body["error"]["code"] == code
    assert response.body["error"]["details"] == {}
    text = json.dumps(response.body)
    for secret in ("secret", "hunter2", "/var/task", "attempts", "Exception"):
        assert secret not in text
    assert logged == (["unhandled error"] if status == 500 else [])


def test_a_failing_key_lookup_is_a_500_without_detail(
    moto_store: CreditsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any) -> Any:
        raise StorageError("get_item failed: AccessDeniedException arn:aws:dynamodb:secret")

    monkeypatch.setattr(moto_store.catalog, "get_api_key_mapping", broken)
    response = invoke(balance_app.lambda_handler, api_event("/v1/credits/balance", api_key_id="k"))
    assert response.status == 500
    assert response.body["error"] == {
        "code": "INTERNAL_ERROR",
        "message": "Internal error",
        "details": {},
    }


def test_a_missing_account_behind_a_key_is_404(moto_store: CreditsStore) -> None:
    moto_store.catalog.put_api_key_mapping(
        ApiKeyMapping(
            api_key_id="orphan", account_id="acct_gone", plan="free", created_at=utc_now()
        )
    )
    for path in ("/v1/credits/balance", "/v1/credits/stats", "/v1/account/summary"):
        response = invoke(ROUTES[path], api_event(path, api_key_id="orphan"))
        assert response.status == 404
        assert response.body["error"]["code"] == "ACCOUNT_NOT_FOUND"


def test_reading_consumes_no_credits(moto_store: CreditsStore, owner: ApiAccount) -> None:
    before = moto_store.accounts.get("acct_owner", consistent=True)
    for path, handler in ROUTES.items():
        assert invoke(handler, api_event(path, api_key_id=owner.api_key_id)).status == 200
    after = moto_store.accounts.get("acct_owner", consistent=True)
    assert before == after


# ---------------------------------------------------------------- no 500 for any input
QUERY_NAMES = st.sampled_from(
    [
        "limit",
        "offset",
        "cursor",
        "type",
        "from",
        "to",
        "days",
        "startDate",
        "endDate",
        "period",
        "x",
    ]
)
QUERY_VALUES = st.one_of(
    st.text(max_size=40),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.sampled_from(
        [
            "2025-02-30",
            "9999-12-31T23:59:59-05:00",
            "0001-01-01T00:00:00+01:00",
            "1970-01-01",
            "2025-01-01T00:00:00Z",
            "NaN",
            "1e999",
            "debit",
            "monthly",
            "a.b",
            "eyJ2IjoxLCJwIjoiMjAyNS0wMS0wMVQwMDowMDowMC4wMDAwMDBaIn0.AAAA",
            "\x00",
        ]
    ),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    path=st.sampled_from(sorted(ROUTES)),
    query=st.dictionaries(QUERY_NAMES, st.lists(QUERY_VALUES, min_size=1, max_size=2), max_size=4),
)
def test_no_client_input_gets_a_500(
    moto_store: CreditsStore, owner: ApiAccount, path: str, query: dict[str, list[str]]
) -> None:
    response = invoke(ROUTES[path], api_event(path, query, api_key_id=owner.api_key_id))

    assert response.status in {200, 400, 422}, response.body
    if response.status != 200:
        assert_error_shape(response.body)
        assert response.body["error"]["code"] == "VALIDATION_ERROR"
        fields = response.body["error"]["details"]["fields"]
        assert fields
        assert all(detail["field"] for detail in fields)


# ---------------------------------------------------------------- events/
EVENT_ROUTES = {
    "balance": ("/v1/credits/balance", balance_app.lambda_handler),
    "balances": ("/v1/credits/balances", balance_app.lambda_handler),
    "balances-history": ("/v1/credits/balances", balance_app.lambda_handler),
    "holds": ("/v1/credits/holds", balance_app.lambda_handler),
    "transactions": ("/v1/credits/transactions", transactions_app.lambda_handler),
    "stats": ("/v1/credits/stats", stats_app.lambda_handler),
    "account-summary": ("/v1/account/summary", summary_app.lambda_handler),
}


def test_every_route_has_an_event_file() -> None:
    assert {path for path, _ in EVENT_ROUTES.values()} == set(ROUTES)


@pytest.mark.parametrize("name", sorted(EVENT_ROUTES))
def test_the_event_file_works_with_its_handler(
    moto_store: CreditsStore, materialize: Callable[[], int], name: str
) -> None:
    event = load_event(name)
    path, handler = EVENT_ROUTES[name]
    identity = event["requestContext"]["identity"]
    assert event["path"] == event["resource"] == path
    assert event["httpMethod"] == "GET"
    assert identity["apiKeyId"]
    open_account("acct_demo", opening_balance=500)
    wiring.ledger().debit(
        DebitCommand(
            account_id="acct_demo",
            idempotency_key="evt-1",
            amount=Decimal("2.5"),
            endpoint="/v1/calls",
        )
    )
    materialize()  # the entry and the day's usage come from the stream
    moto_store.catalog.put_api_key_mapping(
        ApiKeyMapping(
            api_key_id=identity["apiKeyId"],
            account_id="acct_demo",
            plan="pro",
            created_at=utc_now(),
        )
    )

    response = invoke(handler, event)

    assert response.status == 200, response.body
    assert response.headers["X-Request-Id"] == event["requestContext"]["requestId"]
    expected_key = {
        "balance": "available",
        "balances": "balances",
        "balances-history": "balances",
        "holds": "data",
        "transactions": "data",
        "stats": "totalUsed",
        "account-summary": "accountId",
    }[name]
    assert expected_key in response.body
    if name == "transactions":
        assert [entry["amount"] for entry in response.body["data"]] == [-2.5]
    if name.startswith("balances"):  # the opening grant's lot, less the debit
        lots = response.body["balances"]
        assert [(lot["amount"], lot["status"], lot["initialAmount"]) for lot in lots] == [
            (497.5, "active", 500)
        ]
        assert response.body["total"] == (497.5 if name == "balances" else None)
    if name == "stats":
        assert response.body["totalUsed"] == 2.5
        assert len(response.body["usage"]) == int(event["queryStringParameters"]["days"])
