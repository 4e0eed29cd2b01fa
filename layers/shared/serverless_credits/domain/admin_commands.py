"""The operators' requests (the AdminFunction's operations), one model per operation.

Every request names its `actor` (who asked: an IAM caller ARN or `user@host`), forbids
unknown fields (a misspelt setting is a VALIDATION_ERROR naming it, never stored) and uses
the API's camelCase names. Money operations carry an idempotency key: the same key with the
same request replays the first result, with another request it is IDEMPOTENCY_CONFLICT."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Self

from pydantic import AwareDatetime, Field, StringConstraints, model_validator

from serverless_credits.domain.commands import (
    Actor,
    Currency,
    HoldId,
    Priority,
    Reason,
    StrictCommand,
)
from serverless_credits.domain.models import (
    AccountId,
    IdempotencyKey,
    PositiveAmount,
    Reference,
    ShortText,
)
from serverless_credits.domain.money import MAX_AMOUNT, Credits

Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
ApiKeyId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,128}$")]
TransactionId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
FraudWarning = Annotated[
    str, StringConstraints(min_length=1, max_length=500, strip_whitespace=True)
]
NonNegative = Annotated[Credits, Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False)]


class Plan(StrEnum):
    """The usage-plan tiers an account and its keys may be on (`ledger.provisioning.Tier`)."""

    FREE = "free"
    PRO = "pro"


class AdminRequest(StrictCommand):
    """What every operator request has: who is asking."""

    actor: Actor


class AccountRequest(AdminRequest):
    account_id: AccountId


# ---------------------------------------------------------------- accounts
class CreateAccountRequest(AdminRequest):
    """`accounts.create`: a new account with an API key on its plan's usage plan, and
    `credits` as an opening grant (under `idempotencyKey`, default `opening-balance`)."""

    name: Name
    plan: Plan = Plan.FREE
    credits: PositiveAmount | None = None
    currency: Currency = "USD"
    credit_price: NonNegative = Decimal("0.01")
    idempotency_key: IdempotencyKey | None = None


class ShowAccountRequest(AccountRequest):
    """`accounts.show`."""


class ListAccountsRequest(AdminRequest):
    """`accounts.list`: the newest accounts first."""

    limit: Annotated[int, Field(ge=1, le=1000)] = 100


class SuspendRequest(AccountRequest):
    """`accounts.suspend`: debits are refused until reactivated; reads keep working."""

    reason: Reason


class ReactivateRequest(AccountRequest):
    """`accounts.reactivate`."""

    reason: Reason | None = None


class FlagRequest(AccountRequest):
    """`accounts.flag`: a fraud warning shown with the balance."""

    warning: FraudWarning


class UnflagRequest(AccountRequest):
    """`accounts.unflag`."""


class SettingsRequest(AccountRequest):
    """`accounts.set`: at least one setting. `autoReload` on needs a threshold and an amount
    (given here or already set); `plan` moves the account's keys to that usage plan."""

    name: Name | None = None
    low_balance_threshold: NonNegative | None = None
    auto_reload: bool | None = None
    auto_reload_threshold: NonNegative | None = None
    auto_reload_amount: PositiveAmount | None = None
    overdraft_limit: NonNegative | None = None
    plan: Plan | None = None

    @model_validator(mode="after")
    def _something(self) -> Self:
        settings = self.model_fields_set - {"actor", "account_id"}
        if not any(getattr(self, name) is not None for name in settings):
            raise ValueError(
                "give at least one setting: name, lowBalanceThreshold, autoReload, "
                "autoReloadThreshold, autoReloadAmount, overdraftLimit or plan"
            )
        return self


# ---------------------------------------------------------------- keys
class CreateKeyRequest(AccountRequest):
    """`keys.create`: another key on the account's plan."""


class ListKeysRequest(AccountRequest):
    """`keys.list`: ids, plans and dates, never values."""


class RotateKeysRequest(AccountRequest):
    """`keys.rotate`: a new key, then every older key of the account revoked."""


