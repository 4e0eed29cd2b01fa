"""GET /v1/account/summary."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from devtools.api_events import ApiAccount, api_event, invoke, open_account
from functions.account_summary.app import lambda_handler
from serverless_credits import wiring
from serverless_credits.config import get_settings
from serverless_credits.domain.commands import CreateAccountCommand, DebitCommand
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
