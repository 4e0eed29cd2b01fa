"""EventBridge and SQS for balance events: the bus (`PutEvents`, 10 entries per call, per-entry
failures reported, never raised) and the replay queue (whole events, `SendMessageBatch`; read
back with `ReceiveMessage`/`DeleteMessage` by `credits-admin events replay`).

Endpoints come from boto3's configuration: `AWS_ENDPOINT_URL_EVENTBRIDGE` points the bus at
the local stack's PutEvents endpoint (`devtools.local_events`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from serverless_credits.domain.events import (
    BalanceEvent,
    FailedEvent,
    ReplayMessage,
    event_from_envelope,
)
from serverless_credits.domain.money import dumps

PUT_EVENTS_LIMIT = 10  # entries per PutEvents call
SQS_BATCH_LIMIT = 10  # messages per SendMessageBatch / ReceiveMessage call
# A received message stays hidden this long (seconds): one replay run never sees it twice,
# and a message left in the queue (refused again, or unreplayable) is back after it.
REPLAY_VISIBILITY_SECONDS = 60
REPLAY_MESSAGE_KIND = "serverless-credits.events"


def entry(event: BalanceEvent, bus_name: str) -> dict[str, Any]:
    """One PutEvents entry."""
    return {
        "Source": event.source,
        "DetailType": event.detail_type,
        "Detail": event.detail_json(),
        "Time": event.time,
        "EventBusName": bus_name,
    }


class EventBridgeBus:
    def __init__(self, client: Any, bus_name: str) -> None:
        self._client = client
        self.bus_name = bus_name

    @classmethod
    def connect(cls, bus_name: str) -> EventBridgeBus:
        return cls(boto3.client("events"), bus_name)

    def put(self, events: Sequence[BalanceEvent]) -> list[FailedEvent]:
        failed: list[FailedEvent] = []
        for start in range(0, len(events), PUT_EVENTS_LIMIT):
            chunk = list(events[start : start + PUT_EVENTS_LIMIT])
            try:
                response = self._client.put_events(
                    Entries=[entry(event, self.bus_name) for event in chunk]
                )
            except ClientError as exc:
                error = exc.response.get("Error", {})
                code, message = str(error.get("Code", "ClientError")), str(error.get("Message"))
                failed += [FailedEvent(event, code, message) for event in chunk]
                continue
            except BotoCoreError as exc:
                failed += [FailedEvent(event, type(exc).__name__, str(exc)) for event in chunk]
                continue
            results = response.get("Entries", [])
            for index, event in enumerate(chunk):
                result = results[index] if index < len(results) else {"ErrorCode": "Missing"}
                if result.get("ErrorCode") or not result.get("EventId"):
                    failed.append(
                        FailedEvent(
                            event,
                            str(result.get("ErrorCode") or "NoEventId"),
                            str(result.get("ErrorMessage", "")),
                        )
                    )
        return failed


def replay_message(failed: FailedEvent) -> dict[str, Any]:
    """A replay queue message: the whole event as EventBridge would deliver it, and why it
    is there (`credits-admin events replay` publishes `envelope` again)."""
    return {
        "kind": REPLAY_MESSAGE_KIND,
        "envelope": failed.event.envelope(),
        "errorCode": failed.error_code,
        "errorMessage": failed.error_message,
    }


def replayed_events(body: str) -> tuple[BalanceEvent, ...]:
    """The events a replay queue message holds: its `envelope`'s, or none (Lambda's
    on-failure records hold stream positions; anything unreadable holds none either)."""
    try:
        message = json.loads(body, parse_float=Decimal)  # money stays exact
    except ValueError:
        return ()
    if not isinstance(message, dict) or message.get("kind") != REPLAY_MESSAGE_KIND:
        return ()
    try:
        return (event_from_envelope(message.get("envelope")),)
    except ValueError:
        return ()


class SqsReplayQueue:
    """The replay queue: `send` (the publisher), `receive`/`delete`/`depth` (the replay)."""

    def __init__(self, client: Any, queue_url: str, *, wait_seconds: int = 1) -> None:
        self._client = client
        self.queue_url = queue_url
        self._wait_seconds = wait_seconds  # long polling: an almost empty queue still answers

    @classmethod
    def connect(cls, queue_url: str) -> SqsReplayQueue:
        return cls(boto3.client("sqs"), queue_url)

    def send(self, failed: Sequence[FailedEvent]) -> None:
        """Send every event or raise (the caller then fails the stream record)."""
        for start in range(0, len(failed), SQS_BATCH_LIMIT):
            chunk = failed[start : start + SQS_BATCH_LIMIT]
            response = self._client.send_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(index), "MessageBody": dumps(replay_message(item))}
                    for index, item in enumerate(chunk)
                ],
            )
            if response.get("Failed"):
                raise RuntimeError(f"replay queue refused {len(response['Failed'])} messages")

    def receive(self, limit: int) -> list[ReplayMessage]:
        response = self._client.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(SQS_BATCH_LIMIT, limit)),
            VisibilityTimeout=REPLAY_VISIBILITY_SECONDS,
            WaitTimeSeconds=self._wait_seconds,
        )
        return [
            ReplayMessage(
                message_id=str(message.get("MessageId", "")),
                receipt=str(message["ReceiptHandle"]),
                events=replayed_events(str(message.get("Body", ""))),
            )
            for message in response.get("Messages", [])
        ]

    def delete(self, message: ReplayMessage) -> None:
        self._client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message.receipt)

    def depth(self) -> int | None:
        """Messages in the queue, visible or not (approximate, as SQS counts them)."""
        try:
            attributes = self._client.get_queue_attributes(
                QueueUrl=self.queue_url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )["Attributes"]
        except (BotoCoreError, ClientError):
            return None
        return int(attributes.get("ApproximateNumberOfMessages", 0)) + int(
            attributes.get("ApproximateNumberOfMessagesNotVisible", 0)
        )
