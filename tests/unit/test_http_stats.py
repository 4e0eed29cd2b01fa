"""GET /v1/credits/stats: usage from the daily aggregates, by day, month or year."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from devtools.api_events import ApiAccount, ApiResponse, api_event, invoke, open_account
from functions.stats.app import lambda_handler
from serverless_credits import wiring
from serverless_credits.config import get_settings
from serverless_credits.domain.commands import (
    CreateAccountCommand,
    CreditCommand,
    DebitCommand,
    RefundCommand,
)
from serverless_credits.domain.errors import InsufficientCredits
from serverless_credits.domain.models import ApiKeyMapping
from serverless_credits.ledger.operations import Ledger
from serverless_credits.storage.ledger_entries import LedgerEntryStore
from serverless_credits.storage.store import CreditsStore
from tests.support import Clock, assert_invalid

PATH = "/v1/credits/stats"


def get(account: ApiAccount, **query: str) -> ApiResponse:
    return invoke(lambda_handler, api_event(PATH, query, api_key_id=account.api_key_id))


def seed(
    store: CreditsStore,
    account_id: str,
    activity: list[tuple[datetime, Any]],
    materialize: Callable[[], int],
) -> ApiAccount:
    """An account at $0.10 a credit, with `activity` (moment, operation) applied in order,
    each change materialized before the next (the Materializer function follows each)."""
    clock = Clock(activity[0][0] - timedelta(hours=1))
    ledger = wiring.build_ledger(store, wiring.prices(), get_settings(), clock=clock)
    ledger.create_account(
        CreateAccountCommand(
            account_id=account_id, credit_price=Decimal("0.1"), opening_balance=Decimal(100)
        )
    )
    store.catalog.put_api_key_mapping(
        ApiKeyMapping(
            api_key_id=f"key-{account_id}", account_id=account_id, plan="pro", created_at=clock.now
        )
    )
    for moment, operation in activity:
        clock.now = moment
        with contextlib.suppress(InsufficientCredits):
            operation(ledger)
        materialize()
    return ApiAccount(account_id, f"key-{account_id}")


def op_debit(key: str, account_id: str = "acct_stats", **fields: Any) -> Any:
    def run(ledger: Ledger) -> Any:
        return ledger.debit(DebitCommand(account_id=account_id, idempotency_key=key, **fields))

    return run


def at(day: str, hour: int = 12) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


@pytest.fixture
def history(moto_store: CreditsStore, materialize: Callable[[], int]) -> ApiAccount:
    """Activity on 2025-01-31, 2025-02-01 and 2025-02-03 (none on 02-02)."""
    refund_target: list[str] = []

    def first_call(ledger: Ledger) -> None:
        result = ledger.debit(
            DebitCommand(
                account_id="acct_stats",
                idempotency_key="c1",
                action="voice_call_minute",
                quantity=Decimal(3),
                endpoint="/v1/calls",
            )
        )
        refund_target.append(result.transaction_id)

    def refund_first(ledger: Ledger) -> None:
        ledger.refund(
            RefundCommand(
                account_id="acct_stats",
                idempotency_key="r1",
                transaction_id=refund_target[0],
                amount=Decimal(3),
                failed_call=True,
            )
        )

    return seed(
        moto_store,
        "acct_stats",
        [
            (at("2025-01-31", 10), first_call),  # 9 credits on /v1/calls
            (at("2025-01-31", 11), op_debit("s1", action="sms", endpoint="/v1/sms")),
            (at("2025-02-01", 9), op_debit("a1", amount=Decimal("2.5"))),  # no action, no endpoint
            (
                at("2025-02-01", 10),
                op_debit("big", amount=Decimal(1000), endpoint="/v1/sms"),
            ),  # declined
            (at("2025-02-03", 8), op_debit("s2", action="sms", endpoint="/v1/sms")),
            (at("2025-02-03", 9), refund_first),  # credited back to 01-31, counted as failed
            (
                at("2025-02-03", 10),
                lambda ledger: ledger.top_up(
                    CreditCommand(account_id="acct_stats", idempotency_key="t1", amount=Decimal(10))
                ),
            ),
        ],
        materialize,
    )


def test_daily_stats_over_a_range(moto_store: CreditsStore, history: ApiAccount) -> None:
    response = get(history, **{"from": "2025-01-30", "to": "2025-02-03"})

    assert response.status == 200
    body = response.body
    assert body["period"] == "daily"
    assert (body["periodStart"], body["periodEnd"]) == ("2025-01-30", "2025-02-03")
    assert body["totalUsed"] == 10.5  # 9 + 1 + 2.5 + 1 - 3
    assert body["totalCalls"] == 5  # four charged calls and the declined one
    assert body["failedRequests"] == 2  # the declined call and the refunded-as-failed one
    assert body["successfulRequests"] == 3
    assert body["totalCost"] == "$1.05"
    assert body["total"] == {"calls": 5, "creditsUsed": 10.5, "cost": "$1.05"}
    assert (body["currency"], body["creditPrice"]) == ("USD", 0.1)
    assert body["usage"] == [
        {
            "date": "2025-02-03",
            "calls": 1,
            "successfulRequests": 1,
            "failedRequests": 0,
            "creditsUsed": 1,
            "cost": "$0.10",
        },
        {
            "date": "2025-02-02",
            "calls": 0,
            "successfulRequests": 0,
            "failedRequests": 0,
            "creditsUsed": 0,
            "cost": "$0.00",
        },
        {
            "date": "2025-02-01",
            "calls": 2,
            "successfulRequests": 1,
            "failedRequests": 1,
            "creditsUsed": 2.5,
            "cost": "$0.25",
        },
        {
            "date": "2025-01-31",
            "calls": 2,
            "successfulRequests": 1,
            "failedRequests": 1,
            "creditsUsed": 7,
            "cost": "$0.70",
        },
        {
            "date": "2025-01-30",
            "calls": 0,
            "successfulRequests": 0,
            "failedRequests": 0,
            "creditsUsed": 0,
            "cost": "$0.00",
        },
    ]
    assert body["byType"] == {"debit": 2.5, "sms": 2, "voice_call_minute": 6}
    assert body["byEndpoint"] == {"/v1/calls": 1, "/v1/sms": 3}
    assert body["byEndpointCredits"] == {"/v1/calls": 6, "/v1/sms": 2}


def test_monthly_and_yearly_roll_ups(moto_store: CreditsStore, history: ApiAccount) -> None:
    monthly = get(history, **{"from": "2025-01-01", "to": "2025-02-28", "period": "monthly"}).body
    assert [(row["date"], row["calls"], row["creditsUsed"]) for row in monthly["usage"]] == [
        ("2025-02", 3, 3.5),
        ("2025-01", 2, 7),
    ]
    assert monthly["totalUsed"] == 10.5

    yearly = get(history, **{"from": "2024-12-01", "to": "2025-02-03", "period": "yearly"}).body
    assert [(row["date"], row["creditsUsed"]) for row in yearly["usage"]] == [
        ("2025", 10.5),
        ("2024", 0),
    ]

    partial = get(history, **{"from": "2025-02-01", "to": "2025-02-03", "period": "monthly"}).body
    assert [(row["date"], row["creditsUsed"]) for row in partial["usage"]] == [("2025-02", 3.5)]


def test_start_date_and_end_date_are_aliases(moto_store: CreditsStore, history: ApiAccount) -> None:
    with_from = get(history, **{"from": "2025-01-31", "to": "2025-02-01"}).body
    with_aliases = get(history, startDate="2025-01-31", endDate="2025-02-01").body
    mixed = get(history, startDate="2025-01-31", to="2025-02-01").body
    assert with_from == with_aliases == mixed
    assert with_from["totalUsed"] == 9.5


def test_moments_count_by_their_utc_day(moto_store: CreditsStore, history: ApiAccount) -> None:
    body = get(history, **{"from": "2025-02-01T23:30:00-01:00", "to": "2025-02-03T00:00:00Z"}).body
    assert (body["periodStart"], body["periodEnd"]) == ("2025-02-02", "2025-02-03")


def test_days_counts_back_from_today(
    moto_store: CreditsStore, materialize: Callable[[], int]
) -> None:
    now = datetime.now(UTC)
    account = seed(
        moto_store,
        "acct_stats",
        [
            (now - timedelta(days=10), op_debit("old", amount=Decimal(4))),
            (now - timedelta(days=2), op_debit("recent", action="sms", endpoint="/v1/sms")),
            (now, op_debit("today", amount=Decimal("0.5"))),
        ],
        materialize,
    )
    today = now.date()

    week = get(account, days="7").body
    assert (week["periodStart"], week["periodEnd"]) == (
        (today - timedelta(days=6)).isoformat(),
        today.isoformat(),
    )
    assert len(week["usage"]) == 7
    assert week["usage"][0]["date"] == today.isoformat()
    assert week["totalUsed"] == 1.5
    assert week["totalCalls"] == 2

    assert get(account, days="1").body["totalUsed"] == 0.5
    assert get(account, days="90").body["totalUsed"] == 5.5
    default = get(account).body
    assert len(default["usage"]) == 30
    assert default["totalUsed"] == 5.5


def test_empty_account(moto_store: CreditsStore) -> None:
    empty = open_account("acct_empty")
    body = get(empty, days="3").body
    assert (
        body["totalUsed"],
        body["totalCalls"],
        body["successfulRequests"],
        body["failedRequests"],
    ) == (0, 0, 0, 0)
    assert [row["creditsUsed"] for row in body["usage"]] == [0, 0, 0]
    assert (body["byType"], body["byEndpoint"], body["byEndpointCredits"]) == ({}, {}, {})
    assert body["totalCost"] == "$0.00"


def test_stats_read_the_aggregates_never_the_ledger(
    moto_store: CreditsStore, history: ApiAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_ledger(*_: Any, **__: Any) -> Any:
        raise AssertionError("stats must not read the ledger")

    for read in ("page", "get", "head", "sequences"):
        monkeypatch.setattr(LedgerEntryStore, read, no_ledger)
    assert get(history, **{"from": "2025-01-01", "to": "2025-12-31"}).status == 200


def test_a_year_long_range_is_allowed(moto_store: CreditsStore, history: ApiAccount) -> None:
    body = get(history, **{"from": "2024-02-04", "to": "2025-02-03"}).body
    assert len(body["usage"]) == 366
    assert body["totalUsed"] == 10.5


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"days": "0"}, "days"),
        ({"days": "91"}, "days"),
        ({"days": "-3"}, "days"),
        ({"days": "seven"}, "days"),
        ({"from": "not-a-date"}, "from"),
        ({"from": "2025-02-29"}, "from"),
        ({"to": "2025/02/01"}, "to"),
        ({"startDate": "31-01-2025"}, "startDate"),
        ({"endDate": "2025-02-01T24:00:00Z"}, "endDate"),
        ({"period": "weekly"}, "period"),
        ({"period": "Daily"}, "period"),
    ],
)
def test_parameter_validation_names_the_field(
    moto_store: CreditsStore, history: ApiAccount, query: dict[str, str], field: str
) -> None:
    assert_invalid(get(history, **query), field, 422)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"from": "2025-02-03", "to": "2025-02-01"}, "from"),
        ({"startDate": "2025-02-03", "endDate": "2025-02-01"}, "from"),
        ({"from": "2099-01-01"}, "from"),  # after today, the default end
        ({"days": "7", "from": "2025-02-01"}, "days"),
        ({"days": "7", "endDate": "2025-02-01"}, "days"),
        ({"from": "2025-02-01", "startDate": "2025-02-01"}, "startDate"),
        ({"to": "2025-02-01", "endDate": "2025-02-02"}, "endDate"),
        ({"from": "2024-01-01", "to": "2025-02-01"}, "from"),  # more than 366 days
    ],
)
def test_rules_across_parameters_are_400s_naming_the_field(
    moto_store: CreditsStore, history: ApiAccount, query: dict[str, str], field: str
) -> None:
    assert_invalid(get(history, **query), field, 400)


# ---------------------------------------------------------------- tenants
def test_tenant_isolation(
    moto_store: CreditsStore, history: ApiAccount, materialize: Callable[[], int]
) -> None:
    other = open_account("acct_other", opening_balance=50)
    wiring.ledger().debit(
        DebitCommand(account_id="acct_other", idempotency_key="x", amount=Decimal(42))
    )
    materialize()
    mine = get(history, accountId="acct_other", **{"from": "2025-01-01", "to": "2025-02-28"}).body
    theirs = get(other, days="1", accountId="acct_stats", account_id="acct_stats").body
    assert mine["totalUsed"] == 10.5
    assert theirs["totalUsed"] == 42
    assert theirs["byEndpoint"] == {}
