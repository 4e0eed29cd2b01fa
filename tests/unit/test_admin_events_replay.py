"""`events.replay` (AdminFunction) on moto's SQS and EventBridge: the replay queue's events
go back on the bus with their own `detail.eventId`; a message is deleted only when the bus
accepted all its events; Lambda's on-failure records are counted and left."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
import pytest

from serverless_credits import wiring
from serverless_credits.domain import money
from serverless_credits.domain.events import (
    BalanceDepletedDetail,
    BalanceEvent,
    BalanceLowDetail,
    FailedEvent,
    ReplayMessage,
    event_from_envelope,
)
from serverless_credits.integrations.eventbridge import (
    SqsReplayQueue,
    replay_message,
    replayed_events,
)
from serverless_credits.ledger.event_replay import EventReplayer
from serverless_credits.storage.store import CreditsStore
from serverless_credits.transport import admin_api

ACTOR = "ops@example"
BUS = "serverless-credits-test"
T0 = datetime(2025, 1, 1, 12, tzinfo=UTC)
# What Lambda sends to a stream event source's on-failure destination: positions, no events.
ON_FAILURE_RECORD = {
    "requestContext": {
        "requestId": "c9b8fa9f-5a7f-4e8c-8a4e-1f1d3c2b1a00",
        "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:EventPublisher",
        "condition": "RetryAttemptsExhausted",
        "approximateInvokeCount": 21,
    },
    "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
    "version": "1.0",
    "timestamp": "2025-01-01T12:00:00.000Z",
    "DDBStreamBatchInfo": {
        "shardId": "shardId-00000001",
        "startSequenceNumber": "100",
        "endSequenceNumber": "100",
        "batchSize": 1,
        "streamArn": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2025",
    },
}


def low(account_id: str = "acct_1", version: int = 7) -> BalanceEvent:
    return BalanceEvent(
        detail=BalanceLowDetail.model_validate(
            {
                "event_id": f"{account_id}:{version}:balance-low",
                "account_id": account_id,
                "version": version,
                "occurred_at": T0,
                "available": Decimal("4.5"),
                "balance": Decimal("4.5"),
                "threshold": Decimal(5),
                "previous_available": Decimal("9.25"),
            }
        )
    )


def depleted(account_id: str = "acct_2", version: int = 3) -> BalanceEvent:
    return BalanceEvent(
        detail=BalanceDepletedDetail.model_validate(
            {
                "event_id": f"{account_id}:{version}:balance-depleted",
                "account_id": account_id,
                "version": version,
                "occurred_at": T0,
                "available": Decimal(0),
                "balance": Decimal(0),
                "floor": Decimal(0),
                "overdraft_limit": Decimal(0),
                "previous_available": Decimal(1),
            }
        )
    )


def refused(event: BalanceEvent) -> str:
    """The message the EventPublisherFunction leaves for an entry the bus kept refusing."""
    return money.dumps(replay_message(FailedEvent(event, "InternalFailure", "try again")))


@dataclass
class Aws:
    sqs: Any
    queue_url: str
    sink_url: str  # a queue with every event of the bus (a rule's target)

    def send(self, *bodies: str) -> None:
        for body in bodies:
            self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)

    def published(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.sink_url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not messages:
                return found
            found += [json.loads(message["Body"]) for message in messages]
            for message in messages:
                self.sqs.delete_message(
                    QueueUrl=self.sink_url, ReceiptHandle=message["ReceiptHandle"]
                )

    def queued(self) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(value) for value in attributes.values())


@pytest.fixture
def aws(moto_store: CreditsStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    """The stack's bus and replay queue in moto (a rule copies the bus to a sink queue)."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    events = boto3.client("events", region_name="us-east-1")
    events.create_event_bus(Name=BUS)
    queue_url = sqs.create_queue(QueueName="event-replay")["QueueUrl"]
    sink_url = sqs.create_queue(QueueName="sink")["QueueUrl"]
    sink_arn = sqs.get_queue_attributes(QueueUrl=sink_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    events.put_rule(
        Name="all", EventBusName=BUS, EventPattern=json.dumps({"source": ["serverless-credits"]})
    )
    events.put_targets(Rule="all", EventBusName=BUS, Targets=[{"Id": "sink", "Arn": sink_arn}])
    for name in ("AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_EVENTBRIDGE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EVENT_BUS_NAME", BUS)
    monkeypatch.setenv("EVENT_REPLAY_QUEUE_URL", queue_url)
    # No long polling in tests: moto would wait out an empty queue's WaitTimeSeconds.
    monkeypatch.setattr(
        SqsReplayQueue, "connect", classmethod(lambda cls, url: cls(sqs, url, wait_seconds=0))
    )
    wiring.reset()
    yield Aws(sqs, queue_url, sink_url)
    wiring.reset()


def replay(**fields: Any) -> dict[str, Any]:
    return admin_api.handle(
        {"operation": "events.replay", "actor": ACTOR, **fields}, wiring.admin()
    )


def test_refused_events_are_published_again_with_their_ids_and_deleted(aws: Aws) -> None:
    aws.send(refused(low()), refused(depleted()))

    result = replay()

    assert result == {
        "received": 2,
        "republished": 2,
        "failed": 0,
        "unreplayable": 0,
        "remaining": 0,
    }
    published = aws.published()
    assert sorted(event["detail"]["eventId"] for event in published) == [
        "acct_1:7:balance-low",
        "acct_2:3:balance-depleted",
    ]
    by_id = {event["detail"]["eventId"]: event for event in published}
    again = by_id["acct_1:7:balance-low"]
    assert again["source"] == "serverless-credits"
    assert again["detail-type"] == "Balance Low"
    assert again["detail"] == low().envelope()["detail"]  # the very detail, figures included
    assert aws.queued() == 0


def test_lambdas_on_failure_records_are_unreplayable_and_left(aws: Aws) -> None:
    aws.send(json.dumps(ON_FAILURE_RECORD), refused(low()))

    result = replay()

    assert result["received"] == 2
    assert result["republished"] == 1
    assert result["unreplayable"] == 1
    assert result["remaining"] == 1
    assert "24 h" in result["note"]
    assert [event["detail"]["eventId"] for event in aws.published()] == ["acct_1:7:balance-low"]
    assert aws.queued() == 1


def test_a_message_the_bus_refuses_again_stays(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENT_BUS_NAME", "no-such-bus")
    wiring.reset()
    aws.send(refused(low()))

    result = replay()

    assert (result["received"], result["republished"], result["failed"]) == (1, 0, 1)
    assert aws.queued() == 1


def test_the_limit_bounds_the_messages_received(aws: Aws) -> None:
    aws.send(*(refused(low(version=v)) for v in range(1, 16)))

    first = replay(limit=12)
    assert (first["received"], first["republished"], first["remaining"]) == (12, 12, 3)
    second = replay()
    assert (second["received"], second["republished"], second["remaining"]) == (3, 3, 0)
    ids = sorted(event["detail"]["version"] for event in aws.published())
    assert ids == list(range(1, 16))


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"limt": 5}, "limt")],
)
def test_the_request_is_validated(aws: Aws, fields: dict[str, Any], field: str) -> None:
    refused_ = replay(**fields)
    assert refused_["error"]["code"] == "VALIDATION_ERROR"
    assert {detail["field"] for detail in refused_["error"]["details"]["fields"]} == {field}


