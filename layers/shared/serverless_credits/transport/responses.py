"""The one mapping from domain errors to HTTP statuses, JSON error bodies and the Debit
function's typed error payloads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError
from pydantic import ValidationError

from serverless_credits.domain import errors
from serverless_credits.domain.money import jsonable
from serverless_credits.storage.items import TRANSIENT_CODES, UNKNOWN_OUTCOME_ERRORS, error_code

HTTP_STATUS: dict[type[errors.CreditsError], int] = {
    errors.ValidationFailed: 400,
    errors.ApiKeyNotRecognised: 403,
    errors.AccountSuspended: 403,
    errors.AccountNotFound: 404,
    errors.TransactionNotFound: 404,
    errors.ApiKeyNotFound: 404,
    errors.HoldNotFound: 404,
    errors.InsufficientCredits: 402,
    errors.IdempotencyConflict: 409,
    errors.OperationInProgress: 409,
    errors.AccountAlreadyExists: 409,
    errors.RefundNotAllowed: 409,
    errors.HoldNotOpen: 409,
    errors.TooManyOpenHolds: 409,
    errors.TooManyActiveLots: 409,
    errors.CreditsUnavailable: 503,
}
SERVICE_BUSY_STATUS = 503
# When a 503's caller may try again: past DynamoDB's brief throttling bursts, short enough
# for an interactive client. Sent as `Retry-After` (seconds).
RETRY_AFTER_SECONDS = 1


def status_for(error: errors.CreditsError) -> int:
    for kind in type(error).__mro__:
        if kind in HTTP_STATUS:
            return HTTP_STATUS[kind]
    return 400


def headers_for(error: errors.CreditsError) -> dict[str, str]:
    """The headers a refusal's HTTP response carries besides the body: `Retry-After` on 503."""
    if status_for(error) == SERVICE_BUSY_STATUS:
        return {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return {}


def transient_fault(failure: BaseException) -> errors.CreditsUnavailable | None:
    """The typed retryable answer to a transient fault, or None for any other failure.

    Transient: throttling or a DynamoDB server error that outlived botocore's retries
    (`ServiceBusy` from storage, or a raw `ClientError` with such a code), a read or connect
    timeout and a dropped connection. Every HTTP route only reads, so retrying it is safe;
    a Debit write whose outcome is unknown is safe to retry with the same idempotency key
    (the write path replays it or applies it once). Anything else is a bug or a
    misconfiguration: 500, or the Debit function's unhandled error."""
    if isinstance(failure, errors.CreditsUnavailable):
        return failure
    if isinstance(failure, (errors.ServiceBusy, *UNKNOWN_OUTCOME_ERRORS)) or (
        isinstance(failure, ClientError) and error_code(failure) in TRANSIENT_CODES
    ):
        return errors.CreditsUnavailable()
    return None


def error_object(
    code: str, message: str, details: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """`{code, message, details}`. `details` is always an object, in every answer (HTTP,
    Debit and admin functions): `{}` when there is nothing to add; a validation error names
    its fields under `details.fields` (`fields_details`)."""
    return {"code": code, "message": message, "details": jsonable(dict(details or {}))}


def error_body(
    code: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """The service's one error shape: `{"error": {code, message, details}, "requestId"}`."""
    return {"error": error_object(code, message, details), "requestId": request_id}


def fields_details(fields: list[dict[str, Any]]) -> dict[str, Any]:
    """A validation error's details: `{"fields": [{"field", "message"}, ...]}`."""
    return {"fields": fields}


def details_of(error: errors.CreditsError, location: str | None = None) -> dict[str, Any]:
    """A domain error's details as every answer carries them. A `ValidationFailed` lists
    its field (`{"field": ...}`; null: the request as a whole) under `fields`, with the
    error's message (and `in`, where the field was, when `location` says), its other
    context kept beside."""
    context = dict(error.details or {})
    if not isinstance(error, errors.ValidationFailed):
        return context
    field = context.pop("field", None)
    named: dict[str, Any] = {"field": field, "message": error.message}
    if location is not None:
        named["in"] = location
    # Context already in this shape (an error rebuilt from a Debit function's answer by
    # the client) keeps its `fields`.
    return {**fields_details([named]), **context}


def from_domain(error: errors.CreditsError) -> dict[str, Any]:
    return error_object(error.code, error.message, details_of(error))


def validation_details(error: ValidationError) -> list[dict[str, Any]]:
    """Which fields were wrong, without echoing the input back."""
    return [
        {
            "field": ".".join(str(part) for part in issue["loc"]) or None,
            "message": issue["msg"],
        }
        for issue in error.errors(include_url=False, include_input=False, include_context=False)
    ]


def validation_error(error: ValidationError) -> dict[str, Any]:
    details = validation_details(error)
    fields = ", ".join(sorted({d["field"] for d in details if d["field"]})) or "request"
    return error_object("VALIDATION_ERROR", f"Invalid request: {fields}", fields_details(details))


def debit_error(error: errors.CreditsError) -> dict[str, Any]:
    """A Debit function refusal: `{"error": {...}}` (an expected outcome, not a failure)."""
    return {"error": from_domain(error)}
