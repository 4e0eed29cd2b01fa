"""What every customer HTTP function shares: the resolver, authentication by API key,
the one error shape and the request id.

- The account comes from the API key API Gateway accepted (`requestContext.identity.apiKeyId`),
  mapped to an account by a table item and cached briefly in the function; never from the
  path, query or body. It is resolved before routing and validation: an unmapped key gets 403
  whatever else is wrong with the request.
- Every non-2xx response is `{"error": {"code", "message", "details"}, "requestId"}`;
  bad parameters name the field (422 for the parameter schema, 400 for rules across
  parameters); a transient fault (DynamoDB throttling past botocore's retries, a timeout,
  a dropped connection) is 503 `SERVICE_BUSY` with `Retry-After`; anything else unexpected
  is logged and answered 500 without detail (`responses.transient_fault` tells them apart).
- Every response carries `X-Request-Id` (API Gateway's request id).
"""

from __future__ import annotations

import functools
import json
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.depends import Depends
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError
from aws_lambda_powertools.event_handler.middlewares.openapi_validation import (
    OpenAPIResponseValidationMiddleware,
)
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.request import Request
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, Field

from serverless_credits import wiring
from serverless_credits.config import get_settings
from serverless_credits.domain import money
from serverless_credits.domain.errors import ApiKeyNotRecognised, CreditsError
from serverless_credits.storage.store import CreditsStore
from serverless_credits.transport import responses

if TYPE_CHECKING:
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.event_handler.api_gateway import Route
    from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger(child=True)

REQUEST_ID_HEADER = "X-Request-Id"
API_KEY_HEADER = "X-API-Key"
SECURITY_SCHEME = "apiKey"
OPENAPI_TITLE = "Serverless Credits API"
OPENAPI_VERSION = "1.0.0"
OPENAPI_DESCRIPTION = (
    "Customer API of Serverless Credits: balance, ledger and usage of the account that owns "
    "the API key. Every route needs an `X-API-Key` header; errors share one JSON shape."
)
JSON = "application/json"
_API_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
MAX_CACHED_KEYS = 1024


# ---------------------------------------------------------------- API key -> account
class ApiKeyDirectory:
    """Maps API Gateway key ids to account ids through `APIKEY#<id>` items, caching each
    answer for `ttl_seconds` (misses are not cached: a key provisioned a moment ago works)."""

    def __init__(
        self,
        store: CreditsStore,
        ttl_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_CACHED_KEYS,
    ) -> None:
        self._store = store
        self._ttl = ttl_seconds
        self._monotonic = monotonic
        self._max_entries = max_entries
        self._cache: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._lock = threading.Lock()  # a local server may run handlers in threads

    def account_for(self, api_key_id: str | None) -> str:
        """The account of a key, or `ApiKeyNotRecognised` (403)."""
        if not api_key_id or not _API_KEY_ID.match(api_key_id):
            raise ApiKeyNotRecognised()
        now = self._monotonic()
        with self._lock:
            cached = self._cache.get(api_key_id)
        if cached is not None and now < cached[0]:
            return cached[1]
        mapping = self._store.catalog.get_api_key_mapping(api_key_id)
        with self._lock:
            if mapping is None:
                self._cache.pop(api_key_id, None)
                raise ApiKeyNotRecognised()
            self._cache[api_key_id] = (now + self._ttl, mapping.account_id)
            self._cache.move_to_end(api_key_id)
            while len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)
        return mapping.account_id

    def forget(self, api_key_id: str) -> None:
        with self._lock:
            self._cache.pop(api_key_id, None)


@functools.lru_cache(maxsize=4)
def _directory_for(store: CreditsStore, ttl_seconds: float) -> ApiKeyDirectory:
    return ApiKeyDirectory(store, ttl_seconds)


def api_keys() -> ApiKeyDirectory:
    """The process's directory, bound to the process's store (a new one after wiring.reset)."""
    return _directory_for(wiring.store(), get_settings().cache_seconds)


def current_account(request: Request) -> str:
    """The account resolved from the API key for this request (see `CreditsApiResolver`)."""
    account_id: str = request.context["account_id"]
    return account_id


CurrentAccount = Annotated[str, Depends(current_account)]
"""A route parameter receiving the caller's account id (not a request parameter)."""


# ---------------------------------------------------------------- event helpers
def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def api_key_id_of(event: Mapping[str, Any]) -> str | None:
    identity = _mapping(_mapping(event.get("requestContext")).get("identity"))
    value = identity.get("apiKeyId")
    return value if isinstance(value, str) else None


def request_id_of(event: Mapping[str, Any], context: Any = None) -> str:
    value = _mapping(event.get("requestContext")).get("requestId")
    if isinstance(value, str) and value:
        return value[:128]
    fallback = getattr(context, "aws_request_id", None)
    return fallback if isinstance(fallback, str) and fallback else str(uuid.uuid4())


