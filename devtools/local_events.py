"""EventBridge's PutEvents and the replay queue's SQS operations, for the local stack: balance
events land in `.local/events.jsonl` (one EventBridge envelope per line: id, source,
detail-type, time, detail, ...) with a short line printed for each; events the "bus" refused
would land in `.local/event-replay.jsonl` (the replay queue's messages, one per line:
`{"messageId", "queueUrl", "body"}`), from where `credits-admin --local events replay` (the
AdminFunction) receives them (ReceiveMessage: hidden for the VisibilityTimeout, in memory),
deletes them (DeleteMessage: the line goes) and counts them (GetQueueAttributes).

The local stack serves this beside Lambda's Invoke API (one "AWS endpoint" on :3001) and
points the EventPublisherFunction's boto3 clients at it with `AWS_ENDPOINT_URL_EVENTBRIDGE`
and `AWS_ENDPOINT_URL_SQS` (the AdminFunction's too), so the functions run the very code they
run in AWS. Both services
speak AWS's JSON protocol: a POST to `/` with an `X-Amz-Target` header. The envelope's `id`
is the event's deterministic `detail.eventId` (on AWS, EventBridge assigns its own)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from werkzeug.wrappers import Request, Response

from serverless_credits.domain import money

PUT_EVENTS = "AWSEvents.PutEvents"
SEND_MESSAGE_BATCH = "AmazonSQS.SendMessageBatch"
RECEIVE_MESSAGE = "AmazonSQS.ReceiveMessage"
DELETE_MESSAGE = "AmazonSQS.DeleteMessage"
GET_QUEUE_ATTRIBUTES = "AmazonSQS.GetQueueAttributes"
TARGETS = (PUT_EVENTS, SEND_MESSAGE_BATCH, RECEIVE_MESSAGE, DELETE_MESSAGE, GET_QUEUE_ATTRIBUTES)
DEFAULT_VISIBILITY_SECONDS = 30  # SQS's default VisibilityTimeout


def _time(value: Any) -> str:
    if isinstance(value, int | float):
        moment = datetime.fromtimestamp(value, UTC)
    elif isinstance(value, str) and value:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    else:
        moment = datetime.now(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LocalEvents:
    """A WSGI app for PutEvents (appending to the events file) and the replay queue's
    operations (on the replay file)."""

    def __init__(
        self,
        events_file: Path,
        replay_file: Path,
        *,
        account: str = "000000000000",
        region: str = "us-east-1",
        announce: Callable[[str], None] | None = print,
    ) -> None:
        self.events_file = events_file
        self.replay_file = replay_file
        self.account = account
        self.region = region
        self.announce = announce
        self._lock = threading.RLock()
        self._hidden: dict[str, float] = {}  # messageId -> when it is visible again

    def envelope(self, entry: dict[str, Any]) -> dict[str, Any]:
        # Money stays exact from PutEvents' Detail to the file (as EventBridge keeps the text).
        detail = json.loads(entry.get("Detail") or "{}", parse_float=Decimal)
        return {
            "version": "0",
            "id": str(detail.get("eventId") or uuid.uuid4()),
            "detail-type": entry.get("DetailType"),
            "source": entry.get("Source"),
            "account": self.account,
            "time": _time(entry.get("Time")),
            "region": self.region,
            "resources": entry.get("Resources", []),
            "detail": detail,
        }

    def _append(self, path: Path, lines: list[dict[str, Any]]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, path.open("a", encoding="utf-8") as handle:
            for line in lines:
                handle.write(money.dumps(line) + "\n")

    def put_events(self, body: dict[str, Any]) -> dict[str, Any]:
        envelopes = [self.envelope(entry) for entry in body.get("Entries", [])]
        self._append(self.events_file, envelopes)
        for envelope in envelopes:
            if self.announce is not None:
                detail = envelope["detail"]
                self.announce(
                    f"event  {envelope['detail-type']:<24} {detail.get('accountId')} "
                    f"v{detail.get('version')}  available {detail.get('available')}  "
                    f"({envelope['id']})"
                )
        return {"FailedEntryCount": 0, "Entries": [{"EventId": e["id"]} for e in envelopes]}

    def send_message_batch(self, body: dict[str, Any]) -> dict[str, Any]:
        entries = body.get("Entries", [])
        messages = [
            {
                "messageId": str(uuid.uuid4()),
                "queueUrl": body.get("QueueUrl"),
                "body": json.loads(e["MessageBody"]),
            }
            for e in entries
        ]
        self._append(self.replay_file, messages)
        return {
            "Successful": [
                {"Id": e["Id"], "MessageId": m["messageId"], "MD5OfMessageBody": ""}
                for e, m in zip(entries, messages, strict=True)
            ],
            "Failed": [],
        }

    # ------------------------------------------------------------ the replay queue, read
    def _messages(self) -> list[dict[str, Any]]:
        """The queue's messages (lines written before they had ids get one now)."""
        if not self.replay_file.exists():
            return []
        lines = [line for line in self.replay_file.read_text("utf-8").splitlines() if line]
        messages = [json.loads(line) for line in lines]
        if any("messageId" not in message for message in messages):
            for message in messages:
                message.setdefault("messageId", str(uuid.uuid4()))
            self._rewrite(messages)
        return messages

    def _rewrite(self, messages: list[dict[str, Any]]) -> None:
        self.replay_file.write_text(
            "".join(json.dumps(message) + "\n" for message in messages), "utf-8"
        )

    def receive_message(self, body: dict[str, Any]) -> dict[str, Any]:
        wanted = max(1, min(10, int(body.get("MaxNumberOfMessages") or 1)))
        visibility = int(body.get("VisibilityTimeout", DEFAULT_VISIBILITY_SECONDS))
        now = time.monotonic()
        received: list[dict[str, Any]] = []
        with self._lock:
            for message in self._messages():
                if len(received) == wanted:
                    break
                message_id = message["messageId"]
                if self._hidden.get(message_id, 0.0) > now:
                    continue
                self._hidden[message_id] = now + visibility
                text = json.dumps(message["body"])
                received.append(
                    {
                        "MessageId": message_id,
                        "ReceiptHandle": f"{message_id}/{uuid.uuid4().hex}",
                        "MD5OfBody": hashlib.md5(text.encode()).hexdigest(),  # noqa: S324
                        "Body": text,
                    }
                )
        return {"Messages": received}

    def delete_message(self, body: dict[str, Any]) -> dict[str, Any]:
        message_id = str(body.get("ReceiptHandle", "")).split("/", 1)[0]
        with self._lock:
            messages = self._messages()
            kept = [message for message in messages if message["messageId"] != message_id]
            if len(kept) != len(messages):
                self._rewrite(kept)
            self._hidden.pop(message_id, None)
        return {}

    def get_queue_attributes(self, body: dict[str, Any]) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            messages = self._messages()
        hidden = sum(1 for m in messages if self._hidden.get(m["messageId"], 0.0) > now)
        return {
            "Attributes": {
                "ApproximateNumberOfMessages": str(len(messages) - hidden),
                "ApproximateNumberOfMessagesNotVisible": str(hidden),
            }
        }

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        target = request.headers.get("X-Amz-Target", "")
        body = json.loads(request.get_data() or b"{}")
        if target == PUT_EVENTS:
            answer, content_type = self.put_events(body), "application/x-amz-json-1.1"
        else:
            operations = {
                SEND_MESSAGE_BATCH: self.send_message_batch,
                RECEIVE_MESSAGE: self.receive_message,
                DELETE_MESSAGE: self.delete_message,
                GET_QUEUE_ATTRIBUTES: self.get_queue_attributes,
            }
            answer, content_type = operations[target](body), "application/x-amz-json-1.0"
        return Response(json.dumps(answer), content_type=content_type)(environ, start_response)


def with_local_events(app: Callable[..., Any], events: LocalEvents) -> Callable[..., Any]:
    """`app` with PutEvents and the replay queue's operations beside it on the same port."""

    def dispatch(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("HTTP_X_AMZ_TARGET", "") in TARGETS:
            return events(environ, start_response)
        return app(environ, start_response)

    return dispatch


__all__ = ["LocalEvents", "with_local_events"]
