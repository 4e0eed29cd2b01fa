"""The DynamoDB store on moto: how each DynamoDB outcome becomes a domain outcome, and reads."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from serverless_credits import wiring
from serverless_credits.domain.commands import CreateAccountCommand, CreditCommand, DebitCommand
from serverless_credits.domain.errors import StorageError
from serverless_credits.domain.models import (
    Account,
    ApiKeyMapping,
    EntryType,
    LedgerEntry,
    PriceList,
    UsageIncrement,
)
from serverless_credits.ledger.operations import Ledger
from serverless_credits.storage import keys
from serverless_credits.storage.store import (
    AccountMissing,
    ConditionRefused,
    Contention,
    CreditsStore,
    IdempotencyKeyUsed,
    LedgerWrite,
    OutcomeUnknown,
    VersionChanged,
    from_item,
    to_item,
)

ACCOUNT = "acct_store"


@pytest.fixture
def ledger(moto_store: CreditsStore) -> Ledger:
    wiring.ledger().create_account(
        CreateAccountCommand(account_id=ACCOUNT, opening_balance=Decimal(100))
    )
    return wiring.ledger()


@pytest.fixture
def committed(
    ledger: Ledger, moto_store: CreditsStore, monkeypatch: pytest.MonkeyPatch
) -> LedgerWrite:
    """A debit's planned write, as the ledger committed it."""
    writes: list[LedgerWrite] = []
    commit = moto_store.commit

    def recording(write: LedgerWrite) -> None:
        writes.append(write)
        commit(write)

    monkeypatch.setattr(moto_store, "commit", recording)
    ledger.debit(DebitCommand(account_id=ACCOUNT, idempotency_key="d-1", amount=Decimal(10)))
    monkeypatch.undo()
    [write] = writes
    return write


def with_new_key(write: LedgerWrite, key: str = "d-2") -> LedgerWrite:
    return dataclasses.replace(
        write,
        idempotency=write.idempotency.model_copy(update={"idempotency_key": key}),
        entry=write.entry.model_copy(
            update={"created_at": write.entry.created_at + timedelta(seconds=1)}
        ),
    )


def fail_transactions_with(store: CreditsStore, error: Exception) -> None:
    def fail(**_: Any) -> None:
        raise error

    store.client.meta.events.register("before-call.dynamodb.TransactWriteItems", fail)


def client_error(code: str, reasons: list[dict[str, str]] | None = None) -> ClientError:
    response: dict[str, Any] = {"Error": {"Code": code, "Message": code}}
    if reasons is not None:
        response["CancellationReasons"] = reasons
    return ClientError(response, "TransactWriteItems")  # type: ignore[arg-type]


# ---------------------------------------------------------------- commit outcomes
def test_committing_the_same_write_again_hands_back_the_stored_idempotency_record(
    moto_store: CreditsStore, committed: LedgerWrite
) -> None:
    with pytest.raises(IdempotencyKeyUsed) as refused:
        moto_store.commit(committed)

    assert refused.value.record == committed.idempotency


def test_a_write_planned_from_an_old_version_carries_the_current_account(
    moto_store: CreditsStore, committed: LedgerWrite
) -> None:
    with pytest.raises(VersionChanged) as refused:
        moto_store.commit(with_new_key(committed))

    assert refused.value.current == moto_store.accounts.get(ACCOUNT, consistent=True)
    assert refused.value.current.version == committed.after.version


def test_a_condition_failing_at_the_planned_version_is_refused_with_the_current_account(
    moto_store: CreditsStore, committed: LedgerWrite
) -> None:
    current = moto_store.accounts.get(ACCOUNT, consistent=True)
    assert current is not None
    write = dataclasses.replace(
        with_new_key(committed),
        before=current,
        after=current.model_copy(update={"version": current.version + 1}),
        balance_floor=current.balance + 1,
    )

    with pytest.raises(ConditionRefused) as refused:
        moto_store.commit(write)

    assert refused.value.current == current


