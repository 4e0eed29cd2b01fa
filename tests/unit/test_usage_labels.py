"""The cap on distinct endpoint labels per daily usage item (storage/usage.py), on moto.

An `endpoint` label is the caller's own string: before the cap, every distinct one added
counters to the account's usage item of the day, so enough of them pushed it past
DynamoDB's 400 KB item limit and every later write of it (every debit's usage, then the
materializer's batch) failed until midnight. Past `MAX_ENDPOINTS_PER_DAY` a new label is
counted under `other`: no call and no credit goes uncounted, and the item stays small."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from serverless_credits import wiring
from serverless_credits.domain.commands import CreateAccountCommand, DebitCommand
from serverless_credits.domain.errors import InsufficientCredits
from serverless_credits.domain.models import UsageIncrement
from serverless_credits.ledger.declined import count_declined
from serverless_credits.ledger.operations import Ledger
from serverless_credits.storage import keys
from serverless_credits.storage.store import CreditsStore
from serverless_credits.storage.usage import (
    ENDPOINT_CALLS_PREFIX,
    ENDPOINTS,
    MAX_ENDPOINTS_PER_DAY,
    OTHER_ENDPOINT,
)

ACCOUNT = "acct_labels"
DAY = date(2026, 11, 30)


@pytest.fixture
def ledger(moto_store: CreditsStore, materialize: Callable[[], int]) -> Ledger:
    def materialize_meanwhile(_: float) -> None:
        materialize()

    built = wiring.build_ledger(moto_store, wiring.prices(), sleep=materialize_meanwhile)
    built.create_account(CreateAccountCommand(account_id=ACCOUNT, opening_balance=Decimal(1000)))
    return built


def raw_item(store: CreditsStore, day: date) -> dict[str, Any]:
    item = store.client.get_item(
        TableName=store.table_name,
        Key={"pk": {"S": keys.usage_pk(ACCOUNT)}, "sk": {"S": keys.usage_sk(day)}},
        ConsistentRead=True,
    ).get("Item")
    assert item is not None
    return item


def item_bytes(item: dict[str, Any]) -> int:
    """An upper bound of DynamoDB's item size: names plus the values' text."""
    return sum(len(name.encode()) + len(str(value).encode()) for name, value in item.items())


def endpoint_labels(item: dict[str, Any]) -> set[str]:
    return {n[len(ENDPOINT_CALLS_PREFIX) :] for n in item if n.startswith(ENDPOINT_CALLS_PREFIX)}


def test_200_distinct_endpoints_in_a_day_keep_the_item_small_and_every_debit_working(
    ledger: Ledger, moto_store: CreditsStore, materialize: Callable[[], int]
) -> None:
    long_label = "/v1/" + "x" * 120  # near the 128-character limit of an endpoint
    for i in range(200):
        result = ledger.debit(
            DebitCommand(
                account_id=ACCOUNT,
                idempotency_key=f"d-{i}",
                amount=Decimal(1),
                endpoint=f"{long_label}{i:03d}"[-128:],
            )
        )
        assert result.balance_after == 1000 - (i + 1)
        if i % 20 == 19:
            materialize()  # the Materializer function counts usage as debits go
    materialize()

    day = moto_store.accounts.get(ACCOUNT, consistent=True)
    assert day is not None
    usage = moto_store.usage.daily(ACCOUNT, date(2000, 1, 1), date(2100, 1, 1))
    assert len(usage) == 1
    counted = usage[0]
    item = raw_item(moto_store, counted.day)
    labels = endpoint_labels(item)
    # The cap, plus the overflow bucket; every call and credit still counted.
    assert len(labels - {OTHER_ENDPOINT}) == MAX_ENDPOINTS_PER_DAY
    assert OTHER_ENDPOINT in labels
    assert len(item[ENDPOINTS]["SS"]) == MAX_ENDPOINTS_PER_DAY
    assert counted.calls == 200
    assert sum(counted.by_endpoint.values()) == 200
    assert counted.by_endpoint[OTHER_ENDPOINT] == 200 - MAX_ENDPOINTS_PER_DAY
    assert sum(counted.by_endpoint_credits.values()) == 200
    # About 23 KB at the cap with 128-character labels: far below DynamoDB's 400 KB.
    assert item_bytes(item) < 40_000


def test_a_label_admitted_before_the_cap_keeps_its_own_counter_after_it(
    moto_store: CreditsStore,
) -> None:
    usage = moto_store.usage
    for i in range(MAX_ENDPOINTS_PER_DAY + 5):
        usage.add(ACCOUNT, UsageIncrement(day=DAY, calls=1, by_endpoint={f"/e{i}": 1}))
    usage.add(ACCOUNT, UsageIncrement(day=DAY, calls=1, by_endpoint={"/e0": 1}))

    (day,) = usage.daily(ACCOUNT, DAY, DAY)
    assert day.by_endpoint["/e0"] == 2
    assert day.by_endpoint[OTHER_ENDPOINT] == 5
    assert "/e50" not in day.by_endpoint


def test_one_increment_with_more_labels_than_the_cap_folds_the_rest_into_other(
    moto_store: CreditsStore,
) -> None:
    """A reconciler's gap or a materializer batch may carry many labels at once."""
    labels = {f"/b{i:03d}": 1 for i in range(MAX_ENDPOINTS_PER_DAY + 30)}
    moto_store.usage.add(ACCOUNT, UsageIncrement(day=DAY, calls=len(labels), by_endpoint=labels))

    (day,) = moto_store.usage.daily(ACCOUNT, DAY, DAY)
    assert len(day.by_endpoint) == MAX_ENDPOINTS_PER_DAY + 1
    assert day.by_endpoint[OTHER_ENDPOINT] == 30
    assert sum(day.by_endpoint.values()) == len(labels)


def test_declined_calls_with_distinct_labels_are_capped_too(
    ledger: Ledger, moto_store: CreditsStore
) -> None:
    for i in range(MAX_ENDPOINTS_PER_DAY + 10):
        with pytest.raises(InsufficientCredits):
            ledger.debit(
                DebitCommand(
                    account_id=ACCOUNT,
                    idempotency_key=f"big-{i}",
                    amount=Decimal(5000),
                    endpoint=f"/declined/{i}",
                )
            )

    usage = moto_store.usage.daily(ACCOUNT, date(2000, 1, 1), date(2100, 1, 1))
    (day,) = usage
    assert day.failed == MAX_ENDPOINTS_PER_DAY + 10
    assert day.by_endpoint[OTHER_ENDPOINT] == 10
    assert len(day.by_endpoint) == MAX_ENDPOINTS_PER_DAY + 1


class BrokenUsage:
    """A usage store whose every write fails, and not with a storage error."""

    def add(self, account_id: str, usage: UsageIncrement) -> None:
        raise RuntimeError("the usage write failed in an unexpected way")


def test_a_failing_declined_call_counter_never_changes_the_refusal() -> None:
    """count_declined is best effort: whatever the failure, the caller's refusal stands."""
    command = DebitCommand(account_id=ACCOUNT, idempotency_key="k", amount=Decimal(1))

    count_declined(BrokenUsage(), command, DAY)  # type: ignore[arg-type]
