"""Stored items and the results of operations (pydantic, camelCase on the wire and in
DynamoDB). `store` converts them to and from DynamoDB attribute values."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    Strict,
    StringConstraints,
    model_serializer,
)
from pydantic.alias_generators import to_camel

from serverless_credits.domain.money import Credits, PositiveAmount, Quantity

AccountId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{3,64}$")]
IdempotencyKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:#-]{1,128}$")]
ActionName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")]
Endpoint = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")
]
ShortText = Annotated[str, StringConstraints(max_length=500)]
Reference = Annotated[str, StringConstraints(min_length=1, max_length=128)]
# Metadata: a small flat map carried onto the ledger entry (and the idempotency record), so
# its every dimension is bounded (docs/http-api.md, "Numbers and limits"): at most
# METADATA_MAX_KEYS keys of printable ASCII (1-64 characters), values strings of at most
# 256 characters, booleans, or integers of magnitude below METADATA_MAX_INTEGER (safe as a
# JSON number in every language, and far inside DynamoDB's 38 digits: 1e38 crashed the
# write), and at most METADATA_MAX_BYTES of JSON in all. No nesting, no floats, no nulls.
METADATA_MAX_KEYS = 20
METADATA_MAX_INTEGER = 10**15
METADATA_MAX_BYTES = 4096
MetadataKey = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,64}$")]
# Strict: a JSON 0.0 is a float, not the integer 0 (lax validation would coerce it).
MetadataInteger = Annotated[int, Strict(), Field(gt=-METADATA_MAX_INTEGER, lt=METADATA_MAX_INTEGER)]
MetadataValue = (
    Annotated[str, Strict(), StringConstraints(max_length=256)]
    | MetadataInteger
    | Annotated[bool, Strict()]
)


def _metadata_size(value: dict[str, Any]) -> dict[str, Any]:
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > METADATA_MAX_BYTES:
        raise ValueError(f"metadata is at most {METADATA_MAX_BYTES} bytes of JSON")
    return value


Metadata = Annotated[
    dict[MetadataKey, MetadataValue],
    Field(max_length=METADATA_MAX_KEYS),
    AfterValidator(_metadata_size),
]


def utc_now() -> datetime:
    return datetime.now(UTC)


class CamelModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


class AccountStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CLOSED = "closed"


class SubscriptionStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    CANCELLED = "cancelled"
    PAST_DUE = "past_due"


class EntryType(StrEnum):
    DEBIT = "debit"
    TOPUP = "topup"
    GRANT = "grant"
    ADJUSTMENT = "adjustment"
    REFUND = "refund"
    # A service's cancellation of its own debit, in full, shortly after it (`Ledger.void`).
    VOID = "void"
    # Holds (`domain.holds`): credits reserved, then captured (all or part) or released;
    # an expired hold is a `release` with reason `expired`.
    HOLD = "hold"
    CAPTURE = "capture"
    RELEASE = "release"
    # Credits of a lot past its `expiresAt` taken out of the balance (`domain.lots`).
    EXPIRY = "expiry"


class ReleaseReason(StrEnum):
    RELEASED = "released"  # the service gave the hold up
    EXPIRED = "expired"  # the hold ran past `expiresAt` (the ExpirerFunction)


class LastOp(CamelModel):
    """What the account item says about the change that produced its current version.

    Small on purpose (the item's size is a write unit on every change): the operation's
    id and idempotency key find its full description in the idempotency record."""

    id: str
    key: str
    type: EntryType
    amount: Credits
    at: AwareDatetime
    # Only on the release of an expired hold (absent otherwise: the item stays small), so
    # the stream tells an expiry from a release (the `Hold Expired` event).
    reason: ReleaseReason | None = None
    # Which credit lots this change took from (negative) or gave to (positive): decided at
    # write time from the account's lots (`domain.lots`), so the ledger entry built from
    # this version's image records it. Absent when no lot moved.
    lots: dict[str, Credits] | None = None


class OpenHold(CamelModel):
    """An open hold as the account item records it (`holds.<holdId>`): the fence every step
    of a hold is conditioned on (docs/design-notes.md, "Fix 3"), kept to three numbers under
    one-letter names because every byte of the item is paid on every change."""

    amount: Credits = Field(alias="a")
    expires_at: int = Field(alias="x")  # epoch seconds
    created_at: int = Field(alias="c")  # epoch seconds

    @property
    def expires(self) -> datetime:
        return datetime.fromtimestamp(self.expires_at, UTC)

    @property
    def created(self) -> datetime:
        return datetime.fromtimestamp(self.created_at, UTC)

    def expired(self, now: datetime) -> bool:
        """Past its expiry at `now`, in whole epoch seconds as the fence compares: from then
        on a capture is refused and the ExpirerFunction may release it."""
        return self.expires_at <= int(now.timestamp())


class HoldStatus(StrEnum):
    OPEN = "open"
    CAPTURED = "captured"
    RELEASED = "released"
    EXPIRED = "expired"


class AutoReloadPending(CamelModel):
    """An auto-reload request the account is waiting on (`domain.events`): set by the event
    publisher when it requests a reload, cleared by a top-up whose `reference` is
    `request_id`; after `AUTO_RELOAD_TIMEOUT` it no longer holds a new request back."""

    request_id: str
    at: AwareDatetime  # the time of the change that requested it


class Account(CamelModel):
    """An account and its balance: one item, the only one a debit writes on its partition."""

    account_id: AccountId
    name: str | None = None
    status: AccountStatus = AccountStatus.ACTIVE
    status_reason: str | None = None  # why an operator suspended or reactivated it
    currency: str = "USD"
    credit_price: Credits = Decimal("0.1")
    overdraft_limit: Credits = Decimal(0)
    low_balance_threshold: Credits | None = None
    auto_reload_enabled: bool = False
    auto_reload_threshold: Credits | None = None
    auto_reload_amount: Credits | None = None
    auto_reload_pending: AutoReloadPending | None = None
    subscription_status: SubscriptionStatus = SubscriptionStatus.INACTIVE
    subscription_id: str | None = None
    plan: str = "free"
    email: str | None = None
    flagged: bool = False
    fraud_warning: str | None = None
    balance: Credits = Decimal(0)
    reserved: Credits = Decimal(0)
    # Kept as its own attribute (balance - reserved), moved by every change: a condition
    # cannot do arithmetic, so the funds check conditions on it directly.
    available: Credits = Decimal(0)
    # Lifetime figures (`domain.posting`): balance == total - used + adjusted.
    used: Credits = Decimal(0)  # debits and captures, net of refunds and voids
    total: Credits = Decimal(0)  # top-ups and grants
    adjusted: Credits = Decimal(0)  # adjustments either way and expiries, net
    lifetime_requests: int = 0  # charged calls, less those refunded as failed
    version: int = 0  # = the sequence of the latest ledger entry
    last_op: LastOp | None = None
    # Open holds by id (`reserved` is their sum). None on an item written before holds
    # existed: storage creates the map on the first reserve.
    holds: dict[str, OpenHold] | None = None
    # Active credit lots by id (`domain.lots`): their remainders, summing to `balance`. None
    # on an item written before lots: the write path gives it its balance as one lot.
    lots: dict[str, Credits] | None = None
    # How many lots were ever added to `lots`: every burn is conditioned on it, so a lot
    # added after a writer's plan (it may outrank the planned ones) refuses that plan.
    lot_gen: int = 0
    created_at: AwareDatetime
    updated_at: AwareDatetime
    updated_by: str | None = None  # the operator behind the latest settings change

    @property
    def spendable(self) -> Decimal:
        """What a debit may take: available plus the overdraft allowance."""
        return self.available + self.overdraft_limit

    @property
    def low_balance(self) -> bool:
        return (
            self.low_balance_threshold is not None and self.available <= self.low_balance_threshold
        )


class Described(CamelModel):
    """What an operation says about itself, carried unchanged onto its ledger entry."""

    type: EntryType
    amount: Credits  # signed
    description: ShortText = ""
    reference: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    action: str | None = None
    quantity: Credits | None = None
    endpoint: str | None = None
    refund_of: str | None = None
    actor: str | None = None
    # Holds: the hold a hold, capture or release entry belongs to; `held` is the signed
    # change of `reserved` (+amount on a hold, -amount held on its capture or release).
    hold_id: str | None = None
    held: Credits | None = None
    # A hold's expiry on its hold entry; a lot's on the entry that opens the lot.
    expires_at: AwareDatetime | None = None
    reason: ReleaseReason | None = None  # on release entries: released or expired
    # Credit lots (`domain.lots`): the lot a credit (or a refund's homeless share) opens and
    # its priority, or the lot an expiry expires.
    lot_id: str | None = None
    priority: int | None = None

    def description_fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in Described.model_fields}


class LedgerEntry(Described):
    """One immutable ledger line. `amount` is signed; `sequence` is gapless per account."""

    account_id: AccountId
    transaction_id: str
    sequence: int
    balance_after: Credits
    available_after: Credits | None = None
    idempotency_key: str | None = None
    created_at: AwareDatetime
    # Which lots paid (negative) or received (positive) how much (`LastOp.lots`).
    lots: dict[str, Credits] | None = None

    @property
    def day(self) -> date:
        return self.created_at.date()


class OperationResult(CamelModel):
    """What a ledger write returns (and what a replay returns again)."""

    transaction_id: str
    amount: Credits
    balance_after: Credits
    available: Credits
    replayed: bool = False
    # Holds: the hold, its expiry (reserve) and what returned to `available` (capture,
    # release). Absent from other operations' results.
    hold_id: str | None = None
    expires_at: AwareDatetime | None = None
    released: Credits | None = None
    # Which credit lots paid (negative) or received (positive) how much.
    lots: dict[str, Credits] | None = None

    @model_serializer(mode="wrap")
    def _without_absent_fields(self, handler: SerializerFunctionWrapHandler) -> Any:
        dumped = handler(self)
        for name in _OPTIONAL_RESULT_FIELDS:
            if isinstance(dumped, dict) and getattr(self, name) is None:
                dumped.pop(name, None)
                dumped.pop(to_camel(name), None)
        return dumped


_OPTIONAL_RESULT_FIELDS = ("hold_id", "expires_at", "released", "lots")


class IdempotencyState(StrEnum):
    PENDING = "pending"  # leased: the operation may or may not have reached the account
    COMPLETED = "completed"  # applied: `result` is what every replay returns


class Operation(Described):
    """A balance change as requested, independent of the state it lands on: kept in the
    idempotency record from the lease on, so its ledger entry can always be written."""

    # Usage of a refund is credited back to the day of the call it refunds.
    usage_day: date | None = None
    failed_call: bool = False
    # A refund or void: the share of its amount each paying lot gets back
    # (`domain.lots.returns_of`); `lot_id` opens a new lot for shares that cannot go home.
    returns: dict[str, Credits] | None = None
    # A refund: what earlier refunds of the charge had returned when `returns` was
    # computed; its claim holds only while that is still so.
    refunded_before: Credits | None = None
    # An expiry: the remainder its lot held when it was planned (`domain.lots.plan_expiry`).
    lot_seen: Credits | None = None


class IdempotencyRecord(CamelModel):
    """The lease, then the result, of one operation under one idempotency key."""

    account_id: AccountId
    idempotency_key: IdempotencyKey
    fingerprint: str
    op_id: str  # changes only when recovery takes over an expired lease
    state: IdempotencyState
    operation: Operation
    lease_expires_at: AwareDatetime
    created_at: AwareDatetime  # when the operation was leased (the entry's earliest time)
    result: OperationResult | None = None
    sequence: int | None = None  # the account version the operation produced
    expires_at: int | None = None  # epoch seconds (TTL): set once the ledger entry exists


class UsageIncrement(CamelModel):
    """What one ledger write adds to its day's usage aggregate."""

    day: date
    calls: int = 0
    failed: int = 0
    credits_used: Decimal = Decimal(0)
    by_type: dict[str, Decimal] = Field(default_factory=dict)
    by_endpoint: dict[str, int] = Field(default_factory=dict)
    by_endpoint_credits: dict[str, Decimal] = Field(default_factory=dict)


class DailyUsage(CamelModel):
    day: date
    calls: int = 0
    failed: int = 0
    credits_used: Credits = Decimal(0)
    by_type: dict[str, Decimal] = Field(default_factory=dict)
    by_endpoint: dict[str, int] = Field(default_factory=dict)
    by_endpoint_credits: dict[str, Decimal] = Field(default_factory=dict)


class PriceList(CamelModel):
    """Billable action -> credits per unit (Voxpria: voice call per minute = 3, SMS = 1)."""

    version: int = 1
    prices: dict[ActionName, PositiveAmount]
    # Actions counted in whole units (a message, a request): a debit or reserve of one of
    # them with a fractional `quantity` is a VALIDATION_ERROR, not silently priced.
    whole_units: list[ActionName] = Field(default_factory=list)
    updated_at: AwareDatetime = Field(default_factory=utc_now)


DEFAULT_PRICES: dict[str, Decimal] = {
    "voice_call_minute": Decimal(3),
    "sms": Decimal(1),
    "transcription_minute": Decimal(1),
    "api_call": Decimal(1),
}
DEFAULT_WHOLE_UNITS: frozenset[str] = frozenset({"sms", "api_call"})


class Hold(CamelModel):
    """A hold as customers and the ExpirerFunction see it: the HOLD item, written from the
    account's stream (`ledger.materializer`). The account item's `holds` map decides."""

    account_id: AccountId
    hold_id: str
    status: HoldStatus
    amount: Credits  # held
    created_at: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None
    description: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)
    action: str | None = None
    endpoint: str | None = None
    opened_by: str | None = None  # the hold entry's transaction id
    captured: Credits | None = None
    released: Credits | None = None
    closed_at: AwareDatetime | None = None
    closed_by: str | None = None  # the capture or release entry's transaction id


