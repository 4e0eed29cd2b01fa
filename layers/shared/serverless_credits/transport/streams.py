"""The account stream's transport: a DynamoDB Streams batch (as Lambda delivers it, filtered
to account items) in, the materializer's partial batch response out.

Powertools' batch processor handles records one by one; the materializer needs the batch
whole, to write one ledger head and one usage update per account and day instead of one
per record. So this module reports failures itself, in the same `batchItemFailures` shape:
the first failed record of each account (Lambda resumes from the lowest one; everything
after it is delivered again and is a no-op where it was already written)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from serverless_credits.domain.models import Account, utc_now
from serverless_credits.ledger.events import EventPublisher, PublishReport
from serverless_credits.ledger.materializer import AccountChange, Materializer
from serverless_credits.storage import keys
from serverless_credits.storage.items import from_item

logger = logging.getLogger(__name__)


def _image(stream_record: Mapping[str, Any], name: str) -> Account | None:
    image = stream_record.get(name)
    return Account.model_validate(from_item(image)) if image else None


def account_changes(event: Mapping[str, Any]) -> tuple[list[AccountChange], list[str]]:
    """The account changes in a stream event, and the positions of records that could not
    be read (reported as failures rather than dropped)."""
    changes: list[AccountChange] = []
    unreadable: list[str] = []
    for record in event.get("Records", []):
        stream_record = record.get("dynamodb", {})
        position = str(stream_record.get("SequenceNumber", ""))
        stream_keys = stream_record.get("Keys", {})
        account_id = keys.account_id_of(stream_keys.get("pk", {}).get("S", ""))
        if account_id is None or stream_keys.get("sk", {}).get("S") != keys.ACCOUNT_SK:
            continue  # not an account item: the event source's filter lets none through
        try:
            changes.append(
                AccountChange(
                    position=position,
                    account_id=account_id,
                    old=_image(stream_record, "OldImage"),
                    new=_image(stream_record, "NewImage"),
                )
            )
        except ValidationError:
            logger.exception("unreadable account image", extra={"position": position})
            unreadable.append(position)
    return changes, unreadable


@dataclass(frozen=True)
class MaterializeReport:
    """What the MaterializerFunction's metrics say about one batch."""

    read: int  # stream records in the batch
    failed: int  # records reported as failures (Lambda delivers them again)
    # The materialization lag: how long ago the batch's oldest new version was written
    # (its `updatedAt`, stamped by the write) when the batch was done, in milliseconds.
    # Versions of accounts that failed are left out (they are measured when they succeed);
    # None when the batch held no new version of a materialized account.
    lag_ms: float | None


def materialize(
    event: Mapping[str, Any],
    materializer: Materializer,
    clock: Callable[[], datetime] = utc_now,
) -> tuple[dict[str, Any], MaterializeReport]:
    """The MaterializerFunction's batch: the partial batch response and the report."""
    changes, failed = account_changes(event)
    failed += materializer.materialize(changes)
    now = clock()
    failed_positions = set(failed)
    failed_accounts = {c.account_id for c in changes if c.position in failed_positions}
    ages = [
        (now - version.updated_at).total_seconds() * 1000
        for change in changes
        if change.account_id not in failed_accounts and (version := change.new_version) is not None
    ]
    report = MaterializeReport(
        read=len(event.get("Records", [])),
        failed=len(failed),
        lag_ms=max(0.0, *ages) if ages else None,
    )
    response = {"batchItemFailures": [{"itemIdentifier": position} for position in failed]}
    return response, report


def handle(event: Mapping[str, Any], materializer: Materializer) -> dict[str, Any]:
    return materialize(event, materializer)[0]


def publish(
    event: Mapping[str, Any], publisher: EventPublisher
) -> tuple[dict[str, Any], PublishReport]:
    """The EventPublisherFunction's batch: the same account changes, balance events out;
    the partial batch response and the publisher's report (for metrics)."""
    changes, failed = account_changes(event)
    report = publisher.publish(changes)
    failed += report.failed_positions
    response = {"batchItemFailures": [{"itemIdentifier": position} for position in failed]}
    return response, report
