"""The AdminFunction's operations on moto (DynamoDB and API Gateway): each operation's
validation and effect, through `transport.admin_api` and the Lambda handler."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from unittest.mock import ANY

import boto3
import pytest
from botocore.exceptions import ClientError

from functions.admin import app
from serverless_credits import wiring
from serverless_credits.domain.commands import DebitCommand, ReserveCommand
from serverless_credits.domain.errors import AccountSuspended
from serverless_credits.domain.lots import LotRank, rank_of
from serverless_credits.domain.models import AccountStatus, EntryType
from serverless_credits.storage.store import CreditsStore
from serverless_credits.transport import admin_api

ACTOR = "ops@example"


@dataclass(frozen=True)
class Gateway:
    client: Any
    plans: dict[str, str]

    def keys_on(self, plan: str) -> set[str]:
        items = self.client.get_usage_plan_keys(usagePlanId=self.plans[plan])["items"]
        return {item["id"] for item in items}

    def exists(self, key_id: str) -> bool:
        try:
            self.client.get_api_key(apiKey=key_id)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "NotFoundException":
                raise
            return False
        return True


@pytest.fixture
def gateway(moto_store: CreditsStore, monkeypatch: pytest.MonkeyPatch) -> Gateway:
    """The stack's two usage plans in moto's API Gateway, their ids in the environment."""
    client = boto3.client("apigateway", region_name="us-east-1")
    plans = {
        name: client.create_usage_plan(name=f"credits-{name}")["id"] for name in ("free", "pro")
    }
    monkeypatch.setenv("FREE_USAGE_PLAN_ID", plans["free"])
    monkeypatch.setenv("PRO_USAGE_PLAN_ID", plans["pro"])
    monkeypatch.delenv("AWS_ENDPOINT_URL_API_GATEWAY", raising=False)
    wiring.reset()
    return Gateway(client, plans)


Call = Callable[..., dict[str, Any]]


@pytest.fixture
def call(gateway: Gateway) -> Call:
    def run(operation: str, **fields: Any) -> dict[str, Any]:
        return admin_api.handle({"operation": operation, "actor": ACTOR, **fields}, wiring.admin())

    return run


@pytest.fixture
def account(call: Call) -> str:
    created = call("accounts.create", name="Acme", credits=100)
    return str(created["accountId"])


def error_of(response: dict[str, Any]) -> str:
    assert "error" in response, response
    return str(response["error"]["code"])


def fields_named(response: dict[str, Any]) -> set[str]:
    assert error_of(response) == "VALIDATION_ERROR"
    return {detail["field"] for detail in response["error"]["details"]["fields"]}


def debit(account_id: str, amount: int, key: str) -> str:
    result = wiring.ledger().debit(
        DebitCommand(account_id=account_id, idempotency_key=key, amount=Decimal(amount))
    )
    return result.transaction_id


# ---------------------------------------------------------------- the envelope
def test_unknown_operations_and_non_objects_are_validation_errors(call: Call) -> None:
    assert fields_named_op(call("accounts.delete", accountId="acct_1")) == "operation"
    refused = admin_api.handle(["not", "an", "object"], wiring.admin())
    assert error_of(refused) == "VALIDATION_ERROR"
    no_actor = admin_api.handle({"operation": "accounts.list"}, wiring.admin())
    assert fields_named(no_actor) == {"actor"}


def fields_named_op(response: dict[str, Any]) -> str:
    assert error_of(response) == "VALIDATION_ERROR"
    (named,) = response["error"]["details"]["fields"]
    return str(named["field"])


# ---------------------------------------------------------------- accounts
def test_create_an_account_with_a_key_on_its_plan_and_opening_credits(
    call: Call, gateway: Gateway, moto_store: CreditsStore, materialize: Callable[[], int]
) -> None:
    created = call("accounts.create", name="Acme Voice", plan="pro", credits=250)

    account_id = created["accountId"]
    assert account_id.startswith("acct_")
    assert created["name"] == "Acme Voice"
    assert created["plan"] == "pro"
    assert created["balance"] == 250
    assert created["apiKey"]
    assert gateway.keys_on("pro") == {created["apiKeyId"]}
    assert gateway.keys_on("free") == set()
    mapping = moto_store.catalog.get_api_key_mapping(created["apiKeyId"])
    assert mapping is not None
    assert (mapping.account_id, mapping.plan, mapping.created_by) == (account_id, "pro", ACTOR)
    stored = moto_store.accounts.get(account_id, consistent=True)
    assert stored is not None
    assert (stored.name, stored.plan, stored.updated_by) == ("Acme Voice", "pro", ACTOR)
    materialize()
    [entry] = call("ledger.list", accountId=account_id)["entries"]
    assert (entry["type"], entry["amount"], entry["actor"]) == ("grant", 250, ACTOR)


def test_a_misspelt_field_creates_nothing(call: Call, gateway: Gateway) -> None:
    refused = call("accounts.create", nmae="Acme")

    assert fields_named(refused) == {"nmae", "name"}
    assert "nmae" in refused["error"]["message"]
    assert call("accounts.list")["accounts"] == []
    assert gateway.client.get_api_keys()["items"] == []


def test_show_and_list(call: Call, account: str) -> None:
    other = call("accounts.create", name="Beta", plan="pro")["accountId"]

    shown = call("accounts.show", accountId=account)["account"]
    listed = call("accounts.list")["accounts"]

    assert shown["accountId"] == account
    assert (shown["name"], shown["plan"], shown["status"]) == ("Acme", "free", "active")
    assert (shown["balance"], shown["available"], shown["overdraftLimit"]) == (100, 100, 0)
    assert shown["autoReload"] == {"enabled": False, "threshold": None, "amount": None}
    assert shown["updatedBy"] == ACTOR
    assert {a["accountId"] for a in listed} == {account, other}
    assert {a["name"] for a in listed} == {"Acme", "Beta"}
    assert len(call("accounts.list", limit=1)["accounts"]) == 1
    assert error_of(call("accounts.show", accountId="acct_missing")) == "ACCOUNT_NOT_FOUND"


def test_suspend_refuses_debits_until_reactivated(call: Call, account: str) -> None:
    assert fields_named(call("accounts.suspend", accountId=account)) == {"reason"}

    suspended = call("accounts.suspend", accountId=account, reason="chargeback")["account"]

    assert (suspended["status"], suspended["statusReason"]) == ("suspended", "chargeback")
    assert suspended["updatedBy"] == ACTOR
    with pytest.raises(AccountSuspended):
        debit(account, 1, "while-suspended")
    assert call("accounts.show", accountId=account)["account"]["balance"] == 100

    active = call("accounts.reactivate", accountId=account, reason="resolved")["account"]

    assert (active["status"], active["statusReason"]) == ("active", "resolved")
    debit(account, 1, "after")
    assert error_of(call("accounts.suspend", accountId="acct_nope", reason="x")) == (
        "ACCOUNT_NOT_FOUND"
    )


def test_flag_and_unflag(call: Call, account: str) -> None:
    flagged = call("accounts.flag", accountId=account, warning="Card testing pattern")["account"]
    assert (flagged["flagged"], flagged["fraudWarning"]) == (True, "Card testing pattern")

    cleared = call("accounts.unflag", accountId=account)["account"]
    assert (cleared["flagged"], cleared["fraudWarning"]) == (False, None)


def test_settings(call: Call, account: str, moto_store: CreditsStore) -> None:
    changed = call(
        "accounts.set",
        accountId=account,
        lowBalanceThreshold=20,
        overdraftLimit="5.5",
        autoReloadThreshold=10,
        autoReloadAmount=200,
        autoReload=True,
    )["account"]

    assert changed["lowBalanceThreshold"] == 20
    assert changed["overdraftLimit"] == 5.5
    assert changed["autoReload"] == {"enabled": True, "threshold": 10, "amount": 200}
    stored = moto_store.accounts.get(account, consistent=True)
    assert stored is not None
    assert stored.overdraft_limit == Decimal("5.5")
    assert stored.auto_reload_enabled


def test_a_misspelt_or_invalid_setting_changes_nothing(
    call: Call, account: str, moto_store: CreditsStore
) -> None:
    before = moto_store.accounts.get(account, consistent=True)

    misspelt = call("accounts.set", accountId=account, lowBalanceTreshold=5)
    negative = call("accounts.set", accountId=account, lowBalanceThreshold=-5)
    nothing = call("accounts.set", accountId=account)
    incomplete = call("accounts.set", accountId=account, autoReload=True, autoReloadAmount=50)

    assert fields_named(misspelt) == {"lowBalanceTreshold"}
    assert fields_named(negative) == {"lowBalanceThreshold"}
    assert error_of(nothing) == "VALIDATION_ERROR"
    assert error_of(incomplete) == "VALIDATION_ERROR"
    assert fields_named(incomplete) == {"autoReloadThreshold"}
    assert moto_store.accounts.get(account, consistent=True) == before
    assert error_of(call("accounts.set", accountId="acct_nope", lowBalanceThreshold=1)) == (
        "ACCOUNT_NOT_FOUND"
    )


def test_a_plan_change_moves_the_keys_to_the_new_usage_plan(
    call: Call, gateway: Gateway, account: str, moto_store: CreditsStore
) -> None:
    [key] = call("keys.list", accountId=account)["keys"]
    assert gateway.keys_on("free") == {key["apiKeyId"]}

    changed = call("accounts.set", accountId=account, plan="pro")["account"]

    assert changed["plan"] == "pro"
    assert gateway.keys_on("pro") == {key["apiKeyId"]}
    assert gateway.keys_on("free") == set()
    assert [k["plan"] for k in call("keys.list", accountId=account)["keys"]] == ["pro"]
    mapping = moto_store.catalog.get_api_key_mapping(key["apiKeyId"])
    assert mapping is not None
    assert mapping.plan == "pro"
    assert call("keys.create", accountId=account)["plan"] == "pro"


# ---------------------------------------------------------------- keys
def test_keys_create_list_rotate_revoke(
    call: Call, gateway: Gateway, account: str, moto_store: CreditsStore
) -> None:
    [first] = call("keys.list", accountId=account)["keys"]
    second = call("keys.create", accountId=account)
    assert second["accountId"] == account
    assert second["apiKey"]

    listed = call("keys.list", accountId=account)["keys"]
    assert {k["apiKeyId"] for k in listed} == {first["apiKeyId"], second["apiKeyId"]}
    assert all("apiKey" not in k and "value" not in k for k in listed)
    assert all(k["createdBy"] == ACTOR for k in listed)

    rotated = call("keys.rotate", accountId=account)

    assert set(rotated["revoked"]) == {first["apiKeyId"], second["apiKeyId"]}
    assert rotated["apiKey"]
    assert [k["apiKeyId"] for k in call("keys.list", accountId=account)["keys"]] == [
        rotated["apiKeyId"]
    ]
    assert not gateway.exists(first["apiKeyId"])
    assert not gateway.exists(second["apiKeyId"])
    assert rotated["apiKeyId"] in gateway.keys_on("free")  # (moto keeps deleted keys' plan keys)
    assert moto_store.catalog.get_api_key_mapping(first["apiKeyId"]) is None

    revoked = call("keys.revoke", accountId=account, apiKeyId=rotated["apiKeyId"])

    assert revoked == {"accountId": account, "apiKeyId": rotated["apiKeyId"], "revoked": True}
    assert call("keys.list", accountId=account)["keys"] == []
    assert not gateway.exists(rotated["apiKeyId"])
    again = call("keys.revoke", accountId=account, apiKeyId=rotated["apiKeyId"])
    assert error_of(again) == "API_KEY_NOT_FOUND"


def test_keys_of_an_unknown_account(call: Call, gateway: Gateway) -> None:
    for operation in ("keys.create", "keys.list", "keys.rotate"):
        assert error_of(call(operation, accountId="acct_nope")) == "ACCOUNT_NOT_FOUND"
    assert error_of(call("keys.revoke", accountId="acct_nope", apiKeyId="abc")) == (
        "ACCOUNT_NOT_FOUND"
    )
    assert gateway.client.get_api_keys()["items"] == []


def test_another_accounts_key_cannot_be_revoked(call: Call, account: str) -> None:
    other = call("accounts.create", name="Other")
    refused = call("keys.revoke", accountId=account, apiKeyId=other["apiKeyId"])
    assert error_of(refused) == "API_KEY_NOT_FOUND"
    assert len(call("keys.list", accountId=other["accountId"])["keys"]) == 1


# ---------------------------------------------------------------- credits
def test_top_up_is_idempotent_by_key(
    call: Call, account: str, materialize: Callable[[], int]
) -> None:
    first = call(
        "credits.topup",
        accountId=account,
        amount=50,
        idempotencyKey="po-1",
        reference="po_1",
        description="Pack",
    )
    again = call(
        "credits.topup",
        accountId=account,
        amount=50,
        idempotencyKey="po-1",
        reference="po_1",
        description="Pack",
    )
    by_another_operator = admin_api.handle(
        {
            "operation": "credits.topup",
            "actor": "someone-else",
            "accountId": account,
            "amount": 50,
            "idempotencyKey": "po-1",
            "reference": "po_1",
            "description": "Pack",
        },
        wiring.admin(),
    )
    conflict = call("credits.topup", accountId=account, amount=60, idempotencyKey="po-1")

    assert (first["amount"], first["balanceAfter"], first["replayed"]) == (50, 150, False)
    assert first["idempotencyKey"] == "po-1"
    assert again == {**first, "replayed": True}
    assert by_another_operator == {**first, "replayed": True}
    assert error_of(conflict) == "IDEMPOTENCY_CONFLICT"
    assert call("accounts.show", accountId=account)["account"]["balance"] == 150
    materialize()
    newest = call("ledger.list", accountId=account, limit=1)["entries"][0]
    assert (newest["type"], newest["reference"], newest["description"]) == ("topup", "po_1", "Pack")
    assert newest["actor"] == ACTOR


def test_money_refusals(call: Call, account: str) -> None:
    assert fields_named(
        call("credits.topup", accountId=account, amount=-5, idempotencyKey="k")
    ) == {"amount"}
    assert fields_named(call("credits.topup", accountId=account, amount=5)) == {"idempotencyKey"}
    assert error_of(call("credits.topup", accountId="acct_nope", amount=5, idempotencyKey="k")) == (
        "ACCOUNT_NOT_FOUND"
    )
    zero = call("credits.adjust", accountId=account, amount=0, reason="x", idempotencyKey="k")
    assert error_of(zero) == "VALIDATION_ERROR"
    assert "non-zero" in zero["error"]["details"]["fields"][0]["message"]
    assert call("accounts.show", accountId=account)["account"]["balance"] == 100


def test_grant_and_top_up_open_a_lot_with_their_priority_and_expiry(
    call: Call, account: str, materialize: Callable[[], int]
) -> None:
    expires = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    granted = call(
        "credits.grant",
        accountId=account,
        amount=20,
        idempotencyKey="promo-1",
        priority=10,
        expiresAt=expires.isoformat(),
        description="Promo",
    )
    bought = call(
        "credits.topup",
        accountId=account,
        amount=30,
        idempotencyKey="po-7",
        reference="po_7",
        priority=70,
        expiresAt=expires.isoformat(),
    )
    defaults = call("credits.topup", accountId=account, amount=5, idempotencyKey="po-8")
    replayed = call(
        "credits.grant",
        accountId=account,
        amount=20,
        idempotencyKey="promo-1",
        priority=10,
        expiresAt=expires.isoformat(),
        description="Promo",
    )

    assert granted["balanceAfter"] == 120
    assert granted["lots"] == {granted["lotId"]: 20}
    assert rank_of(granted["lotId"]) == LotRank(10, int(expires.timestamp()), ANY)
    assert rank_of(bought["lotId"]) == LotRank(70, int(expires.timestamp()), ANY)
    assert rank_of(defaults["lotId"]) == LotRank(50, None, ANY)  # a top-up's default
    assert replayed == {**granted, "replayed": True}
    materialize()
    entry = call("ledger.list", accountId=account, limit=3)["entries"][-1]
    assert (entry["type"], entry["actor"]) == ("grant", ACTOR)
    assert entry["metadata"] == {}  # priority and expiry are the lot's, not metadata
    listed = {lot["lotId"]: lot for lot in call("lots.list", accountId=account)["lots"]}
    assert listed[bought["lotId"]]["reference"] == "po_7"
    assert listed[granted["lotId"]]["priority"] == 10


@pytest.mark.parametrize("operation", ["credits.grant", "credits.topup"])
@pytest.mark.parametrize(
    "lot",
    [
        {"expiresAt": timedelta(days=-1)},
        {"expiresAt": timedelta(minutes=2)},  # a lot lives at least 5 minutes
        {"priority": 101},
        {"priority": -1},
        {"priority": "10"},  # an integer, not text
    ],
)
def test_a_lot_expiring_too_soon_or_out_of_range_priority_is_refused(
    call: Call, account: str, operation: str, lot: dict[str, Any]
) -> None:
    sent = {
        name: (datetime.now(UTC) + value).isoformat() if isinstance(value, timedelta) else value
        for name, value in lot.items()
    }

    refused = call(operation, accountId=account, amount=20, idempotencyKey="k-1", **sent)

    (field,) = lot
    assert fields_named(refused) == {field}
    assert call("accounts.show", accountId=account)["account"]["balance"] == 100


def test_adjust_either_way_with_a_reason(
    call: Call, account: str, materialize: Callable[[], int]
) -> None:
    down = call(
        "credits.adjust",
        accountId=account,
        amount=-30,
        reason="Duplicate top-up",
        idempotencyKey="adj-1",
    )
    zero = call("credits.adjust", accountId=account, amount=0, reason="x", idempotencyKey="adj-2")
    no_reason = call("credits.adjust", accountId=account, amount=5, idempotencyKey="adj-3")

    assert (down["amount"], down["balanceAfter"]) == (30, 70)  # amounts moved are unsigned
    assert error_of(zero) == "VALIDATION_ERROR"
    assert fields_named(no_reason) == {"reason"}
    materialize()
    entry = call("ledger.list", accountId=account, limit=1)["entries"][0]
    assert (entry["type"], entry["description"], entry["actor"]) == (
        "adjustment",
        "Duplicate top-up",
        ACTOR,
    )


def test_refunds_are_capped_at_the_debit_and_idempotent(
    call: Call, account: str, materialize: Callable[[], int]
) -> None:
    charged = debit(account, 10, "call-1")
    materialize()

    part = call(
        "credits.refund",
        accountId=account,
        transactionId=charged,
        amount=4,
        reason="Dropped call",
        idempotencyKey="rf-1",
    )
    replay = call(
        "credits.refund",
        accountId=account,
        transactionId=charged,
        amount=4,
        reason="Dropped call",
        idempotencyKey="rf-1",
    )
    conflict = call(
        "credits.refund", accountId=account, transactionId=charged, amount=5, idempotencyKey="rf-1"
    )
    too_much = call(
        "credits.refund", accountId=account, transactionId=charged, amount=7, idempotencyKey="rf-2"
    )
    rest = call("credits.refund", accountId=account, transactionId=charged, idempotencyKey="rf-3")
    nothing_left = call(
        "credits.refund", accountId=account, transactionId=charged, amount=1, idempotencyKey="rf-4"
    )
    unknown = call(
        "credits.refund",
        accountId=account,
        transactionId="txn_99_abcdefabcdef",
        idempotencyKey="rf-5",
    )

    assert (part["amount"], part["balanceAfter"], part["replayed"]) == (4, 94, False)
    assert replay == {**part, "replayed": True}
    assert error_of(conflict) == "IDEMPOTENCY_CONFLICT"
    assert error_of(too_much) == "REFUND_NOT_ALLOWED"
    assert (rest["amount"], rest["balanceAfter"]) == (6, 100)
    assert error_of(nothing_left) == "REFUND_NOT_ALLOWED"
    assert error_of(unknown) == "TRANSACTION_NOT_FOUND"
    materialize()
    refunds = [
        e for e in call("ledger.list", accountId=account)["entries"] if e["type"] == "refund"
    ]
    assert [(e["amount"], e["refundOf"], e["actor"]) for e in refunds] == [
        (6, charged, ACTOR),
        (4, charged, ACTOR),
    ]
    assert refunds[1]["description"] == "Dropped call"


def test_a_refund_of_what_is_not_a_debit(
    call: Call, account: str, materialize: Callable[[], int]
) -> None:
    topped = call("credits.topup", accountId=account, amount=5, idempotencyKey="t-1")
    materialize()
    refused = call(
        "credits.refund",
        accountId=account,
        transactionId=topped["transactionId"],
        idempotencyKey="rf-x",
    )
    assert error_of(refused) == "REFUND_NOT_ALLOWED"


# ---------------------------------------------------------------- ledger and reconciliation
def test_ledger_newest_first_with_a_limit(
    call: Call, account: str, materialize: Callable[[], int]
) -> None:
    for number in range(3):
        debit(account, 1, f"d-{number}")
    materialize()

    entries = call("ledger.list", accountId=account, limit=2)["entries"]

    assert [e["sequence"] for e in entries] == [4, 3]
    assert [e["type"] for e in entries] == ["debit", "debit"]
    assert fields_named(call("ledger.list", accountId=account, limit=0)) == {"limit"}
    assert error_of(call("ledger.list", accountId="acct_nope")) == "ACCOUNT_NOT_FOUND"


def test_reconcile_one_or_all(call: Call, account: str, materialize: Callable[[], int]) -> None:
    call("accounts.create", name="Second", credits=5)
    materialize()

    one = call("reconcile", accountId=account)
    every = call("reconcile", all=True)

    assert one == {"accounts": 1, "filled": 0, "inconsistent": []}
    assert every == {"accounts": 2, "filled": 0, "inconsistent": []}
    assert error_of(call("reconcile")) == "VALIDATION_ERROR"
    assert error_of(call("reconcile", accountId="acct_nope")) == "ACCOUNT_NOT_FOUND"


# ---------------------------------------------------------------- the Lambda handler
@dataclass(frozen=True)
class FakeLambdaContext:
    function_name: str = "serverless-credits-dev-AdminFunction"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:123456789012:function:serverless-credits-dev-AdminFunction"
    )
    aws_request_id: str = "0d2b1c2e-7f0a-4c1e-9a59-1f0c2f3e4d5a"


def test_the_handler_answers_results_and_refusals(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    created = app.lambda_handler(
        {"operation": "accounts.create", "actor": ACTOR, "name": "Via Lambda"}, FakeLambdaContext()
    )
    refused = app.lambda_handler(
        {"operation": "accounts.suspend", "actor": ACTOR, "accountId": created["accountId"]},
        FakeLambdaContext(),
    )

    assert created["plan"] == "free"
    assert error_of(refused) == "VALIDATION_ERROR"
    output = capsys.readouterr().out
    assert created["apiKey"] not in output  # a key's value is never logged
    assert '"AdminRequestsRefused"' in output
    stored = wiring.store().accounts.get(created["accountId"], consistent=True)
    assert stored is not None
    assert stored.status is AccountStatus.ACTIVE


# ---------------------------------------------------------------- holds
def reserve(account_id: str, amount: int, key: str, description: str = "") -> str:
    result = wiring.ledger().holds.reserve(
        ReserveCommand(
            account_id=account_id,
            idempotency_key=key,
            amount=Decimal(amount),
            description=description,
        )
    )
    assert result.hold_id is not None
    return result.hold_id


def test_holds_list_shows_open_holds_newest_first_with_descriptions(
    call: Call, account: str, materialize: Callable[[], int]
) -> None:
    first = reserve(account, 30, "r-1", "transcription job 1")
    second = reserve(account, 20, "r-2", "transcription job 2")
    materialize()  # the HOLD items (descriptions) come from the stream

    listed = call("holds.list", accountId=account)

    assert (listed["reserved"], listed["available"]) == (50, 50)
    assert [h["holdId"] for h in listed["holds"]] in ([second, first], [first, second])
    by_id = {h["holdId"]: h for h in listed["holds"]}
    assert by_id[first]["amount"] == 30
    assert by_id[first]["description"] == "transcription job 1"
    assert by_id[second]["expired"] is False


def test_an_operator_releases_a_hold_once_and_is_named_on_the_entry(
    call: Call, account: str, moto_store: CreditsStore, materialize: Callable[[], int]
) -> None:
    hold = reserve(account, 40, "r-stuck")

    released = call("holds.release", accountId=account, holdId=hold, idempotencyKey="op-rel-1")
    again = call("holds.release", accountId=account, holdId=hold, idempotencyKey="op-rel-1")

    assert released["released"] == 40
    assert released["available"] == 100
    assert again["replayed"] is True
    assert call("holds.list", accountId=account)["holds"] == []
    materialize()
    entries, _ = moto_store.entries.page(account, limit=10)
    release = entries[0]
    assert (release.type, release.actor, release.hold_id) == (EntryType.RELEASE, ACTOR, hold)


def test_releasing_a_closed_or_unknown_hold_is_refused(
    call: Call, account: str, materialize: Callable[[], int]
) -> None:
    hold = reserve(account, 10, "r-closed")
    call("holds.release", accountId=account, holdId=hold, idempotencyKey="op-rel-a")
    materialize()

    closed = call("holds.release", accountId=account, holdId=hold, idempotencyKey="op-rel-b")
    unknown = call(
        "holds.release", accountId=account, holdId="hold_0123456789abcdef", idempotencyKey="x"
    )
    malformed = call("holds.release", accountId=account, holdId="nope", idempotencyKey="y")

    assert error_of(closed) == "HOLD_NOT_OPEN"
    assert error_of(unknown) == "HOLD_NOT_FOUND"
    assert error_of(malformed) == "VALIDATION_ERROR"


def test_holds_of_an_unknown_account(call: Call) -> None:
    response: dict[str, Any] = call("holds.list", accountId="acct_nobody")

    assert error_of(response) == "ACCOUNT_NOT_FOUND"
