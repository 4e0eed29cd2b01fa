"""The cap on distinct endpoint labels per usage day (storage/usage.py) on DynamoDB Local:
its conditions (`size()` of the label set, `ALL_OLD` on a failed condition) as DynamoDB
evaluates them, and concurrent writers racing for the last slots."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import date

from serverless_credits.domain.models import UsageIncrement
from serverless_credits.domain.outcomes import Counted
from serverless_credits.storage import keys
from serverless_credits.storage.store import CreditsStore
from serverless_credits.storage.usage import ENDPOINTS, MAX_ENDPOINTS_PER_DAY, OTHER_ENDPOINT

ACCOUNT = "acct_labels_local"
DAY = date(2026, 11, 30)


def labels_in_item(store: CreditsStore) -> set[str]:
    item = store.client.get_item(
        TableName=store.table_name,
        Key={"pk": {"S": keys.usage_pk(ACCOUNT)}, "sk": {"S": keys.usage_sk(DAY)}},
        ConsistentRead=True,
    )["Item"]
    return set(item[ENDPOINTS]["SS"])


def test_200_declined_calls_with_distinct_labels_from_16_writers_keep_the_cap(
    local_store: CreditsStore,
) -> None:
    """Each writer's condition is on the set's size: two writers taking the last slot at
    once cannot both land, the loser relearns the set and counts under `other`."""

    def call(i: int) -> None:
        local_store.usage.add(
            ACCOUNT, UsageIncrement(day=DAY, calls=1, failed=1, by_endpoint={f"/race/{i}": 1})
        )

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(call, range(200)))

    (day,) = local_store.usage.daily(ACCOUNT, DAY, DAY)
    assert day.calls == day.failed == 200
    assert sum(day.by_endpoint.values()) == 200
    assert len(labels_in_item(local_store)) == MAX_ENDPOINTS_PER_DAY
    assert set(day.by_endpoint) == labels_in_item(local_store) | {OTHER_ENDPOINT}
    assert day.by_endpoint[OTHER_ENDPOINT] == 200 - MAX_ENDPOINTS_PER_DAY


def test_the_materializers_count_keeps_the_cap_and_stays_idempotent(
    local_store: CreditsStore,
) -> None:
    """A batch of versions carrying more labels than the cap: admitted up to it, the rest
    under `other`; redelivering the same versions adds nothing."""
    counted = [
        Counted(
            version=v,
            indexed=True,
            usage=UsageIncrement(
                day=DAY, calls=1, by_endpoint={f"/batch/{v}": 1}, by_endpoint_credits={}
            ),
        )
        for v in range(1, MAX_ENDPOINTS_PER_DAY + 21)
    ]
    local_store.usage.count(ACCOUNT, DAY, counted[:10])
    local_store.usage.count(ACCOUNT, DAY, counted)
    local_store.usage.count(ACCOUNT, DAY, counted)  # a redelivery

    (day,) = local_store.usage.daily(ACCOUNT, DAY, DAY)
    assert day.calls == len(counted)
    assert len(labels_in_item(local_store)) == MAX_ENDPOINTS_PER_DAY
    # No slot taken by a label that has no counter (one of an already counted version).
    assert set(day.by_endpoint) == labels_in_item(local_store) | {OTHER_ENDPOINT}
    assert day.by_endpoint[OTHER_ENDPOINT] == 20
