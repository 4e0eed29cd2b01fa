"""Re-publishing the events the bus kept refusing (`credits-admin events replay`).

The EventPublisherFunction puts entries `PutEvents` still refuses after its retries, whole,
on the replay queue (`ledger.events`). Here, up to `limit` messages are received; each
message's events are put on the bus again with their own `detail.eventId` (consumers drop
duplicates by it), and the message is deleted only when the bus accepted all of them.
Messages without events - Lambda's on-failure records of the publisher, stream positions
only - cannot be re-published from here: they are counted `unreplayable` and left in the
queue (the changes they name are in the stream for 24 hours only: reconcile or redrive
them within that time, docs/events.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from serverless_credits.domain.events import ReplayMessage
from serverless_credits.ledger.ports import EventBus, ReplayInbox

logger = logging.getLogger(__name__)

RECEIVE_LIMIT = 10  # messages per ReceiveMessage call (SQS's maximum)


@dataclass(frozen=True)
class ReplayReport:
    """Counts of messages: `received` = `republished` + `failed` + `unreplayable`."""

    received: int
    republished: int  # put on the bus again, and deleted from the queue
    failed: int  # replayable, but the bus refused an entry (or the delete failed): left
    unreplayable: int  # Lambda's on-failure records (no events): left
    remaining: int | None = None  # messages the queue still holds (approximate), if known


class EventReplayer:
    def __init__(self, bus: EventBus, inbox: ReplayInbox) -> None:
        self._bus = bus
        self._inbox = inbox

    def replay(self, limit: int) -> ReplayReport:
        received = republished = failed = unreplayable = 0
        while received < limit:
            batch = self._inbox.receive(min(RECEIVE_LIMIT, limit - received))
            if not batch:
                break
            for message in batch[: limit - received]:
                received += 1
                if not message.replayable:
                    unreplayable += 1
                    logger.warning(
                        "replay queue message holds no events (Lambda's on-failure record)",
                        extra={"messageId": message.message_id},
                    )
                elif self._republish(message):
                    republished += 1
                else:
                    failed += 1
        return ReplayReport(received, republished, failed, unreplayable, self._inbox.depth())

    def _republish(self, message: ReplayMessage) -> bool:
        refused = self._bus.put(message.events)
        if refused:
            logger.error(
                "the bus refused replayed events",
                extra={
                    "messageId": message.message_id,
                    "events": [f.event.id for f in refused],
                    "error": refused[0].error_code,
                },
            )
            return False
        try:
            self._inbox.delete(message)
        except Exception:
            # Published, but still queued: a later replay publishes it again (same eventId).
            logger.exception(
                "replayed message could not be deleted", extra={"messageId": message.message_id}
            )
            return False
        logger.info(
            "events replayed",
            extra={"messageId": message.message_id, "events": [e.id for e in message.events]},
        )
        return True


__all__ = ["RECEIVE_LIMIT", "EventReplayer", "ReplayReport"]