class Lot(CamelModel):
    """What a credit lot was granted as: the LOT item, written from the account's stream
    when the lot opens. What is left of it is the account item's `lots.<lotId>`."""

    account_id: AccountId
    lot_id: str
    source: EntryType  # the entry that opened it: topup, grant, adjustment, refund, void
    initial_amount: Credits
    priority: int
    expires_at: AwareDatetime | None = None
    granted_at: AwareDatetime
    reference: str | None = None  # purchase order or payment id
    description: str = ""
    granted_by: str | None = None  # the opening entry's transaction id


class ApiKeyMapping(CamelModel):
    api_key_id: str
    account_id: AccountId
    plan: str
    created_at: AwareDatetime
    created_by: str | None = None  # the operator who issued it


__all__ = [
    "Account",
    "AccountId",
    "AccountStatus",
    "ActionName",
    "ApiKeyMapping",
    "AutoReloadPending",
    "DailyUsage",
    "Described",
    "Endpoint",
    "EntryType",
    "Hold",
    "HoldStatus",
    "IdempotencyKey",
    "IdempotencyRecord",
    "IdempotencyState",
    "LastOp",
    "LedgerEntry",
    "Lot",
    "Metadata",
    "OpenHold",
    "Operation",
    "OperationResult",
    "PositiveAmount",
    "PriceList",
    "Quantity",
    "Reference",
    "ReleaseReason",
    "ShortText",
    "SubscriptionStatus",
    "UsageIncrement",
    "utc_now",
]
