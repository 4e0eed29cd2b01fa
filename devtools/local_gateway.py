"""A small stand-in for API Gateway (REST API, Lambda proxy integration), for development.

Everything comes from `template.yaml`, never from a second table:
- routes: each function's `Api` events (path, method); `Auth.ApiKeyRequired` from the API,
  overridable per event;
- API Gateway's own refusals: the API's `GatewayResponses` templates, rendered with
  `$context.requestId` and `$context.error.messageString` (unconfigured types fall back to
  DEFAULT_4XX/DEFAULT_5XX, then to AWS's `{"message": ...}`);
- usage plans: every `AWS::ApiGateway::UsagePlan` with its `Throttle` (token bucket:
  `RateLimit` per second, `BurstLimit` deep) and `Quota` (`Limit` per DAY/WEEK/MONTH), enforced
  per API key; parameters resolve from their defaults and the stack's overrides.

Requests become REST proxy (v1) events with `requestContext.identity.apiKey/apiKeyId`, a
request id and the stage, and run in-process through `devtools.local_lambda`. As in AWS: an
unknown route or method is MISSING_AUTHENTICATION_TOKEN (403) even with a key; a missing,
unknown or revoked key is INVALID_API_KEY (403, message "Forbidden"); then the key's plan
throttles (THROTTLED, 429) and counts its quota (QUOTA_EXCEEDED, 429); a failed function or a
malformed proxy response is a 502 through DEFAULT_5XX. The API is served at the root (as
`sam local start-api` does) and also under `/{stage}`, as the deployed `ApiUrl` is.
Not emulated: stage/method-level throttling, binary media types, authorizers, CORS.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

from werkzeug.datastructures import Headers
from werkzeug.wrappers import Request, Response

from devtools import template
from devtools.local_lambda import LOCAL_ACCOUNT_ID, FunctionBusyError, FunctionRuntime
from devtools.template import FunctionSpec

API_KEY_HEADER = "x-api-key"

# Default status, message and x-amzn-ErrorType of API Gateway's responses used here.
_RESPONSE_DEFAULTS: dict[str, tuple[int, str, str]] = {
    "MISSING_AUTHENTICATION_TOKEN": (
        403,
        "Missing Authentication Token",
        "MissingAuthenticationTokenException",
    ),
    "INVALID_API_KEY": (403, "Forbidden", "ForbiddenException"),
    "THROTTLED": (429, "Too Many Requests", "TooManyRequestsException"),
    "QUOTA_EXCEEDED": (429, "Limit Exceeded", "LimitExceededException"),
    "DEFAULT_5XX": (502, "Internal server error", "InternalServerErrorException"),
}
_CONTEXT_VARIABLE = re.compile(r"\$!?\{context\.([A-Za-z.]+)\}|\$!?context\.([A-Za-z.]+)")


def _resolve(value: Any, parameters: Mapping[str, str]) -> str:
    if isinstance(value, dict) and "Ref" in value:
        return parameters[value["Ref"]]
    if isinstance(value, dict) and "Fn::Sub" in value:
        return re.sub(
            r"\$\{([^}]+)\}", lambda m: parameters.get(m.group(1), m.group(0)), value["Fn::Sub"]
        )
    return str(value)


def parameters_with(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The template's parameter defaults with `overrides` applied (as strings)."""
    values = {k: str(v) for k, v in template.parameter_defaults().items() if v is not None}
    unknown = set(overrides or {}) - set(values)
    if unknown:
        raise ValueError(f"template.yaml has no parameter {sorted(unknown)}")
    values.update(overrides or {})
    return values


