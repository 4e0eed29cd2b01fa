"""The local API Gateway stand-in: routes, keys, usage plans and responses from template.yaml,
exercised in-process (werkzeug's test client, handlers from a temporary module)."""

from __future__ import annotations

import base64
import json
import textwrap
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

from devtools import local_gateway, template
from devtools.local_gateway import (
    GatewayResponses,
    LocalGateway,
    Route,
    TokenBucket,
    UsagePlan,
    UsagePlanMeter,
)
from devtools.local_lambda import FunctionRuntime
from devtools.template import FunctionSpec

HANDLERS = """
import base64
import json

def echo(event, context):
    return {"statusCode": 200, "headers": {"X-Echo": "yes"}, "body": json.dumps(event)}

def teapot(event, context):
    return {"statusCode": 418, "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
            "body": base64.b64encode(b"\\x00binary").decode(), "isBase64Encoded": True}

def broken(event, context):
    raise RuntimeError("boom")

def malformed(event, context):
    return {"body": "no status code"}
"""


class Keys:
    """A key store as API Gateway keeps one: value -> key id -> usage plan."""

    def __init__(self) -> None:
        self.ids = {"key-free": "id-free", "key-pro": "id-pro", "key-orphan": "id-orphan"}
        self.plans = {"id-free": "free", "id-pro": "pro", "id-orphan": None}

    def key_id_for(self, value: str | None) -> str | None:
        return self.ids.get(value or "")

    def tier_of(self, api_key_id: str) -> str | None:
        return self.plans.get(api_key_id)


def api_event(path: str, method: str = "get", **extra: Any) -> dict[str, Any]:
    properties = {"RestApiId": {"Ref": "CreditsApi"}, "Path": path, "Method": method, **extra}
    return {"Type": "Api", "Properties": properties}


@pytest.fixture
def runtime(tmp_path: Path) -> FunctionRuntime:
    (tmp_path / "handlers.py").write_text(textwrap.dedent(HANDLERS))
    events = {
        "EchoFunction": {
            "Item": api_event("/v1/items/{id}"),
            "Exact": api_event("/v1/items/special", "any"),
            "Open": api_event("/v1/open", Auth={"ApiKeyRequired": False}),
            "Proxy": api_event("/v1/files/{path+}"),
            "Other": api_event("/v1/elsewhere", RestApiId={"Ref": "AnotherApi"}),
        },
        "TeapotFunction": {"Teapot": api_event("/v1/teapot", "post")},
        "BrokenFunction": {"Broken": api_event("/v1/broken")},
        "MalformedFunction": {"Malformed": api_event("/v1/malformed")},
    }
    handlers = {
        "EchoFunction": "echo",
        "TeapotFunction": "teapot",
        "BrokenFunction": "broken",
        "MalformedFunction": "malformed",
    }
    return FunctionRuntime(
        {
            name: FunctionSpec(name, tmp_path, f"handlers.{handler}", {}, events[name])
            for name, handler in handlers.items()
        }
    )


@pytest.fixture
def plans() -> dict[str, UsagePlan]:
    return {
        "free": UsagePlan("FreeUsagePlan", rate_limit=1, burst_limit=2, quota_limit=3),
        "pro": UsagePlan("ProUsagePlan", rate_limit=None, burst_limit=None, quota_limit=None),
    }


@pytest.fixture
def client(runtime: FunctionRuntime, plans: dict[str, UsagePlan]) -> Client:
    return Client(LocalGateway(runtime, Keys(), stage="dev", plans=plans))


def body_of(response: Any) -> Any:
    return json.loads(response.get_data(as_text=True))


# ---------------------------------------------------------------- requests become events
def test_a_request_becomes_a_rest_proxy_event(client: Client) -> None:
    response = client.get(
        "/v1/items/42?tag=a&tag=b&q=x",
        headers={"X-API-Key": "key-pro", "User-Agent": "tests/1.0"},
    )

    assert response.status_code == 200
    assert response.headers["X-Echo"] == "yes"
    event = body_of(response)
    assert event["resource"] == "/v1/items/{id}"
    assert event["path"] == "/v1/items/42"
    assert event["httpMethod"] == "GET"
    assert event["pathParameters"] == {"id": "42"}
    assert event["queryStringParameters"] == {"tag": "b", "q": "x"}
    assert event["multiValueQueryStringParameters"] == {"tag": ["a", "b"], "q": ["x"]}
    assert event["headers"]["X-Api-Key"] == "key-pro"
    assert event["body"] is None
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["identity"]["apiKey"] == "key-pro"
    assert context["identity"]["apiKeyId"] == "id-pro"
    assert context["identity"]["userAgent"] == "tests/1.0"
    assert context["stage"] == "dev"
    assert context["path"] == "/dev/v1/items/42"
    assert context["resourcePath"] == "/v1/items/{id}"
    assert context["requestId"] == response.headers["x-amzn-RequestId"]


