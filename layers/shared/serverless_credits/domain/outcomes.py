"""What a conditional write can report besides success. Storage raises these from DynamoDB's
failures (with the image the condition saw); use cases decide what they mean."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum

from serverless_credits.domain.models import Account, IdempotencyRecord, UsageIncrement


class ChangeRefused(Exception):
    """The account's condition refused a change; `current` is the item at that moment
    (None when the account does not exist)."""

    def __init__(self, current: Account | None) -> None:
        super().__init__("account condition failed")
        self.current = current


class OutcomeUnknown(Exception):
    """The request timed out or the connection dropped: the change may have been applied."""


class KeyTaken(Exception):
    """A record under this idempotency key exists (and has not expired): `record` is it."""

    def __init__(self, record: IdempotencyRecord) -> None:
        super().__init__("idempotency key taken")
        self.record = record


class RefundLimitReached(Exception):
    def __init__(self, refunded: Decimal) -> None:
        super().__init__("refund would exceed the refundable amount")
        self.refunded = refunded


class RefundStale(Exception):
    """Another refund of the same charge claimed its share since this one computed where
    its credits go back (`domain.lots.returns_of` depends on what was refunded before):
    compute them again."""

    def __init__(self, refunded: Decimal) -> None:
        super().__init__("another refund of the charge claimed first")
        self.refunded = refunded


class EntryWrite(Enum):
    """What a conditional put of a ledger entry found."""

    WRITTEN = "written"
    EXISTED = "existed"  # written before by the materializer (a redelivery)
    FILLED = "filled"  # written before by the reconciler, which counted its usage too


@dataclass(frozen=True)
class LedgerHead:
    """How far an account's ledger is written: every entry up to `version`, the one at
    `version` created at `at`."""

    version: int
    at: datetime | None


@dataclass(frozen=True)
class Counted:
    """One ledger version's contribution to a day's usage item."""

    version: int
    usage: UsageIncrement | None  # None: the entry is indexed on the day but is not usage
    indexed: bool = True  # the entry was created on this day (the day's sequence range)
