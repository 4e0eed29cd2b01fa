"""For consumers: the client's typed refusals as API Gateway proxy responses.

A consumer function behind API Gateway that charges through `integrations.client` gets the
ledger's typed errors (`InsufficientCredits`, `AccountSuspended`, `HoldNotOpen`, ...) and
`CreditsUnavailable` when the Debit function could not answer. Uncaught, each is an
unhandled Lambda error: a 502 for the consumer's caller. `proxy_response` answers them as
this service's own HTTP API does, with the one mapping of `transport.responses`:

    402 INSUFFICIENT_CREDITS  details.available, details.requested
    403 ACCOUNT_SUSPENDED     404 ACCOUNT_NOT_FOUND / HOLD_NOT_FOUND
    409 IDEMPOTENCY_CONFLICT / OPERATION_IN_PROGRESS / HOLD_NOT_OPEN / TOO_MANY_OPEN_HOLDS
    400 VALIDATION_ERROR      503 SERVICE_BUSY with Retry-After

and `answer_refusals` wraps a handler so they are answered instead of raised:

    @answer_refusals
    @charge_per_call(credits, account_id=..., action="api_call", idempotency_key=...)
    def lambda_handler(event, context): ...

Lives in `transport` (not `integrations`) because the status mapping is transport's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from serverless_credits.domain import money
from serverless_credits.domain.errors import CreditsError, CreditsUnavailable
from serverless_credits.transport import responses

R = TypeVar("R")
Handler = Callable[[Any, Any], R]


def _request_id(event: Any) -> str | None:
    context = event.get("requestContext") if isinstance(event, Mapping) else None
    value = context.get("requestId") if isinstance(context, Mapping) else None
    return value if isinstance(value, str) and value else None


def proxy_response(error: CreditsError, request_id: str | None = None) -> dict[str, Any]:
    """A REST/HTTP API proxy response for a refusal: the status and headers of
    `transport.responses` (503 with `Retry-After`), the service's error body."""
    if isinstance(error, CreditsUnavailable):
        # Never the cause's text (it may name functions or errors): the code says it all.
        body = responses.error_body(
            error.code, CreditsUnavailable.DEFAULT_MESSAGE, None, request_id
        )
    else:
        body = responses.error_body(
            error.code, error.message, responses.details_of(error), request_id
        )
    return {
        "statusCode": responses.status_for(error),
        "headers": {"Content-Type": "application/json", **responses.headers_for(error)},
        "body": money.dumps(body),  # exact figures in `details`
        "isBase64Encoded": False,
    }


def answer_refusals(handler: Handler[R]) -> Handler[R | dict[str, Any]]:
    """Wrap a Lambda handler so a `CreditsError` it raises (a refusal, or
    `CreditsUnavailable`) is returned as `proxy_response` (with the event's API Gateway
    request id) instead of escaping as an unhandled error. Other exceptions propagate."""

    @functools.wraps(handler)
    def answered(event: Any, context: Any) -> R | dict[str, Any]:
        try:
            return handler(event, context)
        except CreditsError as error:
            return proxy_response(error, _request_id(event))

    return answered


__all__ = ["answer_refusals", "proxy_response"]
