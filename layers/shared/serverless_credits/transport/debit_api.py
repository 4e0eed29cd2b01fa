"""The Debit function's contract: a JSON request in, a result or a typed error out.

Operations (`operation`, default `debit`):
- `debit`: charge an amount, or an action x quantity from the price list;
- `void`: a service's cancellation of its own debit by the debit's idempotency key, in full,
  within `ledger.operations.VOID_WINDOW` (15 minutes);
- `reserve`, `capture`, `release`: holds (`ledger.holds`) - set credits aside for work of
  unknown cost, take all or part of them, or give them back.
General refunds are operator-only (the AdminFunction, `credits-admin credits refund`).

Expected refusals (no credits, suspended, unknown account or hold, reused key, bad input)
are returned as `{"error": {...}}`, and so is a transient fault (DynamoDB throttling past
botocore's retries, a timeout, a dropped connection): `SERVICE_BUSY`, to retry with the same
idempotency key. Only unexpected failures raise, so Lambda reports them.

Every operation also accepts an optional `correlationId` (1-128 of `A-Z a-z 0-9 . _ : / -`):
the caller's trace id, put on the function's log lines and nothing else (not stored, not part
of the operation, so not of what an idempotency key replays). It is taken off the request
before the command's validation (the commands refuse unknown fields); a malformed one is a
VALIDATION_ERROR. It must not be a secret or the idempotency key: it is logged as given.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from serverless_credits.domain.commands import (
    CaptureCommand,
    DebitCommand,
    ReleaseCommand,
    ReserveCommand,
    VoidCommand,
)
from serverless_credits.domain.errors import CreditsError, ValidationFailed
from serverless_credits.domain.models import OperationResult
from serverless_credits.domain.money import exact_dump
from serverless_credits.ledger.operations import Ledger
from serverless_credits.transport.responses import debit_error, transient_fault, validation_error

logger = logging.getLogger(__name__)


def _debit(ledger: Ledger, request: dict[str, Any]) -> OperationResult:
    return ledger.debit(DebitCommand.model_validate(request))


def _void(ledger: Ledger, request: dict[str, Any]) -> OperationResult:
    return ledger.void(VoidCommand.model_validate(request))


def _reserve(ledger: Ledger, request: dict[str, Any]) -> OperationResult:
    return ledger.holds.reserve(ReserveCommand.model_validate(request))


def _capture(ledger: Ledger, request: dict[str, Any]) -> OperationResult:
    return ledger.holds.capture(CaptureCommand.model_validate(request))


def _release(ledger: Ledger, request: dict[str, Any]) -> OperationResult:
    return ledger.holds.release(ReleaseCommand.model_validate(request))


OPERATIONS: dict[str, Callable[[Ledger, dict[str, Any]], OperationResult]] = {
    "debit": _debit,
    "void": _void,
    "reserve": _reserve,
    "capture": _capture,
    "release": _release,
}


CORRELATION_ID_FIELD = "correlationId"
_CORRELATION_ID = re.compile(r"[A-Za-z0-9._:/-]{1,128}")


def correlation_id_of(event: Any) -> str | None:
    """The caller's `correlationId` if the request carries a well-formed one."""
    value = event.get(CORRELATION_ID_FIELD) if isinstance(event, Mapping) else None
    return value if isinstance(value, str) and _CORRELATION_ID.fullmatch(value) else None


def _take_correlation_id(request: dict[str, Any]) -> None:
    """Takes the `correlationId` off the request (the commands know no such field);
    `ValidationFailed` if it is malformed."""
    if CORRELATION_ID_FIELD not in request:
        return
    valid = correlation_id_of(request) is not None
    del request[CORRELATION_ID_FIELD]
    if not valid:
        raise ValidationFailed(
            "correlationId must be 1-128 characters of A-Z a-z 0-9 . _ : / -",
            {"field": CORRELATION_ID_FIELD},
        )


def handle(event: Any, ledger: Ledger) -> dict[str, Any]:
    if not isinstance(event, Mapping):
        return debit_error(ValidationFailed("The request must be a JSON object"))
    request = dict(event)
    operation = request.pop("operation", "debit")
    if operation == "refund":
        return debit_error(
            ValidationFailed(
                "operation 'refund' is operator-only (AdminFunction); a service may 'void' "
                "its own debit",
                {"field": "operation"},
            )
        )
    run = OPERATIONS.get(operation) if isinstance(operation, str) else None
    if run is None:
        return debit_error(
            ValidationFailed(
                f"operation must be one of {tuple(OPERATIONS)}", {"field": "operation"}
            )
        )
    try:
        _take_correlation_id(request)
        result = run(ledger, request)
    except ValidationError as exc:
        return {"error": validation_error(exc)}
    except Exception as exc:
        # A refusal, or a transient fault answered as the typed, retryable SERVICE_BUSY.
        error = exc if isinstance(exc, CreditsError) else transient_fault(exc)
        if error is None:
            raise
        if error is not exc:
            logger.warning("transient fault: answered SERVICE_BUSY", exc_info=True)
        return debit_error(error)
    # Decimals kept: the Lambda runtime writes each as its exact literal (docs/http-api.md).
    return exact_dump(result)
