"""The one mapping from domain errors to HTTP statuses, JSON error bodies and the Debit
function's typed error payloads."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from serverless_credits.domain import errors
from serverless_credits.domain.money import jsonable

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
}
SERVICE_BUSY_STATUS = 503


def status_for(error: errors.CreditsError) -> int:
    for kind in type(error).__mro__:
        if kind in HTTP_STATUS:
            return HTTP_STATUS[kind]
    return 400


def error_object(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"code": code, "message": message, "details": jsonable(details)}


def error_body(
    code: str, message: str, details: Any = None, request_id: str | None = None
) -> dict[str, Any]:
    """The service's one error shape: `{"error": {code, message, details}, "requestId"}`."""
    return {"error": error_object(code, message, details), "requestId": request_id}


def from_domain(error: errors.CreditsError) -> dict[str, Any]:
    return error_object(error.code, error.message, error.details)


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
    return error_object("VALIDATION_ERROR", f"Invalid request: {fields}", details)


def debit_error(error: errors.CreditsError) -> dict[str, Any]:
    """A Debit function refusal: `{"error": {...}}` (an expected outcome, not a failure)."""
    return {"error": from_domain(error)}
