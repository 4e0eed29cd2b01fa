"""The Debit function's contract: a JSON request in, a result or a typed error out.

Two operations: `debit` (the default) and `void`, a service's cancellation of its own debit
by the debit's idempotency key, in full, within `ledger.operations.VOID_WINDOW` (15 minutes).
General refunds are operator-only (the AdminFunction, `credits-admin credits refund`).

Expected refusals (no credits, suspended, unknown account, reused key, bad input) are
returned as `{"error": {...}}`; only unexpected failures raise, so Lambda reports them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from serverless_credits.domain.commands import DebitCommand, VoidCommand
from serverless_credits.domain.errors import CreditsError, ValidationFailed
from serverless_credits.domain.models import OperationResult
from serverless_credits.ledger.operations import Ledger
from serverless_credits.transport.responses import debit_error, validation_error

OPERATIONS = ("debit", "void")


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
    if operation not in OPERATIONS:
        return debit_error(
            ValidationFailed(f"operation must be one of {OPERATIONS}", {"field": "operation"})
        )
    try:
        result: OperationResult
        if operation == "void":
            result = ledger.void(VoidCommand.model_validate(request))
        else:
            result = ledger.debit(DebitCommand.model_validate(request))
    except ValidationError as exc:
        return {"error": validation_error(exc)}
    except CreditsError as exc:
        return debit_error(exc)
    return result.model_dump(mode="json", by_alias=True)
