"""The event publisher use case (ledger.events) over fakes, and the EventBridge/SQS adapters
over stub clients: retries of refused entries only, the replay queue, the auto-reload mark."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from serverless_credits import wiring
from serverless_credits.domain.events import BalanceEvent, EventKind, FailedEvent
from serverless_credits.domain.models import (
    Account,
    AutoReloadPending,
    EntryType,
    IdempotencyRecord,
    IdempotencyState,
    LastOp,
    Operation,
)
from serverless_credits.integrations.eventbridge import EventBridgeBus, SqsReplayQueue
from serverless_credits.ledger.events import EventPublisher
from serverless_credits.ledger.materializer import AccountChange

T0 = datetime(2025, 1, 1, tzinfo=UTC)


class FakeBus:
    def __init__(self, refuse: dict[str, int] | None = None) -> None:
        self.refuse = dict(refuse or {})  # event id -> times to refuse it
        self.accepted: list[BalanceEvent] = []
        self.calls = 0

    def put(self, events: Sequence[BalanceEvent]) -> list[FailedEvent]:
        self.calls += 1
        failed = []
        for event in events:
            if self.refuse.get(event.id, 0) > 0:
                self.refuse[event.id] -= 1
                failed.append(FailedEvent(event, "InternalFailure", "try again"))
            else:
                self.accepted.append(event)
        return failed


class FakeQueue:
    def __init__(self, broken: bool = False) -> None:
        self.broken = broken
        self.sent: list[FailedEvent] = []

    def send(self, failed: Sequence[FailedEvent]) -> None:
        if self.broken:
            raise RuntimeError("queue down")
        self.sent += failed


class FakeMarks:
    def __init__(self) -> None:
        self.pending: dict[str, AutoReloadPending] = {}
        self.broken = False

    def mark_auto_reload(
        self, account_id: str, pending: AutoReloadPending, *, expired_before: datetime
    ) -> bool:
        if self.broken:
            raise RuntimeError("throttled")
        current = self.pending.get(account_id)
        if current and current.request_id != pending.request_id and current.at > expired_before:
            return False
        self.pending[account_id] = pending
        return True

    def clear_auto_reload(self, account_id: str, request_id: str) -> bool:
        current = self.pending.get(account_id)
        if current is None or current.request_id != request_id:
            return False
        del self.pending[account_id]
        return True


class FakeRecords:
    def __init__(self) -> None:
        self.records: dict[tuple[str, str], IdempotencyRecord] = {}

    def get(self, account_id: str, idempotency_key: str) -> IdempotencyRecord | None:
        return self.records.get((account_id, idempotency_key))


def image(version: int, available: str, account_id: str = "acct_1", **more: Any) -> Account:
    return Account.model_validate(
        {
            "account_id": account_id,
            "created_at": T0,
            "updated_at": T0 + timedelta(seconds=version),
            "version": version,
            "available": Decimal(available),
            "balance": Decimal(available),
            "low_balance_threshold": Decimal(10),
            **more,
        }
    )


def change(old: Account, new: Account) -> AccountChange:
    return AccountChange(str(1000 + new.version), new.account_id, old, new)


def publisher(bus: FakeBus, queue: FakeQueue | None = None, **more: Any) -> EventPublisher:
    marks = more.pop("marks", FakeMarks())
    records = more.pop("records", FakeRecords())
    return EventPublisher(bus, marks, records, queue, sleep=lambda _: None, **more)


def test_publishes_each_crossing_once() -> None:
    bus = FakeBus()
    changes = [change(image(1, "20"), image(2, "10")), change(image(2, "10"), image(3, "5"))]
    report = publisher(bus).publish(changes)
    assert [e.id for e in bus.accepted] == ["acct_1:2:balance-low"]
    assert report.failed_positions == []
    assert report.published == 1


def test_a_refused_entry_is_sent_again_alone() -> None:
    bus = FakeBus(refuse={"acct_1:2:balance-low": 2})
    changes = [
        change(image(1, "20"), image(2, "10")),
        change(image(1, "20", "acct_2"), image(2, "0", "acct_2")),
    ]
    report = publisher(bus).publish(changes)
    ids = [e.id for e in bus.accepted]
    assert sorted(ids) == [
        "acct_1:2:balance-low",
        "acct_2:2:balance-depleted",
        "acct_2:2:balance-low",
    ]
    assert len(ids) == len(set(ids))  # accepted entries were never sent again
    assert report.retried == 2
    assert report.failed_positions == []


def test_entries_refused_to_the_end_go_to_the_replay_queue() -> None:
    bus, queue = FakeBus(refuse={"acct_1:2:balance-low": 9}), FakeQueue()
    report = publisher(bus, queue).publish([change(image(1, "20"), image(2, "10"))])
    assert [f.event.id for f in queue.sent] == ["acct_1:2:balance-low"]
    assert report.failed_positions == []  # kept whole in the queue: the change is done
    assert report.replayable == 1


def test_without_the_replay_queue_the_change_fails() -> None:
    bus = FakeBus(refuse={"acct_1:2:balance-low": 9})
    report = publisher(bus, FakeQueue(broken=True)).publish(
        [change(image(1, "20"), image(2, "10"))]
    )
    assert report.failed_positions == ["1002"]


def reload(**more: Any) -> dict[str, Any]:
    return {
        "auto_reload_enabled": True,
        "auto_reload_threshold": Decimal(20),
        "auto_reload_amount": Decimal(100),
        "low_balance_threshold": None,
        **more,
    }


def test_auto_reload_requested_once_until_a_top_up_references_it() -> None:
    bus, marks, records = FakeBus(), FakeMarks(), FakeRecords()
    pub = publisher(bus, marks=marks, records=records)
    pub.publish([change(image(1, "25", **reload()), image(2, "15", **reload()))])
    request = "acct_1:2:auto-reload-requested"
    assert [e.id for e in bus.accepted] == [request]
    assert marks.pending["acct_1"].request_id == request
    # Up (a top-up that does not reference it) and down again: still pending.
    pending = {"auto_reload_pending": marks.pending["acct_1"]}
    pub.publish(
        [
            change(image(2, "15", **reload(**pending)), image(3, "30", **reload(**pending))),
            change(image(3, "30", **reload(**pending)), image(4, "10", **reload(**pending))),
        ]
    )
    assert len(bus.accepted) == 1
    # Its own redelivery wins the mark again (same request id) and publishes the same id.
    pub.publish([change(image(1, "25", **reload()), image(2, "15", **reload()))])
    assert [e.id for e in bus.accepted] == [request, request]
    # The top-up referencing it clears the mark.
    records.records[("acct_1", "reload-1")] = IdempotencyRecord(
        account_id="acct_1",
        idempotency_key="reload-1",
        fingerprint="f",
        op_id="op1",
        state=IdempotencyState.COMPLETED,
        operation=Operation(type=EntryType.TOPUP, amount=Decimal(100), reference=request),
        lease_expires_at=T0,
        created_at=T0,
    )
    top_up = LastOp(id="op1", key="reload-1", type=EntryType.TOPUP, amount=Decimal(100), at=T0)
    pub.publish(
        [
            change(
                image(4, "10", **reload(**pending)),
                image(5, "110", last_op=top_up, **reload(**pending)),
            )
        ]
    )
    assert "acct_1" not in marks.pending
    pub.publish([change(image(5, "110", **reload()), image(6, "5", **reload()))])
    assert [e.id for e in bus.accepted][-1] == "acct_1:6:auto-reload-requested"


def test_a_mark_failure_stops_that_account_only() -> None:
    bus, marks = FakeBus(), FakeMarks()
    marks.broken = True
    report = publisher(bus, marks=marks).publish(
        [
            change(image(1, "25", **reload()), image(2, "15", **reload())),
            change(image(2, "15", **reload()), image(3, "0", **reload())),
            change(image(1, "20", "acct_2"), image(2, "10", "acct_2")),
        ]
    )
    assert report.failed_positions == ["1002"]
    assert [e.id for e in bus.accepted] == ["acct_2:2:balance-low"]


class StubEvents:
    def __init__(self, failing: set[int]) -> None:
        self.failing = failing
        self.calls: list[list[dict[str, Any]]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Entries)
        offset = sum(len(c) for c in self.calls[:-1])
        return {
            "FailedEntryCount": 0,
            "Entries": [
                {"ErrorCode": "InternalFailure", "ErrorMessage": "x"}
                if offset + i in self.failing
                else {"EventId": f"e{offset + i}"}
                for i in range(len(Entries))
            ],
        }


def test_eventbridge_bus_sends_ten_per_call_and_reports_failed_entries() -> None:
    events = [
        BalanceEvent.model_validate({"detail": {**ev.detail.model_dump(), "event_id": f"id{i}"}})
        for i, ev in enumerate([_low()] * 23)
    ]
    client = StubEvents(failing={3, 17})
    failed = EventBridgeBus(client, "bus").put(events)
    assert [len(c) for c in client.calls] == [10, 10, 3]
    assert [f.event.id for f in failed] == ["id3", "id17"]
    entry = client.calls[0][0]
    assert entry["Source"] == "serverless-credits"
    assert entry["DetailType"] == "Balance Low"
    assert entry["EventBusName"] == "bus"
    assert json.loads(entry["Detail"])["accountId"] == "acct_1"


def _low() -> BalanceEvent:
    bus = FakeBus()
    publisher(bus).publish([change(image(1, "20"), image(2, "10"))])
    (event,) = bus.accepted
    assert event.kind is EventKind.BALANCE_LOW
    return event


class StubSqs:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.bodies += [json.loads(e["MessageBody"]) for e in Entries]
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}


def test_replay_queue_messages_hold_the_whole_event() -> None:
    sqs = StubSqs()
    SqsReplayQueue(sqs, "url").send([FailedEvent(_low(), "InternalFailure", "x")])
    (body,) = sqs.bodies
    assert body["kind"] == "serverless-credits.events"
    assert body["envelope"]["detail-type"] == "Balance Low"
    assert body["envelope"]["detail"]["eventId"] == "acct_1:2:balance-low"


@pytest.mark.parametrize("name", ["EVENT_BUS_NAME"])
def test_the_function_needs_its_bus(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TABLE_NAME", "t-1")
    monkeypatch.delenv(name, raising=False)
    wiring.reset()
    with pytest.raises(RuntimeError, match=name):
        wiring.event_publisher()
    wiring.reset()
