"""The DynamoDB storage modules on moto: how each DynamoDB outcome becomes a domain outcome
(the account update, the idempotency lease, ledger entries, usage counting, refund guards),
and reads."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

from serverless_credits import wiring
from serverless_credits.domain.commands import CreateAccountCommand, CreditCommand, DebitCommand
from serverless_credits.domain.errors import AccountNotFound, ServiceBusy, StorageError
from serverless_credits.domain.models import (
    Account,
    ApiKeyMapping,
    EntryType,
    IdempotencyRecord,
    IdempotencyState,
    LastOp,
    LedgerEntry,
    Operation,
    OperationResult,
    PriceList,
    UsageIncrement,
)
from serverless_credits.domain.operations import transaction_id
from serverless_credits.domain.outcomes import (
    ChangeRefused,
    Counted,
    EntryWrite,
    KeyTaken,
    LedgerHead,
    OutcomeUnknown,
    RefundLimitReached,
)
from serverless_credits.domain.posting import posting_for
from serverless_credits.ledger.operations import Ledger
from serverless_credits.storage import keys
from serverless_credits.storage.items import from_item, to_item
from serverless_credits.storage.ledger_entries import EntryRange
from serverless_credits.storage.store import CreditsStore

ACCOUNT = "acct_store"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def ledger(moto_store: CreditsStore) -> Ledger:
    wiring.ledger().create_account(
        CreateAccountCommand(account_id=ACCOUNT, opening_balance=Decimal(100))
    )
    return wiring.ledger()


def debit_of(amount: int | str) -> Operation:
    return Operation(type=EntryType.DEBIT, amount=-Decimal(amount))


def last_op(op_id: str = "0123456789abcdef", key: str = "k") -> LastOp:
    return LastOp(id=op_id, key=key, type=EntryType.DEBIT, amount=Decimal(-1), at=NOW)


def view(store: CreditsStore, account_id: str = ACCOUNT) -> Account:
    """The account as the writer knows it (an empty one when it does not exist)."""
    found = store.accounts.get(account_id, consistent=True)
    return found or Account(account_id=account_id, created_at=NOW, updated_at=NOW)


def apply(store: CreditsStore, operation: Operation, account_id: str = ACCOUNT) -> Account:
    return store.accounts.apply(
        account_id,
        posting_for(operation, NOW, view(store, account_id)),
        last_op(),
        assumed_overdraft=Decimal(0),
        now=NOW,
    )


def fail_calls_with(store: CreditsStore, operation: str, error: Exception) -> None:
    def fail(**_: Any) -> None:
        raise error

    store.client.meta.events.register(f"before-call.dynamodb.{operation}", fail)


def client_error(code: str, operation: str = "UpdateItem") -> ClientError:
    response: dict[str, Any] = {"Error": {"Code": code, "Message": code}}
    return ClientError(response, operation)  # type: ignore[arg-type]


def record(
    key: str = "k",
    *,
    op_id: str = "op-1",
    lease: timedelta = timedelta(seconds=60),
    account_id: str = ACCOUNT,
) -> IdempotencyRecord:
    return IdempotencyRecord(
        account_id=account_id,
        idempotency_key=key,
        fingerprint="f" * 64,
        op_id=op_id,
        state=IdempotencyState.PENDING,
        operation=debit_of(1),
        lease_expires_at=NOW + lease,
        created_at=NOW,
    )


def result(sequence: int = 2, op_id: str = "op-1") -> OperationResult:
    return OperationResult(
        transaction_id=transaction_id(sequence, op_id),
        amount=Decimal(1),
        balance_after=Decimal(99),
        available=Decimal(99),
    )


# ---------------------------------------------------------------- the account update
def test_apply_adds_the_deltas_and_the_version_and_names_the_operation(
    moto_store: CreditsStore, ledger: Ledger
) -> None:
    after = apply(moto_store, debit_of("2.5"))

    assert (after.balance, after.available, after.used, after.total) == (
        Decimal("97.5"),
        Decimal("97.5"),
        Decimal("2.5"),
        Decimal(100),
    )
    assert (after.version, after.lifetime_requests) == (2, 1)
    assert after.last_op == last_op()
    assert after.updated_at == NOW
    assert moto_store.accounts.get(ACCOUNT, consistent=True) == after


def test_a_refused_update_carries_the_account_as_it_was_and_changes_nothing(
    moto_store: CreditsStore, ledger: Ledger
) -> None:
    before = moto_store.accounts.get(ACCOUNT, consistent=True)

    with pytest.raises(ChangeRefused) as refused:
        apply(moto_store, debit_of("100.000001"))

    assert refused.value.current == before
    assert moto_store.accounts.get(ACCOUNT, consistent=True) == before


def test_an_inactive_account_refuses_a_debit_but_not_a_credit(
    moto_store: CreditsStore, ledger: Ledger
) -> None:
    moto_store.accounts.update_settings(ACCOUNT, {"status": "suspended"})

    with pytest.raises(ChangeRefused) as refused:
        apply(moto_store, debit_of(1))
    credited = apply(moto_store, Operation(type=EntryType.TOPUP, amount=Decimal(5)))

    assert refused.value.current is not None
    assert refused.value.current.status == "suspended"
    assert (credited.balance, credited.total, credited.lifetime_requests) == (
        Decimal(105),
        Decimal(105),
        0,
    )


def test_the_funds_condition_pins_the_overdraft_the_writer_assumed(
    moto_store: CreditsStore, ledger: Ledger
) -> None:
    moto_store.accounts.update_settings(ACCOUNT, {"overdraftLimit": Decimal(10)})
    posting = posting_for(debit_of(105), NOW, view(moto_store))

    with pytest.raises(ChangeRefused) as stale:  # assumed no overdraft: refused, not trusted
        moto_store.accounts.apply(
            ACCOUNT, posting, last_op(), assumed_overdraft=Decimal(0), now=NOW
        )
    with pytest.raises(ChangeRefused):  # assumed more than the account allows: refused
        moto_store.accounts.apply(
            ACCOUNT, posting, last_op(), assumed_overdraft=Decimal(50), now=NOW
        )
    after = moto_store.accounts.apply(
        ACCOUNT, posting, last_op(), assumed_overdraft=Decimal(10), now=NOW
    )

    assert stale.value.current is not None
    assert stale.value.current.overdraft_limit == 10
    assert (after.balance, after.available) == (Decimal(-5), Decimal(-5))


def test_an_update_of_an_account_that_does_not_exist_is_refused_without_an_image(
    moto_store: CreditsStore,
) -> None:
    with pytest.raises(ChangeRefused) as refused:
        apply(moto_store, Operation(type=EntryType.TOPUP, amount=Decimal(1)), "acct_gone")

    assert refused.value.current is None
    assert moto_store.accounts.get("acct_gone") is None


@pytest.mark.parametrize(
    "error",
    [
        ReadTimeoutError(endpoint_url="http://dynamodb"),
        ConnectionClosedError(endpoint_url="http://dynamodb"),
        client_error("InternalServerError"),  # a 5xx may have applied it
        client_error("ServiceUnavailable"),
    ],
)
def test_a_timeout_a_dropped_connection_or_a_server_error_is_an_unknown_outcome(
    moto_store: CreditsStore, ledger: Ledger, error: Exception
) -> None:
    fail_calls_with(moto_store, "UpdateItem", error)

    with pytest.raises(OutcomeUnknown):
        apply(moto_store, debit_of(1))


@pytest.mark.parametrize("code", ["ThrottlingException", "ProvisionedThroughputExceededException"])
def test_throttling_that_outlived_the_retries_is_service_busy(
    moto_store: CreditsStore, ledger: Ledger, code: str
) -> None:
    fail_calls_with(moto_store, "UpdateItem", client_error(code))

    with pytest.raises(ServiceBusy):
        apply(moto_store, debit_of(1))


@pytest.mark.parametrize("code", ["ValidationException", "AccessDeniedException"])
def test_other_failures_are_storage_errors(
    moto_store: CreditsStore, ledger: Ledger, code: str
) -> None:
    fail_calls_with(moto_store, "UpdateItem", client_error(code))

    with pytest.raises(StorageError):
        apply(moto_store, debit_of(1))


# ---------------------------------------------------------------- idempotency records
def test_a_lease_is_refused_while_a_record_exists_and_hands_the_record_back(
    moto_store: CreditsStore,
) -> None:
    first = record()
    moto_store.idempotency.lease(first, NOW)

    with pytest.raises(KeyTaken) as taken:
        moto_store.idempotency.lease(record(op_id="op-2"), NOW + timedelta(days=30))

    assert taken.value.record == first
    assert moto_store.idempotency.get(ACCOUNT, "k") == first
    assert moto_store.idempotency.get(ACCOUNT, "unused") is None


def test_complete_records_the_result_without_a_ttl_and_only_for_its_operation(
    moto_store: CreditsStore,
) -> None:
    moto_store.idempotency.lease(record(), NOW)

    moto_store.idempotency.complete(ACCOUNT, "k", op_id="op-other", result=result(), sequence=2)
    assert moto_store.idempotency.get(ACCOUNT, "k") == record()
    moto_store.idempotency.complete(ACCOUNT, "k", op_id="op-1", result=result(), sequence=2)

    completed = moto_store.idempotency.get(ACCOUNT, "k")
    assert completed is not None
    assert (completed.state, completed.result, completed.sequence) == (
        IdempotencyState.COMPLETED,
        result(),
        2,
    )
    assert completed.expires_at is None  # the entry may not exist yet: never expire
    with pytest.raises(KeyTaken):
        moto_store.idempotency.lease(record(op_id="op-2"), NOW + timedelta(days=400))


def test_finalize_keeps_the_writers_result_and_starts_the_retention(
    moto_store: CreditsStore,
) -> None:
    moto_store.idempotency.lease(record(), NOW)
    moto_store.idempotency.complete(ACCOUNT, "k", op_id="op-1", result=result(), sequence=2)
    expires = int((NOW + timedelta(hours=48)).timestamp())
    other = result().model_copy(update={"balance_after": Decimal(1)})

    assert not moto_store.idempotency.finalize(
        ACCOUNT, "k", op_id="op-other", result=other, sequence=2, expires_at=expires
    )
    assert moto_store.idempotency.finalize(
        ACCOUNT, "k", op_id="op-1", result=other, sequence=2, expires_at=expires
    )

    final = moto_store.idempotency.get(ACCOUNT, "k")
    assert final is not None
    assert (final.state, final.result, final.expires_at) == (
        IdempotencyState.COMPLETED,
        result(),
        expires,
    )
    # Past its TTL, a record DynamoDB has not deleted yet counts as absent.
    with pytest.raises(KeyTaken):
        moto_store.idempotency.lease(record(op_id="op-2"), NOW + timedelta(hours=47))
    moto_store.idempotency.lease(record(op_id="op-2"), NOW + timedelta(hours=49))
    reused = moto_store.idempotency.get(ACCOUNT, "k")
    assert reused is not None
    assert (reused.op_id, reused.state) == ("op-2", IdempotencyState.PENDING)


def test_finalize_completes_a_record_its_writer_never_completed(
    moto_store: CreditsStore,
) -> None:
    moto_store.idempotency.lease(record(), NOW)

    assert moto_store.idempotency.finalize(
        ACCOUNT, "k", op_id="op-1", result=result(), sequence=2, expires_at=1
    )

    final = moto_store.idempotency.get(ACCOUNT, "k")
    assert final is not None
    assert (final.state, final.result, final.sequence) == (IdempotencyState.COMPLETED, result(), 2)


def test_take_over_moves_a_pending_lease_to_a_new_operation_once(
    moto_store: CreditsStore,
) -> None:
    moto_store.idempotency.lease(record(), NOW)
    lease = NOW + timedelta(minutes=5)

    assert moto_store.idempotency.take_over(ACCOUNT, "k", "op-1", "op-2", lease)
    assert not moto_store.idempotency.take_over(ACCOUNT, "k", "op-1", "op-3", lease)

    taken = moto_store.idempotency.get(ACCOUNT, "k")
    assert taken is not None
    assert (taken.op_id, taken.lease_expires_at, taken.state) == (
        "op-2",
        lease,
        IdempotencyState.PENDING,
    )
    moto_store.idempotency.complete(ACCOUNT, "k", op_id="op-2", result=result(), sequence=2)
    assert not moto_store.idempotency.take_over(ACCOUNT, "k", "op-2", "op-4", lease)


def test_release_drops_only_its_own_pending_lease(moto_store: CreditsStore) -> None:
    moto_store.idempotency.lease(record(), NOW)
    moto_store.idempotency.lease(record("done"), NOW)
    moto_store.idempotency.complete(ACCOUNT, "done", op_id="op-1", result=result(), sequence=2)

    moto_store.idempotency.release(ACCOUNT, "k", "op-other")
    assert moto_store.idempotency.get(ACCOUNT, "k") is not None
    moto_store.idempotency.release(ACCOUNT, "done", "op-1")  # completed: kept
    assert moto_store.idempotency.get(ACCOUNT, "done") is not None
    moto_store.idempotency.release(ACCOUNT, "k", "op-1")
    assert moto_store.idempotency.get(ACCOUNT, "k") is None
    moto_store.idempotency.release(ACCOUNT, "never-leased", "op-1")  # nothing to drop


def test_records_are_read_in_batches_and_found_by_the_version_they_produced(
    moto_store: CreditsStore,
) -> None:
    for number in range(150):
        moto_store.idempotency.lease(record(f"k{number}"), NOW)
    for number in (3, 120):
        moto_store.idempotency.complete(
            ACCOUNT, f"k{number}", op_id="op-1", result=result(number + 1), sequence=number + 1
        )
    moto_store.idempotency.lease(record("k3", account_id="acct_store_other"), NOW)

    found = moto_store.idempotency.get_many(
        [(ACCOUNT, f"k{n}") for n in range(150)] + [(ACCOUNT, "k0"), (ACCOUNT, "absent")]
    )
    by_sequence = moto_store.idempotency.by_sequence(ACCOUNT, [4, 121, 7])

    assert len(found) == 150
    assert found[(ACCOUNT, "k42")] == record("k42")
    assert {s: r.idempotency_key for s, r in by_sequence.items()} == {4: "k3", 121: "k120"}


# ---------------------------------------------------------------- ledger entries
def entry(sequence: int, amount: int = -1, **fields: Any) -> LedgerEntry:
    return LedgerEntry(
        account_id=ACCOUNT,
        transaction_id=transaction_id(sequence, "0123456789abcdef"),
        sequence=sequence,
        type=EntryType.DEBIT if amount < 0 else EntryType.TOPUP,
        amount=Decimal(amount),
        balance_after=Decimal(100 + amount * sequence),
        created_at=NOW + timedelta(microseconds=sequence),
        **fields,
    )


def test_an_entry_is_written_once_under_its_sequence(moto_store: CreditsStore) -> None:
    assert moto_store.entries.put(entry(1)) is EntryWrite.WRITTEN
    # A redelivery changes nothing, and says so.
    assert moto_store.entries.put(entry(1, amount=-5)) is EntryWrite.EXISTED
    # An entry the reconciler filled is told apart (it counted its usage itself).
    assert moto_store.entries.put(entry(5), filled=True) is EntryWrite.WRITTEN
    assert moto_store.entries.put(entry(5)) is EntryWrite.FILLED
    assert moto_store.entries.get(ACCOUNT, 5) == entry(5)

    assert moto_store.entries.get(ACCOUNT, 1) == entry(1)
    assert moto_store.entries.get(ACCOUNT, 2) is None
    assert moto_store.entries.get("acct_other", 1) is None
    item = moto_store.client.get_item(
        TableName=moto_store.table_name,
        Key={"pk": {"S": keys.ledger_pk(ACCOUNT)}, "sk": {"S": "SEQ#000000000001"}},
    )
    assert "Item" in item


def test_the_head_only_moves_forward(moto_store: CreditsStore) -> None:
    assert moto_store.entries.head(ACCOUNT) == LedgerHead(0, None)

    moto_store.entries.advance_head(ACCOUNT, LedgerHead(3, NOW))
    moto_store.entries.advance_head(ACCOUNT, LedgerHead(2, NOW - timedelta(seconds=1)))
    moto_store.entries.advance_head(ACCOUNT, LedgerHead(3, NOW + timedelta(seconds=1)))

    assert moto_store.entries.head(ACCOUNT) == LedgerHead(3, NOW)
    moto_store.entries.advance_head(ACCOUNT, LedgerHead(4, NOW + timedelta(seconds=2)))
    assert moto_store.entries.head(ACCOUNT) == LedgerHead(4, NOW + timedelta(seconds=2))
    # The head is not an entry: audits and pages never see it.
    moto_store.entries.put(entry(1))
    assert [s for s, _, _ in moto_store.entries.sequences(ACCOUNT)] == [1]
    page, _ = moto_store.entries.page(ACCOUNT, limit=10)
    assert [e.sequence for e in page] == [1]


def test_pages_in_both_directions_with_a_type_filter_and_ranges(
    moto_store: CreditsStore, ledger: Ledger, materialize: Callable[[], int]
) -> None:
    for number in range(5):
        ledger.debit(
            DebitCommand(account_id=ACCOUNT, idempotency_key=f"d{number}", amount=Decimal(1))
        )
        if number % 2:
            ledger.top_up(
                CreditCommand(account_id=ACCOUNT, idempotency_key=f"t{number}", amount=Decimal(3))
            )
    materialize()
    everything, end = moto_store.entries.page(ACCOUNT, limit=100, newest_first=False)
    assert end is None
    assert [e.sequence for e in everything] == list(range(1, 9))

    first, after = moto_store.entries.page(ACCOUNT, limit=3)
    second, _ = moto_store.entries.page(ACCOUNT, limit=3, after_sequence=after)
    assert [e.sequence for e in first + second] == [8, 7, 6, 5, 4, 3]
    assert after == first[-1].sequence
    oldest, next_after = moto_store.entries.page(ACCOUNT, limit=3, newest_first=False)
    following, _ = moto_store.entries.page(
        ACCOUNT, limit=3, newest_first=False, after_sequence=next_after
    )
    assert [e.sequence for e in oldest + following] == [1, 2, 3, 4, 5, 6]

    debits_only = EntryRange(entry_type=EntryType.DEBIT)
    debits, more = moto_store.entries.page(ACCOUNT, limit=4, scope=debits_only)
    assert [e.type for e in debits] == [EntryType.DEBIT] * 4
    assert more is not None
    rest, done = moto_store.entries.page(ACCOUNT, limit=4, scope=debits_only, after_sequence=more)
    assert (len(rest), done) == (1, None)

    middle = everything[2:5]
    ranged, _ = moto_store.entries.page(
        ACCOUNT,
        limit=100,
        newest_first=False,
        scope=EntryRange(first_sequence=middle[0].sequence, last_sequence=middle[-1].sequence),
    )
    assert ranged == middle
    since, _ = moto_store.entries.page(ACCOUNT, limit=100, scope=EntryRange(first_sequence=7))
    until, _ = moto_store.entries.page(ACCOUNT, limit=100, scope=EntryRange(last_sequence=2))
    assert [e.sequence for e in since] == [8, 7]
    assert [e.sequence for e in until] == [2, 1]
    timed, _ = moto_store.entries.page(
        ACCOUNT,
        limit=100,
        scope=EntryRange(
            created_from=everything[3].created_at, created_to=everything[4].created_at
        ),
    )
    assert [e.sequence for e in timed] == [5, 4]
    empty, none = moto_store.entries.page(ACCOUNT, limit=5, after_sequence=1)
    assert (empty, none) == ([], None)


def test_sequences_list_the_chain_for_audits(
    moto_store: CreditsStore, ledger: Ledger, materialize: Callable[[], int]
) -> None:
    ledger.debit(DebitCommand(account_id=ACCOUNT, idempotency_key="d", amount=Decimal(2)))
    materialize()

    assert moto_store.entries.sequences(ACCOUNT) == [(1, 100, 100), (2, -2, 98)]
    assert moto_store.entries.head(ACCOUNT).version == 2


# ---------------------------------------------------------------- usage
def test_usage_rows_are_read_by_day_range(moto_store: CreditsStore) -> None:
    for day, calls in ((date(2024, 1, 30), 1), (date(2024, 1, 31), 2), (date(2024, 2, 1), 3)):
        moto_store.usage.add(
            ACCOUNT,
            UsageIncrement(
                day=day,
                calls=calls,
                failed=calls,
                by_type={"sms": Decimal(0)},
                by_endpoint={"/v1/sms": calls},
            ),
        )

    rows = moto_store.usage.daily(ACCOUNT, date(2024, 1, 31), date(2024, 2, 29))

    assert [(r.day, r.calls, r.failed) for r in rows] == [
        (date(2024, 1, 31), 2, 2),
        (date(2024, 2, 1), 3, 3),
    ]
    assert rows[0].by_type == {"sms": 0}
    assert rows[0].by_endpoint == {"/v1/sms": 2}


def charged(day: date, credits: int, endpoint: str = "/v1/x") -> UsageIncrement:
    return UsageIncrement(
        day=day,
        calls=1,
        credits_used=Decimal(credits),
        by_type={"debit": Decimal(credits)},
        by_endpoint={endpoint: 1},
        by_endpoint_credits={endpoint: Decimal(credits)},
    )


def test_versions_are_counted_once_per_day_and_index_the_days_sequences(
    moto_store: CreditsStore,
) -> None:
    day = date(2024, 5, 1)
    first = [Counted(2, charged(day, 3)), Counted(3, None), Counted(4, charged(day, 5))]

    moto_store.usage.count(ACCOUNT, day, first)
    moto_store.usage.count(ACCOUNT, day, first)  # redelivered: nothing counted again
    # A batch that overlaps what was counted adds only the versions after it.
    moto_store.usage.count(ACCOUNT, day, [Counted(4, charged(day, 5)), Counted(5, charged(day, 7))])

    [row] = moto_store.usage.daily(ACCOUNT, day, day)
    assert (row.calls, row.credits_used) == (3, Decimal(15))
    assert row.by_endpoint == {"/v1/x": 3}
    [item] = moto_store.usage.days(ACCOUNT, day, day)
    assert (item["firstSeq"], item["lastSeq"], item["lastVersion"]) == (2, 5, 5)


def test_usage_credited_to_another_day_does_not_index_it(moto_store: CreditsStore) -> None:
    earlier = date(2024, 4, 30)
    refund = UsageIncrement(day=earlier, failed=1, credits_used=Decimal(-3))

    moto_store.usage.count(ACCOUNT, earlier, [Counted(9, refund, indexed=False)])

    [row] = moto_store.usage.daily(ACCOUNT, earlier, earlier)
    assert (row.failed, row.credits_used) == (1, Decimal(-3))
    [item] = moto_store.usage.days(ACCOUNT, earlier, earlier)
    assert "firstSeq" not in item
    assert item["lastVersion"] == 9


# ---------------------------------------------------------------- refund guards
def test_refund_claims_add_up_to_the_original_and_count_a_retry_once(
    moto_store: CreditsStore,
) -> None:
    txn = transaction_id(2, "0123456789abcdef")

    def claim(amount: int, key: str) -> None:
        moto_store.refunds.claim(
            ACCOUNT, txn, original=Decimal(10), amount=Decimal(amount), idempotency_key=key
        )

    claim(4, "r-1")
    claim(4, "r-1")  # the same refund again: its share is already counted
    claim(6, "r-2")
    with pytest.raises(RefundLimitReached) as refused:
        claim(1, "r-3")

    assert refused.value.refunded == 10
    assert moto_store.refunds.refunded(ACCOUNT, txn) == 10
    assert moto_store.refunds.refunded(ACCOUNT, transaction_id(3, "0123456789abcdef")) == 0


# ---------------------------------------------------------------- accounts, catalog, items
def test_update_account_settings_changes_only_the_named_attributes(
    moto_store: CreditsStore, ledger: Ledger
) -> None:
    updated = moto_store.accounts.update_settings(
        ACCOUNT, {"status": "suspended", "lowBalanceThreshold": Decimal("2.5"), "flagged": True}
    )

    assert (updated.status, updated.low_balance_threshold, updated.flagged) == (
        "suspended",
        Decimal("2.5"),
        True,
    )
    assert (updated.balance, updated.available, updated.version) == (Decimal(100), Decimal(100), 1)
    assert moto_store.accounts.get(ACCOUNT, consistent=True) == updated


def test_update_account_settings_without_changes_returns_the_account(
    moto_store: CreditsStore, ledger: Ledger
) -> None:
    assert moto_store.accounts.update_settings(ACCOUNT, {}).balance == 100
    with pytest.raises(AccountNotFound):
        moto_store.accounts.update_settings("acct_missing", {})


def test_update_account_settings_of_a_missing_account(moto_store: CreditsStore) -> None:
    with pytest.raises(AccountNotFound):
        moto_store.accounts.update_settings("acct_missing", {"status": "suspended"})
    assert moto_store.accounts.get("acct_missing") is None


def test_account_ids_list_every_account_and_nothing_else(
    moto_store: CreditsStore, ledger: Ledger, materialize: Callable[[], int]
) -> None:
    wiring.ledger().create_account(CreateAccountCommand(account_id="acct_a"))
    materialize()  # ledger, head and usage items exist too

    assert moto_store.accounts.ids() == ["acct_a", ACCOUNT]


def test_price_list_and_api_key_mapping_round_trip(moto_store: CreditsStore) -> None:
    assert moto_store.catalog.get_price_list() is None
    prices = PriceList(version=2, prices={"sms": Decimal("0.5")})
    moto_store.catalog.put_price_list(prices)
    assert moto_store.catalog.get_price_list() == prices

    mapping = ApiKeyMapping(
        api_key_id="key123", account_id=ACCOUNT, plan="pro", created_at=datetime.now(UTC)
    )
    moto_store.catalog.put_api_key_mapping(mapping)
    assert moto_store.catalog.get_api_key_mapping("key123") == mapping
    assert moto_store.catalog.get_api_key_mapping("other") is None


def test_items_round_trip_exact_decimals_and_times_and_drop_nones() -> None:
    at = datetime(2024, 5, 1, 12, 30, 0, 123456, tzinfo=UTC)
    written = LedgerEntry(
        account_id=ACCOUNT,
        transaction_id=transaction_id(7, "0123456789abcdef"),
        sequence=7,
        type=EntryType.DEBIT,
        amount=Decimal("-0.000001"),
        balance_after=Decimal("999999999.999999"),
        metadata={"n": 3, "ok": True, "s": "x"},
        created_at=at,
    )

    item = to_item(written, pk="P", sk="S")

    assert item["amount"] == {"N": "-0.000001"}
    assert item["createdAt"] == {"S": at.isoformat()}
    assert "reference" not in item
    assert LedgerEntry.model_validate(from_item(item)) == written


def test_reads_and_writes_on_a_missing_table_are_storage_errors(moto_store: CreditsStore) -> None:
    missing = CreditsStore(moto_store.client, "no-such-table")
    account = Account(
        account_id=ACCOUNT, created_at=datetime.now(UTC), updated_at=datetime.now(UTC)
    )

    with pytest.raises(StorageError):
        missing.accounts.get(ACCOUNT)
    with pytest.raises(StorageError):
        missing.entries.page(ACCOUNT, limit=1)
    with pytest.raises(StorageError):
        missing.usage.daily(ACCOUNT, date(2024, 1, 1), date(2024, 1, 2))
    with pytest.raises(StorageError):
        missing.accounts.create(account)
    with pytest.raises(StorageError):
        missing.accounts.update_settings(ACCOUNT, {"flagged": True})
    with pytest.raises(StorageError):
        missing.usage.add(ACCOUNT, UsageIncrement(day=date(2024, 1, 1), calls=1))
    with pytest.raises(StorageError):
        missing.idempotency.lease(record(), NOW)
    with pytest.raises(StorageError):
        apply(missing, debit_of(1))
