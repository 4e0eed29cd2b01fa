"""The materializer on DynamoDB Local's real stream: redelivered batches write nothing, a
partial batch failure names where Lambda (here the poller) resumes, a crash in the middle of
a batch is repaired by the redelivery without a duplicate entry or a usage counted twice,
and a version whose stream record was lost is filled by the reconciler."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest

from devtools.streams import StreamPoller, streams_client_for
from serverless_credits import wiring
from serverless_credits.config import get_settings
from serverless_credits.domain.commands import (
    CreateAccountCommand,
    CreditCommand,
    DebitCommand,
)
from serverless_credits.domain.errors import StorageError
from serverless_credits.domain.models import EntryType, utc_now
from serverless_credits.ledger.operations import Ledger
from serverless_credits.ledger.reconciler import Reconciler
from serverless_credits.storage import keys
from serverless_credits.storage.store import CreditsStore
from serverless_credits.transport import streams
from tests.integration.conftest import LedgerAudit
from tests.support import Clock

pytestmark = pytest.mark.integration

WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"})


@dataclass
class Recorder:
    """A Lambda-shaped delivery to the library's stream handler, remembering each event and
    its answer; `drop` leaves chosen records out, as a lost stream record would be."""

    events: list[dict[str, Any]] = field(default_factory=list)
    answers: list[dict[str, Any]] = field(default_factory=list)
    drop: Callable[[dict[str, Any]], bool] = lambda _: False

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        kept = {"Records": [r for r in event["Records"] if not self.drop(r)]}
        self.events.append(copy.deepcopy(kept))
        answer = streams.handle(kept, wiring.materializer())
        self.answers.append(answer)
        return answer


def poller(store: CreditsStore, recorder: Recorder) -> StreamPoller:
    return StreamPoller(store.client, streams_client_for(store.client), store.table_name, recorder)


def account_of(record: dict[str, Any]) -> str | None:
    return keys.account_id_of(record["dynamodb"]["Keys"]["pk"]["S"])


def version_of(record: dict[str, Any]) -> int:
    return int(record["dynamodb"].get("NewImage", {}).get("version", {}).get("N", 0))


@pytest.fixture
def writes(local_store: CreditsStore) -> Iterator[list[str]]:
    """The write requests the table's client sends from now on."""
    sent: list[str] = []

    def count(model: Any, **_: Any) -> None:
        if model.name in WRITES:
            sent.append(model.name)

    local_store.client.meta.events.register("before-call.dynamodb", count)
    yield sent
    local_store.client.meta.events.unregister("before-call.dynamodb", count)


def activity(ledger: Ledger, account_id: str, debits: int = 5) -> None:
    ledger.create_account(CreateAccountCommand(account_id=account_id, opening_balance=Decimal(50)))
    for n in range(debits):
        ledger.debit(
            DebitCommand(
                account_id=account_id,
                idempotency_key=f"d{n}",
                amount=Decimal(n + 1),
                endpoint="/v1/m",
            )
        )
    ledger.top_up(CreditCommand(account_id=account_id, idempotency_key="t", amount=Decimal(7)))


def table_items(store: CreditsStore) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for page in store.client.get_paginator("scan").paginate(
        TableName=store.table_name, ConsistentRead=True
    ):
        items.extend(page["Items"])
    return sorted(items, key=lambda i: (i["pk"]["S"], i["sk"]["S"]))


def test_draining_twice_and_redelivering_each_batch_write_nothing_new(
    local_store: CreditsStore, audit: LedgerAudit, writes: list[str]
) -> None:
    ledger = wiring.ledger()
    for account_id in ("acct_redo_a", "acct_redo_b"):
        activity(ledger, account_id)
    recorder = Recorder()
    first = poller(local_store, recorder)
    assert first.drain() == 16  # 2 x (created, opening grant, 5 debits, 1 top-up)
    materialized = table_items(local_store)
    writes.clear()

    assert first.drain() == 0  # caught up: nothing delivered
    again = poller(local_store, Recorder())  # another consumer, from the start of the stream
    assert again.drain() == 16
    for event in recorder.events:  # the very same Lambda-shaped batches, once more
        assert streams.handle(event, wiring.materializer()) == {"batchItemFailures": []}

    assert writes == []
    assert table_items(local_store) == materialized
    for account_id in ("acct_redo_a", "acct_redo_b"):
        snapshot = audit.check(account_id)
        assert len(snapshot.entries) == 7
        usage = audit.usage(account_id)
        assert (usage.calls, usage.credits_used) == (5, Decimal(15))


