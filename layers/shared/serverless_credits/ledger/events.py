"""Publishing balance events from the account's change stream (EventPublisherFunction).

The stream is the outbox: every account change arrives once or more, in order per account,
with its old and new images; `domain.events.derive` decides the events and their ids.
Per batch:

1. per account, in order: derive each change's events; an `Auto Reload Requested` is kept
   only if its conditional mark on the account (`autoReloadPending`) succeeds - the mark
   is the one place that decides between racing or redelivered requests; a top-up whose
   `reference` is the pending request id (read from its idempotency record: `lastOp` has
   no reference) clears the mark. A failure here (DynamoDB) stops that account: its
   failed change is reported (partial batch response) and nothing after it is published.
2. PutEvents for every kept event (the bus adapter sends 10 per call); entries the bus
   refused are sent again, alone, up to `attempts` times (entries it accepted never are:
   no second event with the same id from a retry).
3. entries still refused go, whole, to the replay queue, and the change is done (no batch
   failure: the stream would only publish its other events a second time). Only when the
   replay queue refuses them too is the change reported failed, so Lambda retries it and
   finally hands its position to the on-failure destination.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from serverless_credits.domain.events import (
    AUTO_RELOAD_TIMEOUT,
    BalanceEvent,
    EventKind,
    FailedEvent,
    derive,
    is_new_version,
)
from serverless_credits.domain.models import AutoReloadPending, EntryType
from serverless_credits.ledger.materializer import AccountChange
from serverless_credits.ledger.ports import (
    AutoReloadMarks,
    EventBus,
    EventReplayQueue,
    IdempotencyRecords,
)

logger = logging.getLogger(__name__)


@dataclass
class PublishReport:
    """What one batch did: the stream positions to report as failed, and the counts the
    function turns into metrics."""

    failed_positions: list[str] = field(default_factory=list)
    published: int = 0
    retried: int = 0  # entries sent again after the bus refused them
    replayable: int = 0  # entries sent to the replay queue (publish failures)
    held_back: int = 0  # auto-reload requests another pending request held back
    events: list[BalanceEvent] = field(default_factory=list)  # published, in order


class EventPublisher:
    def __init__(
        self,
        bus: EventBus,
        marks: AutoReloadMarks,
        records: IdempotencyRecords,
        replay: EventReplayQueue | None = None,
        *,
        auto_reload_timeout: timedelta = AUTO_RELOAD_TIMEOUT,
        attempts: int = 3,
        backoff: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._bus = bus
        self._marks = marks
        self._records = records
        self._replay = replay
        self._timeout = auto_reload_timeout
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._sleep = sleep

    def publish(self, changes: Sequence[AccountChange]) -> PublishReport:
        report = PublishReport()
        by_account: dict[str, list[AccountChange]] = defaultdict(list)
        for change in changes:
            by_account[change.account_id].append(change)
        planned: list[tuple[BalanceEvent, AccountChange]] = []
        for account_id, account_changes in by_account.items():
            for change in account_changes:
                try:
                    planned += [(e, change) for e in self._decide(change, report)]
                except Exception:
                    logger.exception(
                        "events of a change could not be decided",
                        extra={"accountId": account_id, "position": change.position},
                    )
                    report.failed_positions.append(change.position)
                    break  # the rest of this account is delivered again from here
        unsent = self._put([event for event, _ in planned], report)
        if unsent:
            report.replayable += len(unsent)
            logger.error(
                "events refused by the bus",
                extra={"events": [f.event.id for f in unsent], "error": unsent[0].error_code},
            )
            try:
                if self._replay is None:
                    raise RuntimeError("no replay queue configured")
                self._replay.send(unsent)
            except Exception:
                logger.exception("refused events could not reach the replay queue")
                self._fail_changes({f.event.id for f in unsent}, planned, report)
        refused = {f.event.id for f in unsent}
        report.events = [event for event, _ in planned if event.id not in refused]
        report.published = len(report.events)
        return report

    def _decide(self, change: AccountChange, report: PublishReport) -> list[BalanceEvent]:
        kept: list[BalanceEvent] = []
        for event in derive(change.old, change.new, auto_reload_timeout=self._timeout):
            if event.kind is EventKind.AUTO_RELOAD_REQUESTED:
                pending = AutoReloadPending(request_id=event.id, at=event.time)
                if not self._marks.mark_auto_reload(
                    change.account_id, pending, expired_before=event.time - self._timeout
                ):
                    report.held_back += 1
                    continue  # another request is pending: only the mark's winner publishes
            kept.append(event)
        self._answer_auto_reload(change)
        return kept

    def _answer_auto_reload(self, change: AccountChange) -> None:
        """A top-up that references the pending request clears it."""
        new = change.new
        if new is None or new.auto_reload_pending is None or not is_new_version(change.old, new):
            return
        op = new.last_op
        if op is None or op.type is not EntryType.TOPUP:
            return
        record = self._records.get(change.account_id, op.key)
        if record is None or record.op_id != op.id:
            return
        request_id = new.auto_reload_pending.request_id
        if record.operation.reference == request_id:
            self._marks.clear_auto_reload(change.account_id, request_id)

    def _put(self, events: list[BalanceEvent], report: PublishReport) -> list[FailedEvent]:
        """Put the events; send again only the entries the bus refused."""
        if not events:
            return []
        failed = self._bus.put(events)
        for attempt in range(1, self._attempts):
            if not failed:
                break
            report.retried += len(failed)
            self._sleep(self._backoff * 2 ** (attempt - 1))
            failed = self._bus.put([f.event for f in failed])
        return failed

    @staticmethod
    def _fail_changes(
        ids: set[str],
        planned: list[tuple[BalanceEvent, AccountChange]],
        report: PublishReport,
    ) -> None:
        """Report, per account, the first change whose events were lost."""
        reported = set(report.failed_positions)
        accounts: set[str] = set()
        for event, change in planned:
            if event.id in ids and change.account_id not in accounts:
                accounts.add(change.account_id)
                if change.position not in reported:
                    report.failed_positions.append(change.position)
                    reported.add(change.position)
