"""The Debit function's contract: a JSON request in, a result or a typed error out.

Operations (`operation`, default `debit`):
- `debit`: charge an amount, or an action x quantity from the price list;
- `void`: a service's cancellation of its own debit by the debit's idempotency key, in full,
  within `ledger.operations.VOID_WINDOW` (15 minutes);
- `reserve`, `capture`, `release`: holds (`ledger.holds`) - set credits aside for work of
  unknown cost, take all or part of them, or give them back.
General refunds are operator-only (the AdminFunction, `credits-admin credits refund`).

Expected refusals (no credits, suspended, unknown account or hold, reused key, bad input)
are returned as `{"error": {...}}`; only unexpected failures raise, so Lambda reports them.
"""

from __future__ import annotations

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
from serverless_credits.ledger.operations import Ledger
from serverless_credits.transport.responses import debit_error, validation_error


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
        result = run(ledger, request)
    except ValidationError as exc:
        return {"error": validation_error(exc)}
    except CreditsError as exc:
        return debit_error(exc)
    return result.model_dump(mode="json", by_alias=True)
