"""EventBridge's PutEvents and SQS's SendMessageBatch, for the local stack: balance events land
in `.local/events.jsonl` (one EventBridge envelope per line: id, source, detail-type, time,
detail, ...) with a short line printed for each; events the "bus" refused would land in
`.local/event-replay.jsonl` (the replay queue's messages).

The local stack serves this beside Lambda's Invoke API (one "AWS endpoint" on :3001) and
points the EventPublisherFunction's boto3 clients at it with `AWS_ENDPOINT_URL_EVENTBRIDGE`
and `AWS_ENDPOINT_URL_SQS`, so the function runs the very code it runs in AWS. Both services
speak AWS's JSON protocol: a POST to `/` with an `X-Amz-Target` header. The envelope's `id`
is the event's deterministic `detail.eventId` (on AWS, EventBridge assigns its own)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from werkzeug.wrappers import Request, Response

PUT_EVENTS = "AWSEvents.PutEvents"
SEND_MESSAGE_BATCH = "AmazonSQS.SendMessageBatch"
TARGETS = (PUT_EVENTS, SEND_MESSAGE_BATCH)


def _time(value: Any) -> str:
    if isinstance(value, int | float):
        moment = datetime.fromtimestamp(value, UTC)
    elif isinstance(value, str) and value:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    else:
        moment = datetime.now(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LocalEvents:
    """A WSGI app for the two operations, appending to the two files."""

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
        self._lock = threading.Lock()

    def envelope(self, entry: dict[str, Any]) -> dict[str, Any]:
        detail = json.loads(entry.get("Detail") or "{}")
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
                handle.write(json.dumps(line) + "\n")

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
        self._append(
            self.replay_file,
            [
                {"queueUrl": body.get("QueueUrl"), "body": json.loads(e["MessageBody"])}
                for e in entries
            ],
        )
        return {
            "Successful": [
                {"Id": e["Id"], "MessageId": str(uuid.uuid4()), "MD5OfMessageBody": ""}
                for e in entries
            ],
            "Failed": [],
        }

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        target = request.headers.get("X-Amz-Target", "")
        body = json.loads(request.get_data() or b"{}")
        if target == PUT_EVENTS:
            answer, content_type = self.put_events(body), "application/x-amz-json-1.1"
        else:
            answer, content_type = self.send_message_batch(body), "application/x-amz-json-1.0"
        return Response(json.dumps(answer), content_type=content_type)(environ, start_response)


def with_local_events(app: Callable[..., Any], events: LocalEvents) -> Callable[..., Any]:
    """`app` with PutEvents and SendMessageBatch beside it on the same port."""

    def dispatch(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("HTTP_X_AMZ_TARGET", "") in TARGETS:
            return events(environ, start_response)
        return app(environ, start_response)

    return dispatch


__all__ = ["LocalEvents", "with_local_events"]