# ---------------------------------------------------------------- gateway responses
class GatewayResponses:
    """The API's `GatewayResponses`, rendered as API Gateway renders them."""

    def __init__(self, configured: Mapping[str, Any]) -> None:
        self._configured = dict(configured)

    @classmethod
    def from_template(cls, api_id: str) -> GatewayResponses:
        return cls(template.resource(api_id)["Properties"].get("GatewayResponses", {}))

    def render(
        self, response_type: str, request_id: str, variables: Mapping[str, str] | None = None
    ) -> Response:
        status, message, error_type = _RESPONSE_DEFAULTS[response_type]
        fallback = "DEFAULT_5XX" if status >= 500 else "DEFAULT_4XX"
        config = self._configured.get(response_type) or self._configured.get(fallback) or {}
        status = int(config.get("StatusCode", status))
        templates = config.get("ResponseTemplates") or {}
        body_template = templates.get("application/json") or next(
            iter(templates.values()), '{"message":$context.error.messageString}'
        )
        context = {
            "requestId": request_id,
            "error.message": message,
            "error.messageString": json.dumps(message),
            "error.responseType": response_type,
            **(variables or {}),
        }
        body = _CONTEXT_VARIABLE.sub(
            lambda m: context.get(m.group(1) or m.group(2), m.group(0)), body_template
        )
        headers = Headers({"x-amzn-RequestId": request_id, "x-amzn-ErrorType": error_type})
        for name, value in (config.get("ResponseParameters", {}).get("Headers") or {}).items():
            headers[name] = str(value).strip("'")
        return Response(body, status=status, headers=headers, content_type="application/json")


# ---------------------------------------------------------------- usage plans and keys
@dataclass
class TokenBucket:
    rate: float
    burst: float
    updated: float
    tokens: float = -1.0  # full until first used

    def take(self, now: float) -> bool:
        if self.tokens < 0:
            self.tokens = self.burst
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def _quota_period(period: str, today: date) -> tuple[int, ...]:
    if period == "DAY":
        return (today.year, today.month, today.day)
    if period == "WEEK":
        year, week, _ = today.isocalendar()
        return (year, week)
    return (today.year, today.month)


@dataclass(frozen=True)
class UsagePlan:
    logical_id: str
    rate_limit: float | None
    burst_limit: int | None
    quota_limit: int | None
    quota_period: str = "DAY"

    @property
    def name(self) -> str:
        """`FreeUsagePlan` -> `free`: the plan name accounts and keys carry."""
        return self.logical_id.removesuffix("UsagePlan").lower()


def usage_plans(parameters: Mapping[str, str]) -> dict[str, UsagePlan]:
    """The template's usage plans by name (`free`, `pro`), throttle and quota resolved."""
    plans: dict[str, UsagePlan] = {}
    for logical_id, definition in template.load_template()["Resources"].items():
        if definition.get("Type") != "AWS::ApiGateway::UsagePlan":
            continue
        properties = definition.get("Properties", {})
        throttle = properties.get("Throttle") or {}
        quota = properties.get("Quota") or {}
        plan = UsagePlan(
            logical_id=logical_id,
            rate_limit=float(_resolve(throttle["RateLimit"], parameters))
            if "RateLimit" in throttle
            else None,
            burst_limit=int(_resolve(throttle["BurstLimit"], parameters))
            if "BurstLimit" in throttle
            else None,
            quota_limit=int(_resolve(quota["Limit"], parameters)) if "Limit" in quota else None,
            quota_period=_resolve(quota.get("Period", "DAY"), parameters),
        )
        plans[plan.name] = plan
    return plans


class ApiKeys(Protocol):
    """API Gateway's key store as the gateway reads it (`devtools.memory_api_keys` is one)."""

    def key_id_for(self, value: str | None) -> str | None:
        """The id of the enabled key with this value."""
        ...

    def tier_of(self, api_key_id: str) -> str | None:
        """The name of the usage plan the key is on (`free`, `pro`)."""
        ...