def test_a_write_to_an_account_that_does_not_exist_is_account_missing(
    moto_store: CreditsStore, committed: LedgerWrite
) -> None:
    gone = "acct_gone"
    write = dataclasses.replace(
        committed,
        before=committed.before.model_copy(update={"account_id": gone}),
        after=committed.after.model_copy(update={"account_id": gone}),
        entry=committed.entry.model_copy(update={"account_id": gone}),
        idempotency=committed.idempotency.model_copy(update={"account_id": gone}),
    )

    with pytest.raises(AccountMissing):
        moto_store.commit(write)


@pytest.mark.parametrize(
    "error",
    [
        client_error("ThrottlingException"),
        client_error("ProvisionedThroughputExceededException"),
        client_error("TransactionConflictException"),
        client_error("InternalServerError"),
        client_error("IdempotentParameterMismatchException"),
        client_error(
            "TransactionCanceledException",
            [
                {"Code": "TransactionConflict"},
                {"Code": "None"},
                {"Code": "None"},
                {"Code": "None"},
            ],
        ),
        client_error(
            "TransactionCanceledException",
            [{"Code": "ThrottlingError"}, {"Code": "None"}, {"Code": "None"}],
        ),
    ],
)
def test_conflicts_and_throttling_are_contention(
    moto_store: CreditsStore, committed: LedgerWrite, error: ClientError
) -> None:
    fail_transactions_with(moto_store, error)

    with pytest.raises(Contention):
        moto_store.commit(with_new_key(committed))


def test_a_timeout_is_an_unknown_outcome(moto_store: CreditsStore, committed: LedgerWrite) -> None:
    fail_transactions_with(moto_store, ReadTimeoutError(endpoint_url="http://dynamodb"))

    with pytest.raises(OutcomeUnknown):
        moto_store.commit(with_new_key(committed))


@pytest.mark.parametrize(
    "error",
    [
        client_error("ValidationException"),
        client_error("AccessDeniedException"),
        client_error(
            "TransactionCanceledException",
            [{"Code": "None"}, {"Code": "ValidationError"}, {"Code": "None"}],
        ),
    ],
)
def test_other_failures_are_storage_errors(
    moto_store: CreditsStore, committed: LedgerWrite, error: ClientError
) -> None:
    fail_transactions_with(moto_store, error)

    with pytest.raises(StorageError):
        moto_store.commit(with_new_key(committed))


def test_a_failed_commit_changes_nothing(moto_store: CreditsStore, committed: LedgerWrite) -> None:
    before = moto_store.accounts.get(ACCOUNT, consistent=True)
    with pytest.raises(VersionChanged):
        moto_store.commit(with_new_key(committed))

    assert moto_store.accounts.get(ACCOUNT, consistent=True) == before
    entries, _ = moto_store.entries.page(ACCOUNT, limit=10)
    assert len(entries) == 2


# ---------------------------------------------------------------- account settings
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
    assert (updated.balance, updated.version) == (Decimal(100), 1)
    assert moto_store.accounts.get(ACCOUNT, consistent=True) == updated


def test_update_account_settings_without_changes_returns_the_account(
    moto_store: CreditsStore, ledger: Ledger
) -> None:
    assert moto_store.accounts.update_settings(ACCOUNT, {}).balance == 100
    with pytest.raises(StorageError):
        moto_store.accounts.update_settings("acct_missing", {})


def test_update_account_settings_of_a_missing_account(moto_store: CreditsStore) -> None:
    with pytest.raises(AccountMissing):
        moto_store.accounts.update_settings("acct_missing", {"status": "suspended"})
    assert moto_store.accounts.get("acct_missing") is None