def test_a_partial_batch_failure_names_the_failing_account_and_the_poller_resumes_there(
    local_store: CreditsStore, audit: LedgerAudit, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = wiring.ledger()
    for account_id in ("acct_part_a", "acct_part_b"):
        ledger.create_account(
            CreateAccountCommand(account_id=account_id, opening_balance=Decimal(20))
        )
    for n in range(4):  # interleaved: one batch holds both accounts' versions
        for account_id in ("acct_part_a", "acct_part_b"):
            ledger.debit(
                DebitCommand(account_id=account_id, idempotency_key=f"d{n}", amount=Decimal(1))
            )
    entries = local_store.entries
    assert wiring.materializer()._entries is entries
    real_put = entries.put
    failures: list[int] = []

    def put_failing_once(entry: Any, **kwargs: Any) -> Any:
        if entry.account_id == "acct_part_b" and entry.sequence == 3 and not failures:
            failures.append(entry.sequence)
            raise StorageError("put entry failed: InternalServerError")
        return real_put(entry, **kwargs)

    monkeypatch.setattr(entries, "put", put_failing_once)
    recorder = Recorder()

    poller(local_store, recorder).drain()

    first, second = recorder.events[0]["Records"], recorder.events[1]["Records"]
    assert {account_of(r) for r in first} == {"acct_part_a", "acct_part_b"}
    b_positions = [r["dynamodb"]["SequenceNumber"] for r in first if account_of(r) == "acct_part_b"]
    [failure] = recorder.answers[0]["batchItemFailures"]
    assert failure["itemIdentifier"] == b_positions[0]  # the failing account's first record
    assert second[0]["dynamodb"]["SequenceNumber"] == b_positions[0]  # resumed from it
    assert recorder.answers[1:] == [{"batchItemFailures": []}] * (len(recorder.answers) - 1)
    assert failures == [3]
    for account_id in ("acct_part_a", "acct_part_b"):
        snapshot = audit.check(account_id)
        assert len(snapshot.of_type(EntryType.DEBIT)) == 4
        usage = audit.usage(account_id)
        assert (usage.calls, usage.credits_used) == (4, Decimal(4))


@pytest.fixture
def two_days(local_store: CreditsStore) -> tuple[Ledger, Clock]:
    """A ledger whose clock starts two days ago, a second before midnight."""
    day = utc_now().date() - timedelta(days=2)
    clock = Clock(datetime.combine(day, time(23, 59, 59), tzinfo=UTC))
    return wiring.build_ledger(local_store, wiring.prices(), clock=clock), clock


@pytest.mark.parametrize(
    ("target", "method", "failing_call"),
    [
        ("entries", "put", 4),  # between two entries of a batch
        ("idempotency", "finalize", 2),
        ("usage", "count", 2),  # the first day counted, the second not
        ("entries", "advance_head", 1),  # everything written but the head
    ],
    ids=["entry-put", "finalize", "usage-count-second-day", "advance-head"],
)
def test_a_crash_in_the_middle_of_a_batch_is_repaired_by_the_redelivery(
    *,
    local_store: CreditsStore,
    audit: LedgerAudit,
    monkeypatch: pytest.MonkeyPatch,
    two_days: tuple[Ledger, Clock],
    target: str,
    method: str,
    failing_call: int,
) -> None:
    ledger, clock = two_days
    account_id = "acct_midbatch"
    ledger.create_account(CreateAccountCommand(account_id=account_id, opening_balance=Decimal(30)))
    first_day = clock.now.date()
    for n in range(6):
        ledger.debit(
            DebitCommand(
                account_id=account_id,
                idempotency_key=f"d{n}",
                amount=Decimal("1.5"),
                endpoint="/v1/mid",
            )
        )
        if n == 2:
            clock.now += timedelta(seconds=2)  # the next three on the following day
    ledger.debit(DebitCommand(account_id=account_id, idempotency_key="last", amount=Decimal(1)))

    store = getattr(local_store, target)
    real = getattr(store, method)
    calls: list[int] = []

    def crashing(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == failing_call:
            raise StorageError(f"{method} failed: InternalServerError")
        return real(*args, **kwargs)

    monkeypatch.setattr(store, method, crashing)
    recorder = Recorder()

    poller(local_store, recorder).drain()

    assert len(calls) > failing_call, "the crash happened and the batch was redelivered"
    assert any(answer["batchItemFailures"] for answer in recorder.answers)
    assert recorder.answers[-1] == {"batchItemFailures": []}
    snapshot = audit.check(account_id)
    assert len(snapshot.entries) == 8  # the opening grant and 7 debits
    assert len({e.transaction_id for e in snapshot.entries}) == 8
    assert local_store.entries.head(account_id).version == 8
    usage = audit.usage(account_id, first_day, utc_now().date())
    assert (usage.calls, usage.failed) == (7, 0)
    assert usage.credits_used == Decimal("1.5") * 6 + 1
    [day_one] = local_store.usage.daily(account_id, first_day, first_day)
    assert (day_one.calls, day_one.credits_used) == (3, Decimal("4.5"))


def later_reconciler(store: CreditsStore, settle: timedelta) -> Reconciler:
    """The reconciler as it runs once the settling time has passed."""
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
        clock=lambda: utc_now() + settle + timedelta(seconds=1),
    )


def test_a_version_whose_stream_record_was_lost_is_filled_by_the_reconciler(
    local_store: CreditsStore, audit: LedgerAudit
) -> None:
    ledger = wiring.ledger()
    activity(ledger, "acct_lost")
    activity(ledger, "acct_whole")
    lost = Recorder(drop=lambda r: account_of(r) == "acct_lost" and version_of(r) == 3)
    poller(local_store, lost).drain()
    assert local_store.entries.get("acct_lost", 3) is None
    assert local_store.entries.get("acct_lost", 4) is not None  # later versions are written
    assert local_store.entries.head("acct_lost").version == 2  # the head waits at the gap

    # Just after the head moved, the gap may still be on its way through the stream: left
    # to the materializer. Past the settling time it is the reconciler's to fill.
    early = wiring.reconciler().account("acct_lost")
    assert (early.filled, early.in_flight, early.unresolved) == ([], [3], [])
    assert local_store.entries.get("acct_lost", 3) is None
    settle = timedelta(seconds=get_settings().reconcile_settle_seconds)

    report = later_reconciler(local_store, settle).account("acct_lost")

    assert report.filled == [3]
    assert report.in_flight == []
    assert (report.unresolved, report.chain_breaks) == ([], [])
    assert report.consistent
    assert (report.version, report.entries) == (7, 7)
    assert report.ledger_sum == report.balance == 50 - 15 + 7
    assert report.as_dict()["consistent"] is True
    assert local_store.entries.head("acct_lost").version == 7
    snapshot = audit.check("acct_lost")
    filled = snapshot.entries[2]
    assert (filled.sequence, filled.type, filled.amount) == (3, EntryType.DEBIT, Decimal(-2))
    assert filled.idempotency_key == "d1"
    usage = audit.usage("acct_lost")  # the lost version's usage counted once, by the fill
    assert (usage.calls, usage.credits_used) == (5, Decimal(15))
    record = local_store.idempotency.get("acct_lost", "d1")
    assert record is not None
    assert record.expires_at is not None

    # A whole ledger needs nothing; a second pass over the filled one, or the stream
    # delivered once more from its start, changes nothing.
    reconciler = later_reconciler(local_store, settle)
    [whole, again] = [reconciler.account(a) for a in ("acct_whole", "acct_lost")]
    assert (whole.filled, whole.consistent, whole.entries) == ([], True, 7)
    assert (again.filled, again.consistent) == ([], True)
    poller(local_store, Recorder()).drain()
    assert audit.usage("acct_lost").calls == 5
    assert {r.account_id: r.consistent for r in reconciler.all()} == {
        "acct_lost": True,
        "acct_whole": True,
    }


def test_a_deleted_entry_is_rebuilt_exactly_by_the_reconciler(
    local_store: CreditsStore, audit: LedgerAudit, local_materialize: Callable[[], int]
) -> None:
    activity(wiring.ledger(), "acct_rebuilt")
    local_materialize()
    original = local_store.entries.get("acct_rebuilt", 4)
    assert original is not None
    local_store.client.delete_item(
        TableName=local_store.table_name,
        Key={"pk": {"S": keys.ledger_pk("acct_rebuilt")}, "sk": {"S": keys.entry_sk(4)}},
    )

    report = wiring.reconciler().account("acct_rebuilt")

    assert (report.filled, report.consistent) == ([4], True)
    assert local_store.entries.get("acct_rebuilt", 4) == original
    assert audit.check("acct_rebuilt").entries[3] == original