class UsagePlanMeter:
    """Each key's throttle bucket and quota count, under its usage plan's limits."""

    def __init__(
        self, plans: Mapping[str, UsagePlan], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.plans = dict(plans)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, TokenBucket] = {}
        self._usage: dict[str, tuple[tuple[int, ...], int]] = {}

    def admit(self, key_id: str, plan_name: str, today: date | None = None) -> str | None:
        """None when the request may pass, else the gateway response type refusing it."""
        plan = self.plans[plan_name]
        with self._lock:
            if plan.rate_limit is not None:
                now = self._clock()
                bucket = self._buckets.setdefault(
                    key_id, TokenBucket(plan.rate_limit, float(plan.burst_limit or 1), updated=now)
                )
                if not bucket.take(now):
                    return "THROTTLED"
            if plan.quota_limit is not None:
                period = _quota_period(plan.quota_period, today or datetime.now(UTC).date())
                current, used = self._usage.get(key_id, (period, 0))
                used = used if current == period else 0
                if used >= plan.quota_limit:
                    return "QUOTA_EXCEEDED"
                self._usage[key_id] = (period, used + 1)
        return None

    def remaining_quota(self, key_id: str, plan_name: str) -> int | None:
        plan = self.plans[plan_name]
        if plan.quota_limit is None:
            return None
        period = _quota_period(plan.quota_period, datetime.now(UTC).date())
        with self._lock:
            current, used = self._usage.get(key_id, (period, 0))
        return plan.quota_limit - (used if current == period else 0)


# ---------------------------------------------------------------- routes
@dataclass(frozen=True)
class Route:
    path: str  # the template's resource path, e.g. /v1/items/{id}
    method: str  # GET, POST, ... or ANY
    function: str
    api_key_required: bool

    @property
    def pattern(self) -> re.Pattern[str]:
        regex = re.sub(
            r"\\\{([A-Za-z0-9_]+)(\\\+)?\\\}",
            lambda m: f"(?P<{m.group(1)}>{'.+' if m.group(2) else '[^/]+'})",
            re.escape(self.path),
        )
        return re.compile(f"^{regex}/?$")

    @property
    def specificity(self) -> tuple[int, int]:
        """Literal segments first, greedy `{proxy+}` last (API Gateway prefers the specific)."""
        segments = self.path.strip("/").split("/")
        return (-sum(not s.startswith("{") for s in segments), "+}" in self.path)


def routes(functions: Mapping[str, FunctionSpec], api_id: str) -> list[Route]:
    """The template's `Api` events for `api_id`, most specific first."""
    api_auth = template.resource(api_id)["Properties"].get("Auth", {})
    found = []
    for spec in functions.values():
        for event in spec.events.values():
            if event.get("Type") != "Api":
                continue
            properties = event["Properties"]
            rest_api = properties.get("RestApiId", {})
            if isinstance(rest_api, dict) and rest_api.get("Ref", api_id) != api_id:
                continue
            auth = {**api_auth, **properties.get("Auth", {})}
            method = str(properties["Method"]).upper()
            found.append(
                Route(
                    path=properties["Path"],
                    method="ANY" if method in ("ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD") else method,
                    function=spec.logical_id,
                    api_key_required=bool(auth.get("ApiKeyRequired", False)),
                )
            )
    return sorted(found, key=lambda route: route.specificity)


def match(table: list[Route], method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for route in table:
        found = route.pattern.match(path)
        if found and route.method in (method, "ANY"):
            return route, found.groupdict()
    return None


# ---------------------------------------------------------------- events
@dataclass(frozen=True)
class ApiKey:
    id: str
    value: str


def _single_and_multi(
    items: list[tuple[str, str]],
) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    if not items:
        return None, None
    multi: dict[str, list[str]] = {}
    for name, value in items:
        multi.setdefault(name, []).append(value)
    return {name: values[-1] for name, values in multi.items()}, multi


def proxy_event(
    request: Request,
    route: Route,
    *,
    path: str,
    path_parameters: Mapping[str, str],
    key: ApiKey | None,
    request_id: str,
    stage: str,
) -> dict[str, Any]:
    """A REST API (v1) Lambda proxy event, as API Gateway sends it."""
    headers, multi_headers = _single_and_multi(list(request.headers.items()))
    query, multi_query = _single_and_multi(list(request.args.items(multi=True)))
    raw = request.get_data()
    body: str | None
    encoded = False
    if not raw:
        body = None
    else:
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            body, encoded = base64.b64encode(raw).decode(), True
    now = datetime.now(UTC)
    return {
        "resource": route.path,
        "path": path,
        "httpMethod": request.method,
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": dict(path_parameters) or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "local",
            "resourcePath": route.path,
            "httpMethod": request.method,
            "extendedRequestId": request_id,
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "path": f"/{stage}{path}",
            "accountId": LOCAL_ACCOUNT_ID,
            "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
            "stage": stage,
            "domainPrefix": request.host.split(".")[0].split(":")[0],
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": request.remote_addr or "127.0.0.1",
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": request.user_agent.string or None,
                "user": None,
                "apiKey": key.value if key else None,
                "apiKeyId": key.id if key else None,
            },
            "domainName": request.host,
            "apiId": "local",
        },
        "body": body,
        "isBase64Encoded": encoded,
    }