# ---------------------------------------------------------------- the pieces, without AWS
def test_a_replay_message_gives_back_the_very_event() -> None:
    event = low()
    assert replayed_events(refused(event)) == (event,)
    assert event_from_envelope(event.envelope()).detail_json() == event.detail_json()
    assert replayed_events(json.dumps(ON_FAILURE_RECORD)) == ()
    assert replayed_events("not json") == ()
    broken = {"kind": "serverless-credits.events", "envelope": {"detail": {"kind": "nope"}}}
    assert replayed_events(json.dumps(broken)) == ()


class FakeInbox:
    def __init__(self, messages: list[ReplayMessage], broken_delete: bool = False) -> None:
        self.messages = list(messages)
        self.deleted: list[str] = []
        self.broken_delete = broken_delete
        self.asked: list[int] = []

    def receive(self, limit: int) -> list[ReplayMessage]:
        self.asked.append(limit)
        batch, self.messages = self.messages[:limit], self.messages[limit:]
        return batch

    def delete(self, message: ReplayMessage) -> None:
        if self.broken_delete:
            raise RuntimeError("throttled")
        self.deleted.append(message.message_id)

    def depth(self) -> int | None:
        return None


class AcceptingBus:
    def __init__(self) -> None:
        self.accepted: list[BalanceEvent] = []

    def put(self, events: Any) -> list[FailedEvent]:
        self.accepted += events
        return []


def test_a_message_not_deleted_counts_as_failed_and_remaining_is_left_out_if_unknown() -> None:
    inbox = FakeInbox([ReplayMessage("m1", "r1", (low(),))], broken_delete=True)
    bus = AcceptingBus()

    report = EventReplayer(bus, inbox).replay(10)

    assert (report.republished, report.failed, report.remaining) == (0, 1, None)
    assert [event.id for event in bus.accepted] == ["acct_1:7:balance-low"]


def test_receives_in_batches_of_ten_up_to_the_limit() -> None:
    inbox = FakeInbox([ReplayMessage(f"m{i}", f"r{i}", (low(version=i),)) for i in range(30)])

    report = EventReplayer(AcceptingBus(), inbox).replay(25)

    assert inbox.asked == [10, 10, 5]
    assert report.received == report.republished == 25
    assert len(inbox.deleted) == 25
