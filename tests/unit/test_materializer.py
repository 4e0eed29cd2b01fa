"""The materializer and the reconciler on moto (ledger.materializer, ledger.reconciler): the
table's real stream, read by `devtools.streams.StreamPoller`, in the events Lambda sends.

Redelivery changes nothing; usage counts once; a version whose operation cannot be found is
a failed position (Lambda retries from it); a gap the stream never filled is filled by the
reconciler from the idempotency records, which then proves balance == sum(ledger)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from devtools.streams import StreamPoller, materializer_poller, streams_client_for
from serverless_credits import wiring
from serverless_credits.config import get_settings
from serverless_credits.domain.commands import (
    CreateAccountCommand,
    CreditCommand,
    DebitCommand,
    RefundCommand,
)
from serverless_credits.domain.errors import AccountNotFound
from serverless_credits.domain.models import DailyUsage, IdempotencyState, LedgerEntry, utc_now
from serverless_credits.domain.outcomes import LedgerHead
from serverless_credits.ledger.materializer import AccountChange
from serverless_credits.ledger.operations import Ledger
from serverless_credits.ledger.reconciler import Reconciler
from serverless_credits.storage import keys
from serverless_credits.storage.store import CreditsStore
from serverless_credits.transport import streams
from tests.support import Clock

ACCOUNT = "acct_mat"


@pytest.fixture
def ledger(moto_store: CreditsStore) -> Ledger:
    built = wiring.ledger()
    built.create_account(CreateAccountCommand(account_id=ACCOUNT, opening_balance=Decimal(100)))
    return built


def debit(ledger: Ledger, amount: int, key: str, account_id: str = ACCOUNT) -> str:
    return ledger.debit(
        DebitCommand(
            account_id=account_id,
            idempotency_key=key,
            amount=Decimal(amount),
            endpoint="/v1/x",
        )
    ).transaction_id


def entries(store: CreditsStore, account_id: str = ACCOUNT) -> list[LedgerEntry]:
    found, _ = store.entries.page(account_id, limit=100, newest_first=False)
    return found


def usage(store: CreditsStore, account_id: str = ACCOUNT) -> DailyUsage:
    today = utc_now().date()
    rows = store.usage.daily(account_id, today - timedelta(days=1), today + timedelta(days=1))
    return DailyUsage(
        day=today,
        calls=sum(r.calls for r in rows),
        failed=sum(r.failed for r in rows),
        credits_used=sum((r.credits_used for r in rows), Decimal(0)),
    )


def captured_changes(store: CreditsStore) -> list[AccountChange]:
    """Every account change in the stream so far, as the Materializer function gets them
    (read by a second consumer from the start, delivering to no materializer)."""
    changes: list[AccountChange] = []

    def capture(event: dict[str, Any]) -> dict[str, Any]:
        read, unreadable = streams.account_changes(event)
        assert unreadable == []
        changes.extend(read)
        return {"batchItemFailures": []}

    StreamPoller(store.client, streams_client_for(store.client), store.table_name, capture).drain()
    return changes


def delete(store: CreditsStore, pk: str, sk: str) -> None:
    store.client.delete_item(TableName=store.table_name, Key={"pk": {"S": pk}, "sk": {"S": sk}})


# ---------------------------------------------------------------- the materializer
def test_each_version_becomes_one_entry_and_the_head_follows(
    ledger: Ledger, moto_store: CreditsStore, materialize: Callable[[], int]
) -> None:
    first = debit(ledger, 10, "d1")
    ledger.top_up(CreditCommand(account_id=ACCOUNT, idempotency_key="t1", amount=Decimal(5)))
    moto_store.accounts.update_settings(ACCOUNT, {"flagged": True})  # not a version

    # The creation, three versions and the settings change: five account records.
    assert materialize() == 5
    written = entries(moto_store)

    assert [(e.sequence, e.amount, e.balance_after) for e in written] == [
        (1, Decimal(100), Decimal(100)),
        (2, Decimal(-10), Decimal(90)),
        (3, Decimal(5), Decimal(95)),
    ]
    assert written[1].transaction_id == first
    head = moto_store.entries.head(ACCOUNT)
    assert head == LedgerHead(3, written[-1].created_at)
    record = moto_store.idempotency.get(ACCOUNT, "d1")
    assert record is not None
    assert record.state is IdempotencyState.COMPLETED
    assert record.expires_at is not None  # the entry exists: the record may expire now


def test_redelivered_records_change_nothing_and_usage_counts_once(
    ledger: Ledger, moto_store: CreditsStore, materialize: Callable[[], int]
) -> None:
    debit(ledger, 10, "d1")
    debit(ledger, 5, "d2")
    materialize()
    before = (entries(moto_store), moto_store.entries.head(ACCOUNT), usage(moto_store))
    records = [moto_store.idempotency.get(ACCOUNT, key) for key in ("d1", "d2")]

    # A second consumer from the start of the stream: every record delivered again.
    again = materializer_poller(moto_store.client, moto_store.table_name)
    assert again.drain() > 0
    changes = captured_changes(moto_store)
    assert wiring.materializer().materialize(changes) == []
    assert wiring.materializer().materialize(changes[::-1]) == []  # in any order

    assert (entries(moto_store), moto_store.entries.head(ACCOUNT), usage(moto_store)) == before
    assert [moto_store.idempotency.get(ACCOUNT, key) for key in ("d1", "d2")] == records
    assert (before[2].calls, before[2].credits_used) == (2, Decimal(15))


def test_a_version_whose_operation_cannot_be_found_is_a_failed_position(
    ledger: Ledger, moto_store: CreditsStore, caplog: pytest.LogCaptureFixture
) -> None:
    ledger.create_account(CreateAccountCommand(account_id="acct_ok", opening_balance=Decimal(1)))
    debit(ledger, 10, "lost-record")
    delete(moto_store, keys.idempotency_pk(ACCOUNT, "lost-record"), keys.IDEMPOTENCY_SK)
    changes = captured_changes(moto_store)
    mine = [c for c in changes if c.account_id == ACCOUNT]

    failed = wiring.materializer().materialize(changes)

    # The account's first change in the batch: Lambda resumes from it (what was written
    # before the failure is a no-op when delivered again). Other accounts go on.
    assert failed == [mine[0].position]
    assert "materialization failed" in caplog.text
    # What precedes the missing operation is written, counted and behind the head.
    assert [e.sequence for e in entries(moto_store)] == [1]
    assert moto_store.entries.head(ACCOUNT).version == 1
    assert [e.sequence for e in entries(moto_store, "acct_ok")] == [1]
    assert moto_store.entries.head("acct_ok").version == 1


def test_the_stream_handler_answers_a_partial_batch_response(
    ledger: Ledger, moto_store: CreditsStore
) -> None:
    debit(ledger, 10, "lost-record")
    delete(moto_store, keys.idempotency_pk(ACCOUNT, "lost-record"), keys.IDEMPOTENCY_SK)
    responses: list[dict[str, Any]] = []

    def deliver(event: dict[str, Any]) -> dict[str, Any]:
        response = streams.handle(event, wiring.materializer())
        responses.append(response)
        return response

    poller = StreamPoller(
        moto_store.client, streams_client_for(moto_store.client), moto_store.table_name, deliver
    )
    poller.poll()

    [response] = responses
    [failure] = response["batchItemFailures"]
    assert poller.retrying  # it is delivered again from that position, as Lambda does
    assert int(failure["itemIdentifier"]) > 0


def test_a_refund_nets_usage_on_the_day_of_its_call(
    ledger: Ledger, moto_store: CreditsStore, materialize: Callable[[], int]
) -> None:
    charged = debit(ledger, 10, "d1")
    materialize()  # the refund reads its debit's entry
    ledger.refund(
        RefundCommand(
            account_id=ACCOUNT, idempotency_key="r1", transaction_id=charged, failed_call=True
        )
    )
    materialize()
    materialize()

    counted = usage(moto_store)
    assert (counted.calls, counted.failed, counted.credits_used) == (1, 1, Decimal(0))


# ---------------------------------------------------------------- the reconciler
def test_the_reconciler_proves_a_complete_ledger(
    ledger: Ledger, moto_store: CreditsStore, materialize: Callable[[], int]
) -> None:
    debit(ledger, 10, "d1")
    materialize()

    report = wiring.reconciler().account(ACCOUNT)

    assert report.consistent
    assert (report.version, report.entries, report.balance, report.ledger_sum) == (
        2,
        2,
        Decimal(90),
        Decimal(90),
    )
    assert (report.filled, report.unresolved, report.chain_breaks) == ([], [], [])
    assert report.as_dict()["consistent"] is True


def test_the_reconciler_fills_a_deleted_entry_from_its_idempotency_record(
    ledger: Ledger, moto_store: CreditsStore, materialize: Callable[[], int]
) -> None:
    for number in range(3):
        debit(ledger, 10, f"d{number}")
    materialize()
    original = entries(moto_store)
    delete(moto_store, keys.ledger_pk(ACCOUNT), keys.entry_sk(3))

    report = wiring.reconciler().account(ACCOUNT)

    assert report.filled == [3]
    assert report.consistent
    assert report.ledger_sum == report.balance == Decimal(70)
    assert entries(moto_store) == original  # the very entry the materializer wrote


def skip_version_3(ledger: Ledger, moto_store: CreditsStore) -> None:
    """Three debits (versions 2 to 4), materialized except version 3, which went to the
    on-failure destination."""
    for number in range(3):
        debit(ledger, 10, f"d{number}")
    changes = captured_changes(moto_store)
    skipped = next(c for c in changes if c.new_version and c.new_version.version == 3)
    assert wiring.materializer().materialize([c for c in changes if c is not skipped]) == []
    assert [e.sequence for e in entries(moto_store)] == [1, 2, 4]
    assert moto_store.entries.head(ACCOUNT).version == 2  # stops below the gap
    assert usage(moto_store).calls == 2


def reconciler_at(store: CreditsStore, clock: Clock) -> Reconciler:
    return Reconciler(
        accounts=store.accounts,
        records=store.idempotency,
        entries=store.entries,
        usage=store.usage,
        holds=store.holds,
        lots=store.lots,
        expire_hold=wiring.ledger().holds.expire,
        expire_lot=wiring.ledger().lots.expire,
        settings=get_settings(),
        clock=clock,
    )


def test_versions_the_materializer_is_still_writing_are_left_in_flight(
    ledger: Ledger, moto_store: CreditsStore, materialize: Callable[[], int]
) -> None:
    debit(ledger, 10, "d0")
    materialize()  # the head just moved
    debit(ledger, 10, "d1")  # version 3, still in the stream

    report = wiring.reconciler().account(ACCOUNT)

    # Filling it now would race the materializer: it is left to it, not called a gap.
    assert (report.in_flight, report.filled, report.unresolved) == ([3], [], [])
    assert report.consistent
    assert [e.sequence for e in entries(moto_store)] == [1, 2]
    materialize()
    settled = wiring.reconciler().account(ACCOUNT)
    assert (settled.in_flight, settled.ledger_sum, settled.balance) == (
        [],
        Decimal(80),
        Decimal(80),
    )
    assert settled.consistent


def test_a_version_skipped_while_later_ones_are_written_is_in_flight_not_a_break(
    ledger: Ledger, moto_store: CreditsStore
) -> None:
    skip_version_3(ledger, moto_store)  # entry 4 written, the head waits at 2, just now

    report = wiring.reconciler().account(ACCOUNT)

    assert (report.in_flight, report.filled, report.chain_breaks) == ([3], [], [])
    assert report.consistent  # nothing disproves the ledger: version 3 is on its way


def test_the_reconciler_fills_a_version_the_stream_never_delivered(
    ledger: Ledger, moto_store: CreditsStore, materialize: Callable[[], int]
) -> None:
    skip_version_3(ledger, moto_store)
    settled = Clock(utc_now() + timedelta(seconds=get_settings().reconcile_settle_seconds + 1))

    report = reconciler_at(moto_store, settled).account(ACCOUNT)

    assert (report.filled, report.in_flight) == ([3], [])
    assert report.consistent
    assert (report.balance, report.ledger_sum, report.entries) == (Decimal(70), Decimal(70), 4)
    assert [e.sequence for e in entries(moto_store)] == [1, 2, 3, 4]
    assert moto_store.entries.head(ACCOUNT).version == 4
    assert usage(moto_store).calls == 3  # the filled version's usage, counted once
    record = moto_store.idempotency.get(ACCOUNT, "d1")
    assert record is not None
    assert record.expires_at is not None
    # Reconciling again finds nothing to do; the late delivery of version 3 counts nothing.
    assert reconciler_at(moto_store, settled).account(ACCOUNT).filled == []
    materialize()
    assert usage(moto_store).calls == 3
    assert [e.sequence for e in entries(moto_store)] == [1, 2, 3, 4]


def test_a_gap_without_its_record_is_reported_unresolved(
    ledger: Ledger, moto_store: CreditsStore, materialize: Callable[[], int]
) -> None:
    debit(ledger, 10, "d1")
    debit(ledger, 10, "d2")
    materialize()
    delete(moto_store, keys.ledger_pk(ACCOUNT), keys.entry_sk(2))
    delete(moto_store, keys.idempotency_pk(ACCOUNT, "d1"), keys.IDEMPOTENCY_SK)

    report = wiring.reconciler().account(ACCOUNT)

    assert report.unresolved == [2]
    assert not report.consistent
    assert (report.ledger_sum, report.balance) == (Decimal(90), Decimal(80))
    assert report.chain_breaks == [2, 3]  # sequence 2 missing; 3 does not follow 1


def test_a_broken_balance_chain_is_reported(
    ledger: Ledger, moto_store: CreditsStore, materialize: Callable[[], int]
) -> None:
    debit(ledger, 10, "d1")
    debit(ledger, 10, "d2")
    materialize()
    moto_store.client.update_item(
        TableName=moto_store.table_name,
        Key={"pk": {"S": keys.ledger_pk(ACCOUNT)}, "sk": {"S": keys.entry_sk(2)}},
        UpdateExpression="SET balanceAfter = :wrong",
        ExpressionAttributeValues={":wrong": {"N": "91"}},
    )

    report = wiring.reconciler().account(ACCOUNT)

    assert report.chain_breaks == [2, 3]
    assert not report.consistent


def test_the_reconciler_covers_every_account(
    ledger: Ledger, moto_store: CreditsStore, materialize: Callable[[], int]
) -> None:
    ledger.create_account(CreateAccountCommand(account_id="acct_two"))
    debit(ledger, 1, "d1")
    materialize()

    reports = wiring.reconciler().all()

    assert [(r.account_id, r.consistent) for r in reports] == [
        (ACCOUNT, True),
        ("acct_two", True),
    ]
    with pytest.raises(AccountNotFound):
        wiring.reconciler().account("acct_missing")