def _raw_error(
    status: int,
    error: dict[str, Any],
    request_id: str,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A proxy response built before routing (authentication failures)."""
    return {
        "statusCode": status,
        "multiValueHeaders": {
            "Content-Type": [JSON],
            **{name: [value] for name, value in (headers or {}).items()},
        },
        "body": money.dumps({"error": error, "requestId": request_id}),
        "isBase64Encoded": False,
    }


def _validation_details(error: RequestValidationError) -> list[dict[str, Any]]:
    """One entry per bad field: where it is, its name, what is wrong (never the input)."""
    details: dict[str, dict[str, Any]] = {}
    for issue in error.errors():
        loc = [str(part) for part in issue.get("loc", ())]
        where = loc[0] if len(loc) > 1 and loc[0] in {"query", "path", "header", "body"} else None
        field = (loc[1] if where else ".".join(loc)) or "request"
        details.setdefault(
            field, {"field": field, "in": where, "message": str(issue.get("msg", "invalid"))}
        )
    return list(details.values())


_INTERNAL = responses.error_object("INTERNAL_ERROR", "Internal error")


def _error_code(response: Mapping[str, Any]) -> str | None:
    """The `error.code` of one of our error responses (None if the body is not one)."""
    try:
        code = json.loads(response.get("body") or "")["error"]["code"]
    except (ValueError, TypeError, KeyError):
        return None
    return code if isinstance(code, str) else None


def _log_refusal(status: int, response: Mapping[str, Any], event: Mapping[str, Any]) -> None:
    """One structured line per non-2xx answer: its status, code and route (the resource
    template, e.g. `/v1/credits/balance`: no query, no header, no key). The logger's
    correlation id (API Gateway's request id) ties it to the response's X-Request-Id."""
    resource = event.get("resource")
    extra = {
        "status": status,
        "code": _error_code(response),
        "route": resource[:128] if isinstance(resource, str) else None,
    }
    if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        logger.warning("request failed", extra=extra)
    else:
        logger.info("request refused", extra=extra)


# ---------------------------------------------------------------- exact money
class _ExactResponseValidation(OpenAPIResponseValidationMiddleware):
    """Powertools' response validation, whose JSON-mode dump of the route's model can only
    write a Decimal as a float (exact up to 15 significant digits) or a string: each Decimal
    of the model is put back exactly (`money.exact_json`) for the resolver's serializer,
    `money.dumps`, to write as an exact JSON number (docs/http-api.md, "Numbers and limits")."""

    def _handle_response(self, *, route: Route, response: Response[Any]) -> Response[Any]:
        returned = response.body
        response = super()._handle_response(route=route, response=response)
        if isinstance(returned, BaseModel) and response.is_json():
            response.body = money.exact_json(
                returned.model_dump(mode="python", by_alias=True), response.body
            )
        return response


# ---------------------------------------------------------------- the resolver
class CreditsApiResolver(APIGatewayRestResolver):
    """An `APIGatewayRestResolver(enable_validation=True)` that authenticates by API key
    before routing, maps every failure to the service's error shape, stamps the request id
    on every response and writes money as exact JSON numbers (`money.dumps`)."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        super().__init__(enable_validation=True, serializer=money.dumps)
        self._response_validation_middleware = _ExactResponseValidation(
            validation_serializer=money.dumps,
            has_response_validation_error=self._has_response_validation_error,
        )
        self._metrics = metrics
        self._register_error_handlers()

    # ------------------------------------------------------------ request flow
    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        request_id = request_id_of(event, context)
        try:
            account_id = api_keys().account_for(api_key_id_of(event))
        except Exception as exc:
            error = exc if isinstance(exc, CreditsError) else responses.transient_fault(exc)
            if error is None:
                logger.exception("API key resolution failed")
                response = _raw_error(HTTPStatus.INTERNAL_SERVER_ERROR, _INTERNAL, request_id)
            else:
                response = _raw_error(
                    responses.status_for(error),
                    responses.from_domain(error),
                    request_id,
                    responses.headers_for(error),
                )
        else:
            self.context.update(account_id=account_id, request_id=request_id)
            try:
                response = super().resolve(event, context)
            except Exception:  # a malformed event: the route handlers catch everything else
                logger.exception("event could not be resolved")
                self.context.clear()
                response = _raw_error(HTTPStatus.INTERNAL_SERVER_ERROR, _INTERNAL, request_id)
        headers = response.get("multiValueHeaders")
        if not isinstance(headers, dict):
            headers = response["multiValueHeaders"] = {}
        headers[REQUEST_ID_HEADER] = [request_id]
        headers.setdefault("Cache-Control", ["no-store"])
        status = int(response.get("statusCode", 500))
        self._count(status)
        if status >= HTTPStatus.BAD_REQUEST:
            _log_refusal(status, response, event)
        return response

    def _count(self, status: int) -> None:
        if self._metrics is None:
            return
        self._metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
        if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
            self._metrics.add_metric(name="ServerErrors", unit=MetricUnit.Count, value=1)
        elif status >= HTTPStatus.BAD_REQUEST:
            self._metrics.add_metric(name="ClientErrors", unit=MetricUnit.Count, value=1)

    # ------------------------------------------------------------ errors
    def _error(
        self,
        status: int,
        code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response[dict[str, Any]]:
        request_id = str(self.context.get("request_id") or "")
        return Response(
            status_code=status,
            content_type=JSON,
            body=responses.error_body(code, message, details, request_id or None),
            headers=dict(headers or {}),
        )

    def _register_error_handlers(self) -> None:
        self.exception_handler_manager.update_exception_handlers(
            {
                CreditsError: self._domain_error,
                RequestValidationError: self._invalid_request,
                NotFoundError: self._no_route,
                ServiceError: self._http_error,
                Exception: self._unexpected,
            }
        )

    def _domain_error(self, exc: CreditsError) -> Response[dict[str, Any]]:
        # One shape for every bad parameter: `details.fields` names them (every route
        # takes query parameters only).
        details = responses.details_of(exc, location="query")
        return self._error(
            responses.status_for(exc), exc.code, exc.message, details, responses.headers_for(exc)
        )

    def _invalid_request(self, exc: RequestValidationError) -> Response[dict[str, Any]]:
        details = _validation_details(exc)
        fields = ", ".join(d["field"] for d in details) or "request"
        return self._error(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
            f"Invalid request parameter(s): {fields}",
            responses.fields_details(details),
        )

    def _no_route(self, _: NotFoundError) -> Response[dict[str, Any]]:
        return self._error(HTTPStatus.NOT_FOUND, "NOT_FOUND", "No such route")

    def _http_error(self, exc: ServiceError) -> Response[dict[str, Any]]:
        try:
            status = HTTPStatus(exc.status_code)
        except ValueError:
            status = HTTPStatus.INTERNAL_SERVER_ERROR
        if status < HTTPStatus.BAD_REQUEST or status >= HTTPStatus.INTERNAL_SERVER_ERROR:
            logger.error("service error", extra={"status": int(status)})
            return self._error(500, "INTERNAL_ERROR", "Internal error")
        return self._error(status, status.name, status.phrase)

    def _unexpected(self, exc: Exception) -> Response[dict[str, Any]]:
        fault = responses.transient_fault(exc)
        if fault is not None:  # throttled or timed out: the client may retry, no bug to log
            logger.warning("transient fault: answered 503", extra={"fault": type(exc).__name__})
            return self._domain_error(fault)
        logger.exception("unhandled error")
        return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", "Internal error")


def create_app(metrics: Metrics | None = None) -> CreditsApiResolver:
    """The resolver of one HTTP function."""
    return CreditsApiResolver(metrics)


# ---------------------------------------------------------------- OpenAPI
class ErrorObject(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. VALIDATION_ERROR")
    message: str
    details: dict[str, Any] = Field(
        default_factory=dict,
        description="Always an object: `{}` when there is nothing to add; the refusal's "
        "context otherwise (e.g. `available` and `requested` on 402). A validation error "
        "names its fields under `fields`: `[{field, in, message}]`",
    )


class ErrorResponse(BaseModel):
    """The body of every non-2xx response (API Gateway's own refusals included)."""

    error: ErrorObject
    requestId: str | None = Field(
        default=None, description="API Gateway's request id (also in the X-Request-Id header)"
    )


def _error_response(description: str) -> OpenAPIResponse:
    return {"description": description, "content": {JSON: {"model": ErrorResponse}}}


def route_responses(description: str) -> dict[int, OpenAPIResponse]:
    """The responses every route documents: its 200 and the shared error shape."""
    request_id: dict[str, Any] = {
        REQUEST_ID_HEADER: {
            "description": "API Gateway's request id",
            "schema": {"type": "string"},
        }
    }
    return {
        200: {"description": description, "headers": request_id},
        400: _error_response("Invalid combination of parameters (VALIDATION_ERROR)"),
        403: _error_response("Missing or invalid API key, or a key with no account"),
        404: _error_response("Account not found"),
        422: _error_response("A parameter failed validation (VALIDATION_ERROR, field named)"),
        429: _error_response("Throttled, or the usage plan's quota is spent"),
        500: _error_response("Internal error (no detail)"),
        503: {
            **_error_response("Storage throttled or timed out: retry after Retry-After seconds"),
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait before retrying",
                    "schema": {"type": "integer"},
                }
            },
        },
    }


def openapi_metadata() -> dict[str, Any]:
    """Title, version and the API-key security scheme, for `get_openapi_schema` and merging.
    Imported lazily: the OpenAPI models are not needed to serve requests."""
    from aws_lambda_powertools.event_handler.openapi.models import (  # noqa: PLC0415
        APIKey,
        APIKeyIn,
    )

    return {
        "title": OPENAPI_TITLE,
        "version": OPENAPI_VERSION,
        "description": OPENAPI_DESCRIPTION,
        "security_schemes": {
            SECURITY_SCHEME: APIKey(
                name=API_KEY_HEADER,
                in_=APIKeyIn.header,
                description="API key issued at provisioning; API Gateway enforces its usage plan",
            )
        },
        "security": [{SECURITY_SCHEME: []}],
    }


__all__ = [
    "ApiKeyDirectory",
    "CreditsApiResolver",
    "CurrentAccount",
    "ErrorResponse",
    "api_keys",
    "create_app",
    "openapi_metadata",
    "route_responses",
]