# ---------------------------------------------------------------- reads
def test_query_ledger_pages_in_both_directions_with_a_type_filter_and_ranges(
    moto_store: CreditsStore, ledger: Ledger
) -> None:
    for number in range(5):
        ledger.debit(
            DebitCommand(account_id=ACCOUNT, idempotency_key=f"d{number}", amount=Decimal(1))
        )
        if number % 2:
            ledger.top_up(
                CreditCommand(account_id=ACCOUNT, idempotency_key=f"t{number}", amount=Decimal(3))
            )
    everything, end = moto_store.entries.page(ACCOUNT, limit=100, newest_first=False)
    assert end is None
    assert [e.sequence for e in everything] == list(range(1, 9))

    first, after = moto_store.entries.page(ACCOUNT, limit=3)
    second, _ = moto_store.entries.page(ACCOUNT, limit=3, start_after=after)
    assert [e.sequence for e in first + second] == [8, 7, 6, 5, 4, 3]
    assert after == keys.ledger_sk(first[-1].created_at)

    debits, more = moto_store.entries.page(ACCOUNT, limit=4, entry_type=EntryType.DEBIT)
    assert [e.type for e in debits] == [EntryType.DEBIT] * 4
    assert more is not None
    rest, done = moto_store.entries.page(
        ACCOUNT, limit=4, entry_type=EntryType.DEBIT, start_after=more
    )
    assert (len(rest), done) == (1, None)

    middle = everything[2:5]
    ranged, _ = moto_store.entries.page(
        ACCOUNT,
        limit=100,
        newest_first=False,
        first_sk=keys.ledger_sk(middle[0].created_at),
        last_sk=keys.ledger_sk(middle[-1].created_at),
    )
    assert ranged == middle
    since, _ = moto_store.entries.page(
        ACCOUNT, limit=100, first_sk=keys.ledger_sk(everything[-2].created_at)
    )
    until, _ = moto_store.entries.page(
        ACCOUNT, limit=100, last_sk=keys.ledger_sk(everything[1].created_at)
    )
    assert [e.sequence for e in since] == [8, 7]
    assert [e.sequence for e in until] == [2, 1]


def test_get_entry_finds_an_entry_by_its_transaction_id(
    moto_store: CreditsStore, ledger: Ledger
) -> None:
    result = ledger.debit(DebitCommand(account_id=ACCOUNT, idempotency_key="d", amount=Decimal(2)))

    entry = moto_store.get_entry(ACCOUNT, result.transaction_id)

    assert entry is not None
    assert (entry.transaction_id, entry.amount) == (result.transaction_id, Decimal(-2))
    assert moto_store.get_entry(ACCOUNT, "not-a-transaction") is None
    assert moto_store.get_entry("acct_other", result.transaction_id) is None


def test_idempotency_record_and_refunded_so_far_reads(
    moto_store: CreditsStore, committed: LedgerWrite
) -> None:
    assert moto_store.idempotency.get(ACCOUNT, "d-1") == committed.idempotency
    assert moto_store.idempotency.get(ACCOUNT, "unused") is None
    assert moto_store.refunded_so_far(ACCOUNT, committed.entry.transaction_id) == 0


def test_usage_rows_are_read_by_day_range(moto_store: CreditsStore) -> None:
    for day, calls in ((date(2024, 1, 30), 1), (date(2024, 1, 31), 2), (date(2024, 2, 1), 3)):
        moto_store.record_failed_call(
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
    entry = LedgerEntry(
        account_id=ACCOUNT,
        transaction_id=keys.transaction_id(at),
        sequence=7,
        type=EntryType.DEBIT,
        amount=Decimal("-0.000001"),
        balance_after=Decimal("999999999.999999"),
        metadata={"n": 3, "ok": True, "s": "x"},
        created_at=at,
    )

    item = to_item(entry, pk="P", sk="S")

    assert item["amount"] == {"N": "-0.000001"}
    assert item["createdAt"] == {"S": at.isoformat()}
    assert "reference" not in item
    assert LedgerEntry.model_validate(from_item(item)) == entry


def test_reads_and_writes_on_a_missing_table_are_storage_errors(moto_store: CreditsStore) -> None:
    missing = CreditsStore(moto_store.client, "no-such-table")
    account = Account(
        account_id=ACCOUNT, created_at=datetime.now(UTC), updated_at=datetime.now(UTC)
    )

    with pytest.raises(StorageError):
        missing.get_account(ACCOUNT)
    with pytest.raises(StorageError):
        missing.query_ledger(ACCOUNT, limit=1)
    with pytest.raises(StorageError):
        missing.query_usage(ACCOUNT, date(2024, 1, 1), date(2024, 1, 2))
    with pytest.raises(StorageError):
        missing.create_account(account)
    with pytest.raises(StorageError):
        missing.update_account_settings(ACCOUNT, {"flagged": True})
    with pytest.raises(StorageError):
        missing.record_failed_call(ACCOUNT, UsageIncrement(day=date(2024, 1, 1), calls=1))
