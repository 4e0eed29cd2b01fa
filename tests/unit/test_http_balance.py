"""GET /v1/credits/balance and GET /v1/credits/balances."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal

import pytest

from devtools.api_events import ApiAccount, LambdaContextStub, api_event, invoke, open_account
from functions.balance.app import lambda_handler
from serverless_credits import wiring
from serverless_credits.domain.commands import CreditCommand, DebitCommand, RefundCommand
from serverless_credits.storage import keys
from serverless_credits.storage.items import key as item_key
from serverless_credits.storage.store import CreditsStore

BALANCE_FIELDS = {
    "balance",
    "reserved",
    "available",
    "used",
    "total",
    "adjusted",
    "currency",
    "creditPrice",
    "lowBalance",
    "lowBalanceThreshold",
    "autoReload",
    "status",
    "subscriptionStatus",
    "subscriptionId",
    "flagged",
    "fraudWarning",
    "lastUpdated",
}


@pytest.fixture
def account(moto_store: CreditsStore, materialize: Callable[[], int]) -> ApiAccount:
    opened = open_account(
        "acct_bal",
        opening_balance=100,
        currency="EUR",
        credit_price=Decimal("0.05"),
        low_balance_threshold=Decimal(90),
    )
    ledger = wiring.ledger()
    ledger.top_up(
        CreditCommand(account_id="acct_bal", idempotency_key="t1", amount=Decimal("20.5"))
    )
    first = ledger.debit(
        DebitCommand(account_id="acct_bal", idempotency_key="d1", amount=Decimal("7.25"))
    )
    ledger.debit(
        DebitCommand(
            account_id="acct_bal",
            idempotency_key="d2",
            action="voice_call_minute",
            quantity=Decimal(2),
        )
    )
    materialize()  # the refund reads the debit's ledger entry
    ledger.refund(
        RefundCommand(
            account_id="acct_bal",
            idempotency_key="r1",
            transaction_id=first.transaction_id,
            amount=Decimal("1.25"),
        )
    )
    return opened


def test_balance_returns_every_field_of_the_spec(
    moto_store: CreditsStore, account: ApiAccount
) -> None:
    response = invoke(
        lambda_handler, api_event("/v1/credits/balance", api_key_id=account.api_key_id)
    )

    assert response.status == 200
    body = response.body
    assert set(body) == BALANCE_FIELDS
    # 100 + 20.5 - 7.25 - 6 + 1.25
    assert body["balance"] == 108.5
    assert body["reserved"] == 0
    assert body["available"] == 108.5
    assert body["used"] == 12  # 7.25 + 6 - 1.25 refunded
    assert body["total"] == 120.5
    assert body["adjusted"] == 0
    assert body["currency"] == "EUR"
    assert body["creditPrice"] == 0.05
    assert body["lowBalance"] is False
    assert body["lowBalanceThreshold"] == 90
    assert body["autoReload"] == {"enabled": False, "threshold": None, "amount": None}
    assert body["status"] == "active"
    assert body["subscriptionStatus"] == "inactive"
    assert body["flagged"] is False
    assert body["fraudWarning"] is None
    assert body["lastUpdated"].endswith("Z")


def test_balance_reflects_flags_auto_reload_and_low_balance(
    moto_store: CreditsStore, account: ApiAccount
) -> None:
    moto_store.accounts.update_settings(
        "acct_bal",
        {
            "flagged": True,
            "fraudWarning": "Unusual activity",
            "autoReloadEnabled": True,
            "autoReloadThreshold": Decimal(50),
            "autoReloadAmount": Decimal("250.5"),
            "lowBalanceThreshold": Decimal(200),
            "subscriptionStatus": "active",
            "subscriptionId": "sub_123",
        },
    )

    body = invoke(
        lambda_handler, api_event("/v1/credits/balance", api_key_id=account.api_key_id)
    ).body

    assert body["flagged"] is True
    assert body["fraudWarning"] == "Unusual activity"
    assert body["autoReload"] == {"enabled": True, "threshold": 50, "amount": 250.5}
    assert body["lowBalance"] is True
    assert body["subscriptionStatus"] == "active"
    assert body["subscriptionId"] == "sub_123"


def test_balance_of_an_empty_account(moto_store: CreditsStore) -> None:
    empty = open_account("acct_empty")
    body = invoke(
        lambda_handler, api_event("/v1/credits/balance", api_key_id=empty.api_key_id)
    ).body
    assert (body["balance"], body["available"], body["used"], body["total"]) == (0, 0, 0, 0)
    assert body["lowBalance"] is False


def test_balance_amounts_are_exact_json_numbers(moto_store: CreditsStore) -> None:
    exact = open_account("acct_exact", opening_balance=0)
    wiring.ledger().top_up(
        CreditCommand(account_id="acct_exact", idempotency_key="t", amount=Decimal("0.000001"))
    )
    response = invoke(lambda_handler, api_event("/v1/credits/balance", api_key_id=exact.api_key_id))
    assert response.body["balance"] == 0.000001
    assert Decimal(str(response.body["balance"])) == Decimal("0.000001")


def test_balance_beyond_a_double_is_written_as_the_exact_number(moto_store: CreditsStore) -> None:
    """A balance of 18 significant digits (more than a binary double keeps) leaves the API
    as the exact JSON number, not a float rounded to 15-17 digits nor a string: the raw body
    carries its literal, and a parser reading numbers as Decimal gets the ledger's figure."""
    account = open_account("acct_big", opening_balance=0)
    big = "123456789012.345678"
    moto_store.client.update_item(
        TableName=moto_store.table_name,
        Key=item_key(keys.account_pk("acct_big"), keys.ACCOUNT_SK),
        UpdateExpression="SET balance = :big, available = :big, #total = :big",
        ExpressionAttributeNames={"#total": "total"},
        ExpressionAttributeValues={":big": {"N": big}},
    )

    raw = lambda_handler(
        api_event("/v1/credits/balance", api_key_id=account.api_key_id), LambdaContextStub()
    )

    assert raw["statusCode"] == 200
    body = json.loads(raw["body"], parse_float=Decimal)
    assert (body["balance"], body["available"], body["total"]) == (Decimal(big),) * 3
    assert f'"balance":{big},' in raw["body"]
    assert float(big) != Decimal(big)  # the figure a float would have sent instead


