"""Operations and what they become: transaction ids, ledger entries and results.

An operation's ledger entry is built from the operation (kept in its idempotency record)
and the account image its update produced (sequence, balance and available after), so the
writer, the materializer and the reconciler all build the very same entry."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal

from serverless_credits.domain.models import (
    Account,
    EntryType,
    LedgerEntry,
    Operation,
    OperationResult,
    UsageIncrement,
)
from serverless_credits.domain.money import normalize

TRANSACTION_PREFIX = "txn_"
_TRANSACTION_ID = re.compile(r"^txn_([1-9][0-9]{0,11})_([0-9a-f]{12})$")
ONE_MICROSECOND = timedelta(microseconds=1)
DEFAULT_TYPE = "debit"  # byType key for debits that name no action
# Entries that are billable calls in daily usage: a held call counts once it is captured.
BILLABLE = frozenset({EntryType.DEBIT, EntryType.CAPTURE})


def described(description: str, action: str | None, quantity: Decimal | None) -> str:
    """A debit's or reserve's description: the caller's, else one from its billable action
    (`voice_call_minute x 2`), so an entry charged by action never reads blank; a plain
    amount with none stays blank."""
    if description or action is None:
        return description
    return f"{action} x {normalize(quantity if quantity is not None else Decimal(1)):f}"


def transaction_id(sequence: int, op_id: str) -> str:
    """Unique, exact at response time (the sequence comes back with the update) and
    pointing at its entry: `txn_<sequence>_<12 hex of the operation id>`."""
    return f"{TRANSACTION_PREFIX}{sequence}_{op_id[:12]}"


def sequence_of(transaction: str) -> int | None:
    """The ledger sequence a transaction id names, or None when it is not one of ours."""
    match = _TRANSACTION_ID.fullmatch(transaction)
    return int(match.group(1)) if match else None


def entry_time(leased_at: datetime, previous: datetime | None) -> datetime:
    """Entry times strictly increase with the sequence, whatever the writers' clocks did."""
    if previous is not None and leased_at <= previous:
        return previous + ONE_MICROSECOND
    return leased_at


def ledger_entry(
    *,
    account_id: str,
    op_id: str,
    idempotency_key: str,
    operation: Operation,
    after: Account,
    created_at: datetime,
    lots: dict[str, Decimal] | None = None,
) -> LedgerEntry:
    """The entry of `operation` at version `after`; `lots` is the version's allocation
    (`LastOp.lots`), which only the image that version produced knows."""
    return LedgerEntry(
        account_id=account_id,
        transaction_id=transaction_id(after.version, op_id),
        sequence=after.version,
        balance_after=normalize(after.balance),
        available_after=normalize(after.available),
        idempotency_key=idempotency_key,
        created_at=created_at,
        lots=lots or None,
        **{**operation.description_fields(), "amount": normalize(operation.amount)},
    )


def result_of(op_id: str, operation: Operation, after: Account) -> OperationResult:
    """What the caller gets back, exact from the update's `ALL_NEW` image. For a hold step
    `amount` is what the step is about: held (reserve), taken (capture) or given back
    (release); `released` is what returned to `available`."""
    amount = abs(operation.amount)
    hold: dict[str, object] = {}
    if operation.hold_id is not None and operation.held is not None:
        hold["hold_id"] = operation.hold_id
        if operation.type is EntryType.HOLD:
            amount = operation.held
            hold["expires_at"] = operation.expires_at
        else:  # capture or release: what was held, less what a capture took
            released = normalize(-operation.held + operation.amount)
            hold["released"] = released
            if operation.type is EntryType.RELEASE:
                amount = released
    return OperationResult(
        transaction_id=transaction_id(after.version, op_id),
        amount=normalize(amount),
        balance_after=normalize(after.balance),
        available=normalize(after.available),
        lots=allocation(op_id, after),
        **hold,
    )


def allocation(op_id: str, after: Account) -> dict[str, Decimal] | None:
    """Which lots the operation `op_id` moved, from the image of the version it made."""
    last = after.last_op
    return dict(last.lots) if last is not None and last.id == op_id and last.lots else None


def usage_of(entry: LedgerEntry, operation: Operation) -> UsageIncrement | None:
    """What an entry adds to daily usage: debits and captures count as calls, refunds are
    netted back on the day of the call they refund; credits, holds and releases are not
    usage."""
    by_type = operation.action or DEFAULT_TYPE
    endpoint = operation.endpoint
    if operation.refund_of is not None:
        credited = normalize(operation.amount)
        return UsageIncrement(
            day=operation.usage_day or entry.day,
            failed=1 if operation.failed_call else 0,
            credits_used=-credited,
            by_type={by_type: -credited},
            by_endpoint_credits={endpoint: -credited} if endpoint else {},
        )
    if entry.type not in BILLABLE:
        return None
    charged = normalize(-operation.amount)
    return UsageIncrement(
        day=entry.day,
        calls=1,
        credits_used=charged,
        by_type={by_type: charged},
        by_endpoint={endpoint: 1} if endpoint else {},
        by_endpoint_credits={endpoint: charged} if endpoint else {},
    )
