"""Domain errors. Each carries the stable code that clients see."""

from __future__ import annotations

from decimal import Decimal
from typing import Any


class CreditsError(Exception):
    """Base of every expected, client-visible failure."""

    code = "CREDITS_ERROR"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    @classmethod
    def from_payload(cls, message: str, details: dict[str, Any] | None) -> CreditsError:
        """Rebuild an error a remote Debit function returned (see `client`)."""
        error = cls.__new__(cls)
        CreditsError.__init__(error, message, details)
        return error


class ValidationFailed(CreditsError):
    code = "VALIDATION_ERROR"


class AccountNotFound(CreditsError):
    code = "ACCOUNT_NOT_FOUND"

    def __init__(self, account_id: str) -> None:
        super().__init__("Account not found", {"accountId": account_id})


class AccountAlreadyExists(CreditsError):
    code = "ACCOUNT_EXISTS"

    def __init__(self, account_id: str) -> None:
        super().__init__("Account already exists", {"accountId": account_id})


class AccountSuspended(CreditsError):
    """The account is suspended or closed: it cannot be debited."""

    code = "ACCOUNT_SUSPENDED"

    def __init__(self, account_id: str, status: str) -> None:
        super().__init__(f"Account is {status}", {"accountId": account_id, "status": status})


class InsufficientCredits(CreditsError):
    code = "INSUFFICIENT_CREDITS"

    def __init__(self, available: Decimal, requested: Decimal) -> None:
        super().__init__("Insufficient credits", {"available": available, "requested": requested})
        self.available = available

    @classmethod
    def from_payload(cls, message: str, details: dict[str, Any] | None) -> CreditsError:
        error = cls.__new__(cls)
        CreditsError.__init__(error, message, details)
        error.available = Decimal(str((details or {}).get("available", 0)))
        return error


class IdempotencyConflict(CreditsError):
    code = "IDEMPOTENCY_CONFLICT"

    def __init__(self, idempotency_key: str) -> None:
        super().__init__(
            "Idempotency key was already used with different parameters",
            {"idempotencyKey": idempotency_key},
        )


class OperationInProgress(CreditsError):
    """Another request with this idempotency key is still being applied: retry shortly with
    the same key to get its result."""

    code = "OPERATION_IN_PROGRESS"

    def __init__(self, idempotency_key: str) -> None:
        super().__init__(
            "A request with this idempotency key is in progress: retry with the same key",
            {"idempotencyKey": idempotency_key},
        )


class UnknownAction(ValidationFailed):
    def __init__(self, action: str) -> None:
        super().__init__(f"Unknown billable action {action!r}", {"field": "action"})


class TransactionNotFound(CreditsError):
    code = "TRANSACTION_NOT_FOUND"

    def __init__(self, transaction_id: str) -> None:
        super().__init__("Transaction not found", {"transactionId": transaction_id})


class RefundNotAllowed(CreditsError):
    """The refund would exceed what remains refundable, or targets a non-debit."""

    code = "REFUND_NOT_ALLOWED"


class VoidNotAllowed(RefundNotAllowed):
    """A void names no completed debit of the caller's, comes after its window, or finds
    the debit already (partly) refunded by an operator."""

    code = "VOID_NOT_ALLOWED"


class HoldNotFound(CreditsError):
    """The account has no hold with this id (never had, or it is another account's)."""

    code = "HOLD_NOT_FOUND"

    def __init__(self, account_id: str, hold_id: str) -> None:
        super().__init__("Hold not found", {"accountId": account_id, "holdId": hold_id})


class HoldNotOpen(CreditsError):
    """The hold was captured, released or expired: nothing is held any more."""

    code = "HOLD_NOT_OPEN"

    def __init__(self, hold_id: str, status: str) -> None:
        super().__init__(f"Hold is {status}", {"holdId": hold_id, "status": status})


class TooManyOpenHolds(CreditsError):
    """The account has as many open holds as it may (`domain.holds.MAX_OPEN_HOLDS`)."""

    code = "TOO_MANY_OPEN_HOLDS"

    def __init__(self, account_id: str, limit: int) -> None:
        super().__init__(
            "Too many open holds: capture or release one first",
            {"accountId": account_id, "limit": limit},
        )


class TooManyActiveLots(CreditsError):
    """A credit would open one more lot than the account may have
    (`domain.lots.MAX_ACTIVE_LOTS`): refused before anything changes. Debits are never
    refused for it."""

    code = "TOO_MANY_ACTIVE_LOTS"

    def __init__(self, account_id: str, limit: int) -> None:
        super().__init__(
            "Too many active credit lots: let some be spent or expire first",
            {"accountId": account_id, "limit": limit},
        )


class LotChanged(CreditsError):
    """An expiry was planned on a lot whose remainder has changed since (a capture burned
    it, a sweep took it): the ExpirerFunction plans it again. Never seen by clients."""

    code = "LOT_CHANGED"

    def __init__(self, lot_id: str) -> None:
        super().__init__("The lot changed since its expiry was planned", {"lotId": lot_id})


class ApiKeyNotFound(CreditsError):
    """An operator named an API key the account does not have (revoked or never issued)."""

    code = "API_KEY_NOT_FOUND"

    def __init__(self, account_id: str, api_key_id: str) -> None:
        super().__init__("API key not found", {"accountId": account_id, "apiKeyId": api_key_id})


class ApiKeyNotRecognised(CreditsError):
    code = "FORBIDDEN"

    def __init__(self) -> None:
        super().__init__("API key is not linked to an account")


class CreditsUnavailable(CreditsError):
    """The service could not answer now: DynamoDB throttled or timed out past its retries,
    or the Debit function could not be reached. Transient, not a refusal: retry later with
    the same idempotency key (a write that did land replays, it never charges twice). The
    HTTP API answers it 503 with `Retry-After`, the Debit function as this typed error, and
    the client raises it when its retries are spent."""

    code = "SERVICE_BUSY"
    DEFAULT_MESSAGE = "Service busy: retry shortly"

    def __init__(self, message: str = DEFAULT_MESSAGE, details: dict[str, Any] | None = None):
        super().__init__(message, details)


def error_for_code(code: str) -> type[CreditsError]:
    """The error class behind a stable code (the most specific one)."""
    return _BY_CODE.get(code, CreditsError)


class ServiceBusy(Exception):
    """Retries were exhausted on contention or throttling: transient, safe to retry later."""


class StorageError(Exception):
    """An unexpected storage failure (not a client's fault)."""


_BY_CODE: dict[str, type[CreditsError]] = {
    kind.code: kind
    for kind in (
        ValidationFailed,
        AccountNotFound,
        AccountAlreadyExists,
        AccountSuspended,
        InsufficientCredits,
        IdempotencyConflict,
        OperationInProgress,
        TransactionNotFound,
        RefundNotAllowed,
        VoidNotAllowed,
        ApiKeyNotRecognised,
        ApiKeyNotFound,
        HoldNotFound,
        HoldNotOpen,
        TooManyOpenHolds,
        TooManyActiveLots,
        CreditsUnavailable,
    )
}
