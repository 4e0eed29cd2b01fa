"""Operations and what they become (domain.operations): transaction ids, ledger entries,
results, usage and entry times. No AWS."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from serverless_credits.domain.models import Account, EntryType, LedgerEntry, Operation
from serverless_credits.domain.operations import (
    ONE_MICROSECOND,
    entry_time,
    ledger_entry,
    result_of,
    sequence_of,
    transaction_id,
    usage_of,
)

AT = datetime(2024, 5, 1, 23, 59, 59, 999999, tzinfo=UTC)
OP_ID = "0123456789abcdef0123456789abcdef"


def after(version: int = 7, **fields: Any) -> Account:
    figures: dict[str, Any] = {
        "balance": Decimal("42.500000"),
        "available": Decimal("40.5"),
        "reserved": Decimal(2),
        **fields,
    }
    return Account(account_id="acct_ops", version=version, created_at=AT, updated_at=AT, **figures)


def entry_for(operation: Operation, version: int = 7, created_at: datetime = AT) -> LedgerEntry:
    return ledger_entry(
        account_id="acct_ops",
        op_id=OP_ID,
        idempotency_key="key-1",
        operation=operation,
        after=after(version),
        created_at=created_at,
    )


# ---------------------------------------------------------------- transaction ids
def test_a_transaction_id_names_the_sequence_and_the_operation() -> None:
    assert transaction_id(7, OP_ID) == "txn_7_0123456789ab"
    assert transaction_id(999_999_999_999, OP_ID) == "txn_999999999999_0123456789ab"
    assert sequence_of(transaction_id(7, OP_ID)) == 7
    assert sequence_of(transaction_id(999_999_999_999, OP_ID)) == 999_999_999_999


@pytest.mark.parametrize(
    "text",
    [
        "",
        "txn_",
        "txn_7",
        "txn_7_",
        "txn_0_0123456789ab",  # sequences start at 1
        "txn_07_0123456789ab",
        "txn_1000000000000_0123456789ab",  # beyond 12 digits
        "txn_7_0123456789AB",
        "txn_7_0123456789a",
        "txn_7_0123456789abc",
        "TXN_7_0123456789ab",
        "txn_20240101T000000000000Z",  # the old time-based id
        " txn_7_0123456789ab",
        "txn_7_0123456789ab\n",
    ],
)
def test_anything_else_names_no_sequence(text: str) -> None:
    assert sequence_of(text) is None


# ---------------------------------------------------------------- entries and results
def test_an_entry_is_the_operation_on_the_version_it_produced() -> None:
    operation = Operation(
        type=EntryType.DEBIT,
        amount=Decimal("-2.50"),
        description="A call",
        reference="ref",
        metadata={"n": 1},
        action="voice_call_minute",
        quantity=Decimal("0.5"),
        endpoint="/v1/call",
        actor="admin@example.com",
    )

    entry = entry_for(operation)

    assert entry.transaction_id == "txn_7_0123456789ab"
    assert (entry.sequence, entry.type, entry.created_at) == (7, EntryType.DEBIT, AT)
    assert (str(entry.amount), str(entry.balance_after), str(entry.available_after)) == (
        "-2.5",
        "42.5",
        "40.5",
    )
    assert (entry.description, entry.reference, entry.metadata) == ("A call", "ref", {"n": 1})
    assert (entry.action, entry.quantity, entry.endpoint) == (
        "voice_call_minute",
        Decimal("0.5"),
        "/v1/call",
    )
    assert (entry.idempotency_key, entry.actor, entry.refund_of) == (
        "key-1",
        "admin@example.com",
        None,
    )


def test_the_writer_and_the_materializer_build_the_very_same_entry() -> None:
    operation = Operation(type=EntryType.TOPUP, amount=Decimal(5), reference="PO-1")

    assert entry_for(operation) == entry_for(operation.model_copy())


def test_a_result_is_exact_from_the_image_and_names_the_same_transaction() -> None:
    operation = Operation(type=EntryType.DEBIT, amount=Decimal("-2.50"))

    result = result_of(OP_ID, operation, after())

    assert result.transaction_id == entry_for(operation).transaction_id
    assert (str(result.amount), str(result.balance_after), str(result.available)) == (
        "2.5",
        "42.5",
        "40.5",
    )
    assert result.replayed is False


# ---------------------------------------------------------------- usage
def test_a_debit_is_one_call_with_its_credits_by_action_and_endpoint() -> None:
    operation = Operation(
        type=EntryType.DEBIT, amount=Decimal(-6), action="sms", endpoint="/v1/sms"
    )

    usage = usage_of(entry_for(operation), operation)

    assert usage is not None
    assert (usage.day, usage.calls, usage.failed, usage.credits_used) == (
        AT.date(),
        1,
        0,
        Decimal(6),
    )
    assert (usage.by_type, usage.by_endpoint, usage.by_endpoint_credits) == (
        {"sms": Decimal(6)},
        {"/v1/sms": 1},
        {"/v1/sms": Decimal(6)},
    )


def test_a_debit_without_action_or_endpoint_counts_as_debit() -> None:
    operation = Operation(type=EntryType.DEBIT, amount=Decimal(-1))

    usage = usage_of(entry_for(operation), operation)

    assert usage is not None
    assert (usage.by_type, usage.by_endpoint, usage.by_endpoint_credits) == (
        {"debit": Decimal(1)},
        {},
        {},
    )


def test_a_refund_nets_the_usage_of_the_day_of_its_call() -> None:
    call_day = date(2024, 4, 30)
    operation = Operation(
        type=EntryType.REFUND,
        amount=Decimal(4),
        action="voice_call_minute",
        endpoint="/v1/call",
        refund_of="txn_3_0123456789ab",
        usage_day=call_day,
        failed_call=True,
    )

    usage = usage_of(entry_for(operation), operation)

    assert usage is not None
    assert (usage.day, usage.calls, usage.failed, usage.credits_used) == (
        call_day,
        0,
        1,
        Decimal(-4),
    )
    assert usage.by_type == {"voice_call_minute": Decimal(-4)}
    assert usage.by_endpoint == {}
    assert usage.by_endpoint_credits == {"/v1/call": Decimal(-4)}


def test_a_refund_of_a_call_that_succeeded_is_not_a_failure() -> None:
    operation = Operation(type=EntryType.REFUND, amount=Decimal(1), refund_of="txn_3_0123456789ab")

    usage = usage_of(entry_for(operation), operation)

    assert usage is not None
    assert (usage.day, usage.failed, usage.by_type) == (AT.date(), 0, {"debit": Decimal(-1)})


@pytest.mark.parametrize(
    ("entry_type", "amount"),
    [
        (EntryType.TOPUP, "5"),
        (EntryType.GRANT, "5"),
        (EntryType.ADJUSTMENT, "5"),
        (EntryType.ADJUSTMENT, "-5"),
    ],
)
def test_credits_and_adjustments_are_not_usage(entry_type: EntryType, amount: str) -> None:
    operation = Operation(type=entry_type, amount=Decimal(amount))

    assert usage_of(entry_for(operation), operation) is None


def test_usage_counts_on_the_entrys_day_not_the_writers() -> None:
    operation = Operation(type=EntryType.DEBIT, amount=Decimal(-1))
    # Made unique one microsecond past midnight: the entry, and its usage, are the next day's.
    entry = entry_for(operation, created_at=entry_time(AT, AT))

    usage = usage_of(entry, operation)

    assert usage is not None
    assert usage.day == date(2024, 5, 2)


# ---------------------------------------------------------------- entry times
def test_entry_times_strictly_increase_with_the_sequence() -> None:
    assert entry_time(AT, None) == AT
    assert entry_time(AT, AT - ONE_MICROSECOND) == AT
    assert entry_time(AT, AT) == AT + ONE_MICROSECOND
    # A writer whose clock ran behind still lands after the previous entry.
    assert entry_time(AT - timedelta(seconds=5), AT) == AT + ONE_MICROSECOND

    stamps: list[datetime] = []
    previous = None
    for _ in range(5):
        previous = entry_time(AT, previous)
        stamps.append(previous)
    assert stamps == [AT + ONE_MICROSECOND * n for n in range(5)]
