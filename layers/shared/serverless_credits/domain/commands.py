"""Validated requests for ledger operations (the boundary models of every write)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Self

from pydantic import (
    AwareDatetime,
    Field,
    Strict,
    StringConstraints,
    field_validator,
    model_validator,
)

from serverless_credits.domain.holds import (
    DEFAULT_HOLD_SECONDS,
    HOLD_ID_PATTERN,
    MAX_HOLD_SECONDS,
)
from serverless_credits.domain.models import (
    AccountId,
    ActionName,
    CamelModel,
    Endpoint,
    IdempotencyKey,
    Metadata,
    PositiveAmount,
    Quantity,
    Reference,
    ShortText,
    SubscriptionStatus,
)
from serverless_credits.domain.money import MAX_AMOUNT, Credits

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=500, strip_whitespace=True)]
# Who asked for an operator's change (an IAM caller ARN, `user@host`): kept on its ledger
# entry, and not part of the idempotency fingerprint (`domain.idempotency.parameters`).
Actor = Annotated[str, StringConstraints(min_length=1, max_length=256, strip_whitespace=True)]


Priority = Annotated[int, Strict(), Field(ge=0, le=100)]


class StrictCommand(CamelModel):
    """Commands reject unknown fields: a typo must not be silently ignored."""

    model_config = CamelModel.model_config | {"extra": "forbid"}


class DebitCommand(StrictCommand):
    """Charge an account, by `amount` or by `action` x `quantity` from the price list."""

    account_id: AccountId
    idempotency_key: IdempotencyKey
    amount: PositiveAmount | None = None
    action: ActionName | None = None
    quantity: Quantity | None = None
    description: ShortText = ""
    endpoint: Endpoint | None = None
    metadata: Metadata = Field(default_factory=dict)

    @model_validator(mode="after")
    def _amount_or_action(self) -> Self:
        if (self.amount is None) == (self.action is None):
            raise ValueError("give exactly one of 'amount' or 'action'")
        if self.quantity is not None and self.action is None:
            raise ValueError("'quantity' goes with 'action'")
        return self


HoldId = Annotated[str, StringConstraints(pattern=HOLD_ID_PATTERN)]


class ReserveCommand(DebitCommand):
    """Set credits aside for work of unknown cost (`domain.holds`): by `amount` or by
    `action` x `quantity`, for `expiresIn` seconds (at most seven days)."""

    expires_in: Annotated[int, Field(ge=1, le=MAX_HOLD_SECONDS)] = DEFAULT_HOLD_SECONDS


class CaptureCommand(StrictCommand):
    """Take all of a hold (no `amount`) or part of it; the rest returns to `available`."""

    account_id: AccountId
    idempotency_key: IdempotencyKey
    hold_id: HoldId
    amount: PositiveAmount | None = None
    description: ShortText = ""


class ReleaseCommand(StrictCommand):
    """Give a hold up: all it held returns to `available`."""

    account_id: AccountId
    idempotency_key: IdempotencyKey
    hold_id: HoldId
    description: ShortText = ""


class CreditCommand(StrictCommand):
    """Add credits: a purchase (top-up) or a promotional grant. Each opens a credit lot
    (`domain.lots`) with `priority` (0-100, higher is spent first; default by type) and an
    optional `expiresAt` (whole seconds), after which what is left of it expires."""

    account_id: AccountId
    idempotency_key: IdempotencyKey
    amount: PositiveAmount
    description: ShortText = ""
    reference: Reference | None = None
    metadata: Metadata = Field(default_factory=dict)
    actor: Actor | None = None
    priority: Priority | None = None
    expires_at: AwareDatetime | None = None

    @field_validator("expires_at")
    @classmethod
    def _whole_seconds(cls, value: datetime | None) -> datetime | None:
        # Lot expiry is kept (in the lot's id) and judged to the second.
        return value.replace(microsecond=0) if value is not None else None


class AdjustmentCommand(StrictCommand):
    """An operator's correction, up or down; always with a reason."""

    account_id: AccountId
    idempotency_key: IdempotencyKey
    amount: Credits
    reason: Reason
    reference: Reference | None = None
    metadata: Metadata = Field(default_factory=dict)
    actor: Actor | None = None

    @model_validator(mode="after")
    def _bounded_nonzero(self) -> Self:
        if self.amount == 0 or abs(self.amount) > MAX_AMOUNT:
            raise ValueError(f"amount must be non-zero and at most {MAX_AMOUNT} either way")
        return self


class RefundCommand(StrictCommand):
    """Give back all or part of one debit. `failedCall` marks a call that did not happen."""

    account_id: AccountId
    idempotency_key: IdempotencyKey
    transaction_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    amount: PositiveAmount | None = None  # None: whatever remains refundable
    reason: ShortText = ""
    failed_call: bool = False
    actor: Actor | None = None


class VoidCommand(StrictCommand):
    """A service cancels its own debit, in full, by the debit's idempotency key, within
    `VOID_WINDOW` of the debit (a call that did not happen: usage counts it as failed).
    General refunds are the operators' (`RefundCommand`, through the AdminFunction)."""

    account_id: AccountId
    idempotency_key: IdempotencyKey  # the debit's
    reason: ShortText = ""


class CreateAccountCommand(StrictCommand):
    account_id: AccountId
    currency: Currency = "USD"
    credit_price: Credits = Decimal("0.01")
    overdraft_limit: Credits = Decimal(0)
    low_balance_threshold: Credits | None = None
    plan: Annotated[str, StringConstraints(pattern=r"^[a-z]{2,20}$")] = "free"
    email: Annotated[str, StringConstraints(max_length=254)] | None = None
    subscription_status: SubscriptionStatus = SubscriptionStatus.INACTIVE
    subscription_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    opening_balance: Credits = Decimal(0)

    @model_validator(mode="after")
    def _sane(self) -> Self:
        if not (0 <= self.credit_price <= MAX_AMOUNT and 0 <= self.overdraft_limit <= MAX_AMOUNT):
            raise ValueError(
                "creditPrice and overdraftLimit must be between 0 and the maximum amount"
            )
        if not 0 <= self.opening_balance <= MAX_AMOUNT:
            raise ValueError("openingBalance must be between 0 and the maximum amount")
        return self


__all__ = [
    "ActionName",
    "Actor",
    "AdjustmentCommand",
    "CaptureCommand",
    "CreateAccountCommand",
    "CreditCommand",
    "DebitCommand",
    "RefundCommand",
    "ReleaseCommand",
    "ReserveCommand",
    "VoidCommand",
]
