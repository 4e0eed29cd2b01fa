"""API Gateway's key API, for the local stack: the operations `ApiGatewayKeyIssuer` uses
(CreateApiKey, GetApiKey(s), DeleteApiKey, CreateUsagePlanKey, GetUsagePlanKeys,
DeleteUsagePlanKey) over the same `InMemoryKeyIssuer` the local gateway authenticates with.

The local stack serves it beside Lambda's Invoke API (one "AWS endpoint" on :3001) and
points the AdminFunction's boto3 `apigateway` client at it with `AWS_ENDPOINT_URL_API_GATEWAY`,
so the function runs the very code it runs in AWS. A key created, moved or deleted here is
recognised, re-planned or refused by the gateway on its next request.

Usage plans are the template's (`FreeUsagePlan`, `ProUsagePlan`); locally a plan's id is its
logical id, which is what the template's `!Ref FreeUsagePlan` resolves to in the local
stack's environment. Requests are not authenticated (a local development server). Errors
are API Gateway's: `x-amzn-ErrorType` NotFoundException (404), ConflictException (409) or
BadRequestException (400) with a `{"message": ...}` body, which botocore turns into the same
`ClientError`s as in AWS.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from devtools.memory_api_keys import InMemoryKeyIssuer, StoredKey
from serverless_credits.ledger.provisioning import Tier

PREFIXES = ("/apikeys", "/usageplans")

_ROUTES = Map(
    [
        Rule("/apikeys", endpoint="keys", methods=["GET", "POST"]),
        Rule("/apikeys/<key_id>", endpoint="key", methods=["GET", "DELETE"]),
        Rule("/usageplans/<plan_id>/keys", endpoint="plan_keys", methods=["GET", "POST"]),
        Rule("/usageplans/<plan_id>/keys/<key_id>", endpoint="plan_key", methods=["GET", "DELETE"]),
    ],
    strict_slashes=False,
)


class ApiError(Exception):
    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


def _key_view(key: StoredKey, *, with_value: bool) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": key.id,
        "name": key.name,
        "description": key.description,
        "enabled": key.enabled,
        "createdDate": key.created.timestamp(),
        "lastUpdatedDate": key.created.timestamp(),
        "stageKeys": [],
        "tags": key.tags,
    }
    if with_value:
        view["value"] = key.value
    return view


def _flag(request: Request, name: str) -> bool:
    return request.args.get(name, "false").lower() == "true"


class KeyApi:
    """The WSGI application (see the module doc). `plans`: usage plan id -> tier name."""

    def __init__(self, keys: InMemoryKeyIssuer, plans: Mapping[str, str]) -> None:
        self.keys = keys
        tiers = {tier.value: tier for tier in Tier}
        self.plans = {plan_id: tiers[name] for plan_id, name in plans.items() if name in tiers}

    def handle(self, request: Request) -> Response:
        adapter = _ROUTES.bind_to_environ(request.environ)
        try:
            endpoint, arguments = adapter.match()
            handler: Callable[..., Response] = getattr(self, f"_{endpoint}")
            return handler(request, **arguments)
        except ApiError as exc:
            return Response(
                json.dumps({"message": exc.message}),
                status=exc.status,
                content_type="application/json",
                headers={"x-amzn-ErrorType": exc.error_type},
            )
        except (NotFound, MethodNotAllowed):
            return Response(
                json.dumps({"message": f"No API Gateway operation at {request.path}"}),
                status=404,
                content_type="application/json",
                headers={"x-amzn-ErrorType": "NotFoundException"},
            )
        except HTTPException as exc:
            return Response(
                json.dumps({"message": str(exc)}),
                status=400,
                content_type="application/json",
                headers={"x-amzn-ErrorType": "BadRequestException"},
            )

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return self.handle(Request(environ))(environ, start_response)

    # ------------------------------------------------------------ keys
    def _keys(self, request: Request) -> Response:
        if request.method == "POST":
            body = _body(request)
            try:
                key = self.keys.create_key(
                    name=str(body.get("name") or "key"),
                    description=str(body.get("description") or ""),
                    enabled=bool(body.get("enabled", False)),
                    value=body.get("value"),
                    tags={str(k): str(v) for k, v in (body.get("tags") or {}).items()},
                )
            except ValueError as exc:
                raise ApiError(409, "ConflictException", str(exc)) from exc
            return _json(_key_view(key, with_value=True), 201)
        with_values = _flag(request, "includeValues")
        return _json({"item": [_key_view(k, with_value=with_values) for k in self.keys.stored()]})

    def _key(self, request: Request, key_id: str) -> Response:
        key = self._existing(key_id)
        if request.method == "DELETE":
            self.keys.delete(key.id)
            return Response(status=202)
        return _json(_key_view(key, with_value=_flag(request, "includeValue")))

    # ------------------------------------------------------------ usage plan keys
    def _plan_keys(self, request: Request, plan_id: str) -> Response:
        tier = self._plan(plan_id)
        if request.method == "POST":
            body = _body(request)
            if body.get("keyType", "API_KEY") != "API_KEY":
                raise ApiError(400, "BadRequestException", "keyType must be API_KEY")
            key = self._existing(str(body.get("keyId", "")))
            if not self.keys.attach(key.id, tier):
                raise ApiError(409, "ConflictException", "Usage Plan Key already exists")
            return _json(_plan_key_view(key), 201)
        return _json({"item": [_plan_key_view(key) for key in self.keys.keys_on(tier)]})

    def _plan_key(self, request: Request, plan_id: str, key_id: str) -> Response:
        tier = self._plan(plan_id)
        key = self._existing(key_id)
        if tier not in key.tiers:
            raise ApiError(404, "NotFoundException", "Invalid Usage Plan Key identifier")
        if request.method == "DELETE":
            self.keys.detach(key.id, tier)
            return Response(status=202)
        return _json(_plan_key_view(key))

    # ------------------------------------------------------------ helpers
    def _existing(self, key_id: str) -> StoredKey:
        key = self.keys.get_key(key_id)
        if key is None:
            raise ApiError(404, "NotFoundException", "Invalid API Key identifier specified")
        return key

    def _plan(self, plan_id: str) -> Tier:
        tier = self.plans.get(plan_id)
        if tier is None:
            raise ApiError(404, "NotFoundException", "Invalid Usage Plan ID specified")
        return tier


def _plan_key_view(key: StoredKey) -> dict[str, Any]:
    return {"id": key.id, "type": "API_KEY", "name": key.name}


def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(request.get_data() or b"{}")
    except ValueError as exc:
        raise ApiError(400, "BadRequestException", "Invalid JSON body") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequestException", "The body must be a JSON object")
    return body


def with_key_api(app: Callable[..., Any], key_api: KeyApi) -> Callable[..., Any]:
    """`app` (Lambda's Invoke API) with API Gateway's key API beside it on the same port."""

    def dispatch(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = str(environ.get("PATH_INFO", ""))
        if path.startswith(PREFIXES):
            return key_api(environ, start_response)
        return app(environ, start_response)

    return dispatch


__all__ = ["PREFIXES", "KeyApi", "with_key_api"]
