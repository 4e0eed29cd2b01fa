"""The stream transport (transport.streams): a DynamoDB Streams event as Lambda delivers it
becomes account changes for the materializer, and its failures a partial batch response.
No AWS: events are built by hand and the materializer is a fake."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from serverless_credits.domain.models import Account, EntryType, LastOp
from serverless_credits.ledger.materializer import AccountChange
from serverless_credits.storage import keys
from serverless_credits.storage.items import to_item
from serverless_credits.transport import streams

NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)


def image(account_id: str = "acct_s", version: int = 1, **fields: Any) -> dict[str, Any]:
    account = Account(
        account_id=account_id,
        version=version,
        balance=Decimal(version),
        available=Decimal(version),
        last_op=LastOp(
            id="0123456789abcdef", key=f"k{version}", type=EntryType.GRANT, amount=1, at=NOW
        )
        if version
        else None,
        created_at=NOW,
        updated_at=NOW,
    )
    item = to_item(account, pk=keys.account_pk(account_id), sk=keys.ACCOUNT_SK)
    item.update(fields)
    return item


def stream_record(
    position: int,
    new: dict[str, Any] | None,
    old: dict[str, Any] | None = None,
    *,
    pk: str | None = None,
    sk: str = keys.ACCOUNT_SK,
) -> dict[str, Any]:
    source = new or old or {}
    data: dict[str, Any] = {
        "Keys": {"pk": {"S": pk or source["pk"]["S"]}, "sk": {"S": sk}},
        "SequenceNumber": str(position),
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new is not None:
        data["NewImage"] = new
    if old is not None:
        data["OldImage"] = old
    return {
        "eventID": f"e{position}",
        "eventName": "MODIFY" if old and new else ("INSERT" if new else "REMOVE"),
        "eventSource": "aws:dynamodb",
        "dynamodb": data,
    }


class FakeMaterializer:
    def __init__(self, failing: Sequence[str] = ()) -> None:
        self.batches: list[list[AccountChange]] = []
        self.failing = list(failing)

    def materialize(self, changes: Sequence[AccountChange]) -> list[str]:
        self.batches.append(list(changes))
        return self.failing


def handle(event: dict[str, Any], materializer: FakeMaterializer) -> dict[str, Any]:
    return streams.handle(event, materializer)  # type: ignore[arg-type]


def test_account_records_become_changes_with_both_images() -> None:
    event = {"Records": [stream_record(11, image(version=2), image(version=1))]}

    changes, unreadable = streams.account_changes(event)

    [change] = changes
    assert unreadable == []
    assert (change.position, change.account_id) == ("11", "acct_s")
    assert change.old is not None
    assert change.new is not None
    assert (change.old.version, change.new.version) == (1, 2)
    assert change.new.last_op is not None
    assert change.new.last_op.key == "k2"
    assert change.new_version == change.new


def test_records_of_other_items_are_left_out() -> None:
    ledger_item = {"pk": {"S": keys.ledger_pk("acct_s")}, "sk": {"S": "SEQ#000000000001"}}
    event = {
        "Records": [
            stream_record(1, ledger_item, sk="SEQ#000000000001"),
            stream_record(2, image(), sk="HEAD"),
            stream_record(3, {"pk": {"S": "IDEMPOTENCY#acct_s#k"}}, sk=keys.IDEMPOTENCY_SK),
            stream_record(4, image(version=1)),
        ]
    }

    changes, unreadable = streams.account_changes(event)

    assert [c.position for c in changes] == ["4"]
    assert unreadable == []


def test_changes_that_are_not_new_versions_materialize_nothing() -> None:
    created = streams.account_changes({"Records": [stream_record(1, image(version=0))]})[0][0]
    settings = streams.account_changes(
        {"Records": [stream_record(2, image(version=3, flagged={"BOOL": True}), image(version=3))]}
    )[0][0]
    removed = streams.account_changes({"Records": [stream_record(3, None, image(version=3))]})[0][0]
    older = streams.account_changes(
        {"Records": [stream_record(4, image(version=2), image(version=3))]}
    )[0][0]

    assert created.new_version is None  # account creation: no balance change
    assert settings.new_version is None  # status, thresholds: no version
    assert removed.new is None
    assert removed.new_version is None
    assert older.new_version is None


def test_an_unreadable_image_is_reported_as_a_failure_not_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = image(version=2, balance={"S": "not a number"})
    event = {
        "Records": [
            stream_record(1, image(version=1)),
            stream_record(2, broken, image(version=1)),
            stream_record(3, image("acct_t", version=1)),
        ]
    }
    materializer = FakeMaterializer()

    response = handle(event, materializer)

    assert response == {"batchItemFailures": [{"itemIdentifier": "2"}]}
    [batch] = materializer.batches
    assert [c.position for c in batch] == ["1", "3"]
    assert "unreadable account image" in caplog.text


def test_the_materializers_failures_join_the_unreadable_ones() -> None:
    event = {
        "Records": [
            stream_record(1, image(version=1)),
            stream_record(2, image(version=2, createdAt={"S": "yesterday"}), image(version=1)),
        ]
    }

    response = handle(event, FakeMaterializer(failing=["1"]))

    assert response == {"batchItemFailures": [{"itemIdentifier": "2"}, {"itemIdentifier": "1"}]}


def test_an_empty_or_filtered_batch_fails_nothing() -> None:
    materializer = FakeMaterializer()

    assert handle({}, materializer) == {"batchItemFailures": []}
    assert handle({"Records": []}, materializer) == {"batchItemFailures": []}
    assert [len(batch) for batch in materializer.batches] == [0, 0]