class RevokeKeyRequest(AccountRequest):
    """`keys.revoke`."""

    api_key_id: ApiKeyId


# ---------------------------------------------------------------- credits
class MoneyRequest(AccountRequest):
    idempotency_key: IdempotencyKey


class TopUpRequest(MoneyRequest):
    """`credits.topup`: purchased credits (reference: the purchase order or payment). It
    opens a credit lot (`domain.lots`) with `priority` (0-100, higher is spent first;
    default `domain.lots.DEFAULT_PRIORITIES`) and an optional `expiresAt` (at least
    `domain.lots.MIN_LOT_LIFETIME` ahead, kept to the second)."""

    amount: PositiveAmount
    reference: Reference | None = None
    description: ShortText = ""
    priority: Priority | None = None
    expires_at: AwareDatetime | None = None


class GrantRequest(TopUpRequest):
    """`credits.grant`: promotional credits, in a lot as a top-up's (its own default
    priority: given credit is spent before bought credit)."""


class AdjustRequest(MoneyRequest):
    """`credits.adjust`: a correction either way, always with a reason."""

    amount: Credits
    reason: Reason

    @model_validator(mode="after")
    def _bounded_nonzero(self) -> Self:
        if self.amount == 0 or abs(self.amount) > MAX_AMOUNT:
            raise ValueError(f"amount must be non-zero and at most {MAX_AMOUNT} either way")
        return self


class RefundRequest(MoneyRequest):
    """`credits.refund`: all or part of one debit, never more than is left of it."""

    transaction_id: TransactionId
    amount: PositiveAmount | None = None
    reason: ShortText = ""


# ---------------------------------------------------------------- holds
class HoldsRequest(AccountRequest):
    """`holds.list`: the account's open holds (at most `domain.holds.MAX_OPEN_HOLDS`)."""


class ReleaseHoldRequest(MoneyRequest):
    """`holds.release`: give a hold's credits back (a service that will never capture it)."""

    hold_id: HoldId
    reason: ShortText = ""


# ---------------------------------------------------------------- lots
class LotsRequest(AccountRequest):
    """`lots.list`: the account's active lots in burn order, with its balance."""


class ExpireLotsRequest(AccountRequest):
    """`lots.expire`: expire the account's lots past their `expiresAt` now, as the
    ExpirerFunction's next sweep would (each expiry is idempotent by its own key)."""


# ---------------------------------------------------------------- ledger
class LedgerRequest(AccountRequest):
    """`ledger.list`: the newest entries first."""

    limit: Annotated[int, Field(ge=1, le=100)] = 20


class ReconcileRequest(AdminRequest):
    """`reconcile`: one account, or `all: true`."""

    account_id: AccountId | None = None
    all: bool = False

    @model_validator(mode="after")
    def _one_or_all(self) -> Self:
        if (self.account_id is None) == (not self.all):
            raise ValueError("give either 'accountId' or 'all: true'")
        return self


# ---------------------------------------------------------------- events
class ReplayEventsRequest(AdminRequest):
    """`events.replay`: re-publish up to `limit` messages of the event replay queue."""

    limit: Annotated[int, Field(ge=1, le=100)] = 10


__all__ = [
    "AccountRequest",
    "AdjustRequest",
    "AdminRequest",
    "CreateAccountRequest",
    "CreateKeyRequest",
    "ExpireLotsRequest",
    "FlagRequest",
    "GrantRequest",
    "LedgerRequest",
    "ListAccountsRequest",
    "ListKeysRequest",
    "LotsRequest",
    "MoneyRequest",
    "Plan",
    "ReactivateRequest",
    "ReconcileRequest",
    "RefundRequest",
    "ReplayEventsRequest",
    "RevokeKeyRequest",
    "RotateKeysRequest",
    "SettingsRequest",
    "ShowAccountRequest",
    "SuspendRequest",
    "TopUpRequest",
    "UnflagRequest",
]