class MalformedProxyResponseError(ValueError):
    pass


def proxy_response(result: Any, request_id: str) -> Response:
    """The HTTP response for a Lambda proxy result, or MalformedProxyResponseError."""
    if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int):
        raise MalformedProxyResponseError("statusCode must be an integer")
    headers = Headers()
    for name, values in (result.get("multiValueHeaders") or {}).items():
        for value in values:
            headers.add(name, str(value))
    for name, value in (result.get("headers") or {}).items():
        headers[name] = str(value)
    headers["x-amzn-RequestId"] = request_id
    body = result.get("body")
    if body is not None and not isinstance(body, str):
        raise MalformedProxyResponseError("body must be a string")
    data = base64.b64decode(body) if body and result.get("isBase64Encoded") else (body or "")
    if "Content-Type" not in headers:
        headers["Content-Type"] = "application/json"
    return Response(data, status=result["statusCode"], headers=headers)


# ---------------------------------------------------------------- the gateway
class LocalGateway:
    """The WSGI application: routes, keys, plans, events, responses (see the module doc)."""

    def __init__(
        self,
        runtime: FunctionRuntime,
        keys: ApiKeys,
        *,
        stage: str,
        plans: Mapping[str, UsagePlan] | None = None,
        api_id: str = "CreditsApi",
    ) -> None:
        self.runtime = runtime
        self.keys = keys
        self.meter = UsagePlanMeter(plans or {})
        self.stage = stage
        self.routes = routes(runtime.specs, api_id)
        self.responses = GatewayResponses.from_template(api_id)

    def handle(self, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        path = request.path
        if path.startswith(f"/{self.stage}/"):
            path = path[len(self.stage) + 1 :]
        found = match(self.routes, request.method, path)
        if found is None:
            return self.responses.render("MISSING_AUTHENTICATION_TOKEN", request_id)
        route, path_parameters = found
        key: ApiKey | None = None
        if route.api_key_required:
            value = request.headers.get(API_KEY_HEADER)
            key_id = self.keys.key_id_for(value)
            plan = self.keys.tier_of(key_id) if key_id else None
            # A key on no usage plan of this stage is refused like an unknown one.
            if value is None or key_id is None or plan is None or plan not in self.meter.plans:
                return self.responses.render("INVALID_API_KEY", request_id)
            refusal = self.meter.admit(key_id, str(plan))
            if refusal is not None:
                return self.responses.render(refusal, request_id)
            key = ApiKey(key_id, value)
        event = proxy_event(
            request,
            route,
            path=path,
            path_parameters=path_parameters,
            key=key,
            request_id=request_id,
            stage=self.stage,
        )
        return self._integrate(route.function, event, request_id)

    def _integrate(self, function: str, event: dict[str, Any], request_id: str) -> Response:
        """Lambda proxy integration: the function's response, or a 502 when it failed."""
        try:
            invocation = self.runtime.invoke(function, event)
            if not invocation.failed:
                return proxy_response(invocation.json(), request_id)
        except (FunctionBusyError, MalformedProxyResponseError, ValueError):
            pass
        return self.responses.render("DEFAULT_5XX", request_id)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        response = self.handle(Request(environ))
        return response(environ, start_response)
