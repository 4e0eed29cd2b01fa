"""GET /v1/account/summary."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from devtools import local_seed
from devtools.api_events import ApiAccount, api_event, invoke, open_account
from devtools.memory_api_keys import InMemoryKeyIssuer
from functions.account_summary.app import lambda_handler
from functions.balance.app import lambda_handler as balance_handler
from functions.stats.app import lambda_handler as stats_handler
from serverless_credits import wiring
from serverless_credits.config import get_settings
from serverless_credits.domain.commands import (
    AdjustmentCommand,
    CaptureCommand,
    CreateAccountCommand,
    DebitCommand,
    RefundCommand,
    ReserveCommand,
    VoidCommand,
)
from serverless_credits.domain.errors import InsufficientCredits
from serverless_credits.domain.models import ApiKeyMapping, SubscriptionStatus
from serverless_credits.storage.store import CreditsStore
from tests.support import Clock

PATH = "/v1/account/summary"


def test_summary_has_balance_subscription_month_usage_and_lifetime(
    moto_store: CreditsStore, materialize: Callable[[], int]
) -> None:
    now = datetime.now(UTC)
    start_of_month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    clock = Clock(start_of_month - timedelta(days=3))  # last month: lifetime, not this month
    ledger = wiring.build_ledger(moto_store, wiring.prices(), get_settings(), clock=clock)
    ledger.create_account(
        CreateAccountCommand(
            account_id="acct_sum",
            opening_balance=Decimal(100),
            credit_price=Decimal("0.5"),
            currency="GBP",
            plan="pro",
            email="ops@example.com",
            subscription_status=SubscriptionStatus.ACTIVE,
            subscription_id="sub_42",
        )
    )
    moto_store.catalog.put_api_key_mapping(
        ApiKeyMapping(api_key_id="k-sum", account_id="acct_sum", plan="pro", created_at=clock.now)
    )
    created_at = clock.now
    ledger.debit(DebitCommand(account_id="acct_sum", idempotency_key="old", amount=Decimal(10)))
    materialize()
    clock.now = now
    ledger.debit(
        DebitCommand(
            account_id="acct_sum", idempotency_key="new1", action="sms", endpoint="/v1/sms"
        )
    )
    ledger.debit(DebitCommand(account_id="acct_sum", idempotency_key="new2", amount=Decimal("1.5")))
    materialize()  # usage is counted from the stream

    response = invoke(lambda_handler, api_event(PATH, api_key_id="k-sum"))

    assert response.status == 200
    body = response.body
    assert set(body) == {
        "accountId",
        "email",
        "plan",
        "status",
        "balance",
        "subscription",
        "usageThisMonth",
        "totalRequestsAllTime",
        "accountCreatedAt",
    }
    assert (body["accountId"], body["email"], body["plan"], body["status"]) == (
        "acct_sum",
        "ops@example.com",
        "pro",
        "active",
    )
    assert body["balance"]["balance"] == 87.5
    assert body["balance"]["used"] == 12.5
    assert body["balance"]["currency"] == "GBP"
    assert body["subscription"] == {"status": "active", "id": "sub_42", "plan": "pro"}
    month = body["usageThisMonth"]
    assert month["period"] == "monthly"
    assert month["periodStart"] == start_of_month.date().isoformat()
    assert month["periodEnd"] == now.date().isoformat()
    assert month["totalUsed"] == 2.5
    assert month["totalCalls"] == 2
    assert month["totalCost"] == "£1.25"
    assert month["byEndpoint"] == {"/v1/sms": 1}
    assert [row["date"] for row in month["usage"]] == [now.strftime("%Y-%m")]
    assert body["totalRequestsAllTime"] == 3
    assert datetime.fromisoformat(body["accountCreatedAt"]) == created_at


def test_summary_of_an_empty_account(moto_store: CreditsStore) -> None:
    empty = open_account("acct_empty")
    body = invoke(lambda_handler, api_event(PATH, api_key_id=empty.api_key_id)).body
    assert body["totalRequestsAllTime"] == 0
    assert body["usageThisMonth"]["totalUsed"] == 0
    assert body["balance"]["balance"] == 0
    assert body["subscription"] == {"status": "inactive", "id": None, "plan": "free"}


def test_tenant_isolation(moto_store: CreditsStore) -> None:
    first = open_account("acct_one", opening_balance=1)
    second = open_account("acct_two", opening_balance=2, tier="pro")
    wiring.ledger().debit(
        DebitCommand(account_id="acct_two", idempotency_key="d", amount=Decimal(1))
    )
    for account, expected in ((first, ("acct_one", 1, 0)), (second, ("acct_two", 1, 1))):
        body = invoke(
            lambda_handler,
            api_event(
                PATH,
                {"accountId": "acct_one" if account is second else "acct_two"},
                api_key_id=account.api_key_id,
            ),
        ).body
        assert (
            body["accountId"],
            body["balance"]["balance"],
            body["totalRequestsAllTime"],
        ) == expected


def test_summary_costs_two_reads(moto_store: CreditsStore) -> None:
    owner: ApiAccount = open_account("acct_reads", opening_balance=5)
    calls: list[str] = []
    moto_store.client.meta.events.register(
        "after-call.dynamodb.*", lambda model, **_: calls.append(model.name)
    )
    invoke(lambda_handler, api_event(PATH, api_key_id=owner.api_key_id))  # warms the key cache
    calls.clear()
    invoke(lambda_handler, api_event(PATH, api_key_id=owner.api_key_id))
    assert sorted(calls) == ["GetItem", "Query"]


def test_balance_stats_and_summary_agree_on_used_and_on_requests(
    moto_store: CreditsStore, materialize: Callable[[], int]
) -> None:
    """One definition of `used` (debits and captures, net of refunds and voids; adjustments
    are not use) and of successful requests (charged, less those refunded as failed),
    whichever route serves it: an account with every kind of change, all this month."""
    opened = open_account("acct_agree", opening_balance=100)
    ledger = wiring.ledger()
    acct = opened.account_id
    first = ledger.debit(DebitCommand(account_id=acct, idempotency_key="d1", amount=Decimal(5)))
    ledger.debit(
        DebitCommand(account_id=acct, idempotency_key="d2", action="sms", quantity=Decimal(2))
    )
    hold = ledger.holds.reserve(
        ReserveCommand(account_id=acct, idempotency_key="h1", amount=Decimal(10))
    )
    assert hold.hold_id is not None
    ledger.holds.capture(
        CaptureCommand(
            account_id=acct, idempotency_key="c1", hold_id=hold.hold_id, amount=Decimal(4)
        )
    )
    materialize()  # the refund reads the debit's ledger entry
    ledger.refund(
        RefundCommand(
            account_id=acct,
            idempotency_key="r1",
            transaction_id=first.transaction_id,
            amount=Decimal(2),
        )
    )
    ledger.void(VoidCommand(account_id=acct, idempotency_key="d2"))  # a failed call
    ledger.adjust(
        AdjustmentCommand(
            account_id=acct, idempotency_key="a1", amount=Decimal(3), reason="Goodwill"
        )
    )
    ledger.adjust(
        AdjustmentCommand(
            account_id=acct, idempotency_key="a2", amount=Decimal("-1.5"), reason="Correction"
        )
    )
    with pytest.raises(InsufficientCredits):  # declined: a call, failed, no credits
        ledger.debit(DebitCommand(account_id=acct, idempotency_key="d3", amount=Decimal(500)))
    materialize()  # usage is counted from the stream

    key = opened.api_key_id
    balance = invoke(balance_handler, api_event("/v1/credits/balance", api_key_id=key)).body
    stats = invoke(
        stats_handler, api_event("/v1/credits/stats", {"days": "1"}, api_key_id=key)
    ).body
    summary = invoke(lambda_handler, api_event(PATH, api_key_id=key)).body

    # used = 5 + 2 + 4 (capture) - 2 (refund) - 2 (void) = 7; the adjustments are not use.
    assert balance["used"] == stats["totalUsed"] == 7
    assert summary["balance"]["used"] == summary["usageThisMonth"]["totalUsed"] == 7
    # total: the opening grant; adjusted: +3 - 1.5; balance = total - used + adjusted.
    assert (balance["total"], balance["adjusted"], balance["balance"]) == (100, 1.5, 94.5)
    # Calls: d1, d2, the capture and the declined d3; failed: d3 and the voided d2.
    assert (stats["totalCalls"], stats["failedRequests"], stats["successfulRequests"]) == (
        4,
        2,
        2,
    )
    assert summary["totalRequestsAllTime"] == summary["usageThisMonth"]["successfulRequests"]
    assert summary["totalRequestsAllTime"] == 2


def test_the_demo_accounts_figures_agree_across_routes(
    moto_store: CreditsStore, materialize: Callable[[], int]
) -> None:
    """The account `make run` seeds, where the disagreement was seen (`used` 42 against
    `totalUsed` 37: its -5 adjustment counted as use; lifetime requests 9 against 8
    successful: its refunded failed call). Its six days of history fit in `days=7`."""
    demo = local_seed.provision(
        "acct_demo_agree",
        plan="pro",
        issuer=InMemoryKeyIssuer(),
        history=True,
        materialize=materialize,
    )
    key = demo.api_key_id

    balance = invoke(balance_handler, api_event("/v1/credits/balance", api_key_id=key)).body
    lifetime = invoke(
        stats_handler, api_event("/v1/credits/stats", {"days": "7"}, api_key_id=key)
    ).body
    summary = invoke(lambda_handler, api_event(PATH, api_key_id=key)).body

    assert balance["used"] == lifetime["totalUsed"] == 37
    assert balance["adjusted"] == -5
    assert summary["totalRequestsAllTime"] == lifetime["successfulRequests"] == 8