def test_balances_lists_the_lots_the_credits_opened_summing_to_the_balance(
    moto_store: CreditsStore, account: ApiAccount
) -> None:
    """The opening grant (priority 60) is spent before the top-up (50); the refund went
    back to it. The lots' own route tests: tests/unit/test_http_balances.py."""
    response = invoke(
        lambda_handler, api_event("/v1/credits/balances", api_key_id=account.api_key_id)
    )

    assert response.status == 200
    body = response.body
    assert set(body) == {"balances", "total", "hasMore", "nextCursor"}
    # 100 - 7.25 - 6 + 1.25 on the opening grant; the top-up untouched.
    assert [(lot["source"], lot["amount"], lot["initialAmount"]) for lot in body["balances"]] == [
        ("grant", 88, 100),
        ("topup", 20.5, 20.5),
    ]
    assert all(lot["units"] == "credits" for lot in body["balances"])
    assert all(lot["status"] == "active" for lot in body["balances"])
    assert body["total"] == 108.5


def test_balances_of_an_empty_account(moto_store: CreditsStore) -> None:
    empty = open_account("acct_empty")
    body = invoke(
        lambda_handler, api_event("/v1/credits/balances", api_key_id=empty.api_key_id)
    ).body
    assert (body["balances"], body["total"]) == ([], 0)


def test_balance_ignores_query_parameters(moto_store: CreditsStore, account: ApiAccount) -> None:
    response = invoke(
        lambda_handler,
        api_event(
            "/v1/credits/balance", {"limit": "0", "accountId": "x"}, api_key_id=account.api_key_id
        ),
    )
    assert response.status == 200


def test_tenant_isolation(moto_store: CreditsStore, account: ApiAccount) -> None:
    other = open_account("acct_other", opening_balance=5)
    for key, expected in ((account.api_key_id, 108.5), (other.api_key_id, 5)):
        for path in ("/v1/credits/balance", "/v1/credits/balances"):
            body = invoke(
                lambda_handler,
                api_event(
                    path,
                    {"accountId": "acct_other" if expected != 5 else "acct_bal"},
                    api_key_id=key,
                ),
            ).body
            amount = body["available"] if "available" in body else body["total"]
            assert amount == expected