def test_bodies_headers_and_the_stage_prefix(client: Client) -> None:
    response = client.post("/dev/v1/teapot", data=b"\xff\xfe", headers={"X-API-Key": "key-pro"})

    assert response.status_code == 418
    assert response.get_data() == b"\x00binary"
    assert response.headers.getlist("Set-Cookie") == ["a=1", "b=2"]


def test_a_binary_request_body_is_base64_encoded(client: Client) -> None:
    event = body_of(
        client.post("/v1/items/special", data=b"\xff", headers={"X-API-Key": "key-pro"})
    )
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\xff"
    assert event["resource"] == "/v1/items/special"  # a literal path beats {id}


def test_greedy_paths_and_routes_without_a_key(client: Client) -> None:
    event = body_of(client.get("/v1/files/a/b.txt", headers={"X-API-Key": "key-pro"}))
    assert event["pathParameters"] == {"path": "a/b.txt"}

    open_event = body_of(client.get("/v1/open"))
    assert open_event["requestContext"]["identity"]["apiKeyId"] is None


# ---------------------------------------------------------------- refusals
def test_unknown_routes_methods_and_other_apis_are_missing_authentication_token(
    client: Client,
) -> None:
    for response in (
        client.get("/v1/nothing", headers={"X-API-Key": "key-pro"}),
        client.delete("/v1/teapot", headers={"X-API-Key": "key-pro"}),
        client.get("/v1/elsewhere", headers={"X-API-Key": "key-pro"}),
    ):
        assert response.status_code == 403
        assert response.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
        assert body_of(response)["error"]["code"] == "FORBIDDEN"


@pytest.mark.parametrize("key", [None, "", "wrong", "key-orphan"])
def test_missing_unknown_or_planless_keys_are_invalid_api_key(
    client: Client, key: str | None
) -> None:
    headers = {} if key is None else {"X-API-Key": key}
    response = client.get("/v1/items/1", headers=headers)

    assert response.status_code == 403
    body = body_of(response)
    assert body["error"]["code"] == "INVALID_API_KEY"
    assert body["requestId"] == response.headers["x-amzn-RequestId"]


def test_a_failing_or_malformed_function_is_a_502(client: Client) -> None:
    for path in ("/v1/broken", "/v1/malformed"):
        response = client.get(path, headers={"X-API-Key": "key-pro"})
        assert response.status_code == 502
        assert body_of(response)["error"]["code"] == "INTERNAL_ERROR"


def test_the_plan_throttles_then_counts_its_quota(client: Client) -> None:
    statuses = [
        body_of(r)["error"]["code"] if r.status_code != 200 else 200
        for r in (client.get("/v1/items/1", headers={"X-API-Key": "key-free"}) for _ in range(3))
    ]
    assert statuses == [200, 200, "THROTTLED"]  # burst of 2, then 1 per second


# ---------------------------------------------------------------- the template's parts
@pytest.mark.parametrize(
    "response_type",
    ["MISSING_AUTHENTICATION_TOKEN", "INVALID_API_KEY", "THROTTLED", "QUOTA_EXCEEDED"],
)
def test_gateway_responses_are_the_templates_with_the_request_id(response_type: str) -> None:
    configured = template.resource("CreditsApi")["Properties"]["GatewayResponses"][response_type]
    expected = configured["ResponseTemplates"]["application/json"].replace(
        "$context.requestId", "req-1"
    )

    response = GatewayResponses.from_template("CreditsApi").render(response_type, "req-1")

    assert response.status_code == int(configured["StatusCode"])
    assert response.get_data(as_text=True) == expected
    assert json.loads(expected)["requestId"] == "req-1"


def test_unconfigured_responses_fall_back_like_api_gateway() -> None:
    default_4xx = GatewayResponses(
        {
            "DEFAULT_4XX": {
                "ResponseTemplates": {"application/json": '{"m": $context.error.messageString}'},
                "ResponseParameters": {"Headers": {"X-Local": "'yes'"}},
            }
        }
    ).render("THROTTLED", "r")
    assert default_4xx.status_code == 429
    assert json.loads(default_4xx.get_data(as_text=True)) == {"m": "Too Many Requests"}
    assert default_4xx.headers["X-Local"] == "yes"

    bare = GatewayResponses({}).render("INVALID_API_KEY", "r")
    assert json.loads(bare.get_data(as_text=True)) == {"message": "Forbidden"}


def test_usage_plans_come_from_the_template_and_its_parameters() -> None:
    defaults = template.parameter_defaults()
    plans = local_gateway.usage_plans(local_gateway.parameters_with({"ProPlanQuotaPerDay": "7"}))

    assert set(plans) == {"free", "pro"}
    assert plans["free"].rate_limit == float(defaults["FreePlanRateLimit"])
    assert plans["free"].burst_limit == int(defaults["FreePlanBurstLimit"])
    assert plans["free"].quota_limit == int(defaults["FreePlanQuotaPerDay"])
    assert plans["free"].quota_period == "DAY"
    assert plans["pro"].quota_limit == 7
    with pytest.raises(ValueError, match="NoSuchParameter"):
        local_gateway.parameters_with({"NoSuchParameter": "1"})


def test_routes_come_from_the_templates_api_events() -> None:
    table = local_gateway.routes(template.functions(), "CreditsApi")
    documented = {
        (str(event["Properties"]["Method"]).upper(), event["Properties"]["Path"])
        for spec in template.functions().values()
        for event in spec.events.values()
        if event["Type"] == "Api"
    }
    assert {(route.method, route.path) for route in table} == documented
    assert all(route.api_key_required for route in table)  # the API's Auth.ApiKeyRequired


def test_more_specific_routes_win() -> None:
    table = sorted(
        [
            Route("/v1/{proxy+}", "ANY", "Greedy", True),
            Route("/v1/items/{id}", "GET", "Item", True),
            Route("/v1/items/new", "GET", "New", True),
        ],
        key=lambda route: route.specificity,
    )
    literal = local_gateway.match(table, "GET", "/v1/items/new")
    assert literal is not None
    assert literal[0].function == "New"
    found = local_gateway.match(table, "GET", "/v1/items/7")
    assert found is not None
    assert found[0].function == "Item"
    greedy = local_gateway.match(table, "POST", "/v1/items/7")
    assert greedy is not None
    assert greedy[0].function == "Greedy"
    assert local_gateway.match(table, "GET", "/v2/x") is None


# ---------------------------------------------------------------- metering
def test_a_token_bucket_allows_the_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=2, burst=3, updated=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5)  # one token back after half a second at 2/s
    assert not bucket.take(0.5)


def test_quota_counts_admitted_requests_per_key_per_period() -> None:
    now = [0.0]
    meter = UsagePlanMeter(
        {"tiny": UsagePlan("TinyUsagePlan", rate_limit=1, burst_limit=1, quota_limit=2)},
        clock=lambda: now[0],
    )
    day = date(2025, 1, 1)

    assert meter.admit("k", "tiny", day) is None
    assert meter.admit("k", "tiny", day) == "THROTTLED"  # throttled: not counted
    now[0] = 1.0
    assert meter.admit("k", "tiny", day) is None
    now[0] = 2.0
    assert meter.admit("k", "tiny", day) == "QUOTA_EXCEEDED"
    assert meter.remaining_quota("k", "tiny") == 2  # today is not 2025-01-01
    now[0] = 3.0
    assert meter.admit("k", "tiny", date(2025, 1, 2)) is None  # a new day, a new quota
    assert meter.admit("other", "tiny", day) is None  # keys are metered separately


def test_quota_periods() -> None:
    day = date(2025, 3, 5)
    assert local_gateway._quota_period("DAY", day) == (2025, 3, 5)
    assert local_gateway._quota_period("WEEK", day) == (2025, 10)
    assert local_gateway._quota_period("MONTH", day) == (2025, 3)
