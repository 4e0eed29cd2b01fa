"""The operators' request models (`domain.admin_commands`): every field checked, unknown
fields refused by name; and the actor kept out of idempotency fingerprints."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from serverless_credits.domain import admin_commands as requests
from serverless_credits.domain.commands import AdjustmentCommand, CreditCommand, RefundCommand
from serverless_credits.domain.idempotency import fingerprint, parameters

ACTOR = {"actor": "ops@example"}
A = {"accountId": "acct_1"}
K = {"accountId": "acct_1", "idempotencyKey": "k"}


def invalid_fields(model: type[requests.AdminRequest], **fields: Any) -> set[str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate({**ACTOR, **fields})
    return {".".join(str(p) for p in error["loc"]) for error in caught.value.errors()}


@pytest.mark.parametrize(
    ("model", "fields", "wrong"),
    [
        (requests.CreateAccountRequest, {"nmae": "Acme"}, {"nmae", "name"}),
        (requests.CreateAccountRequest, {"name": "Acme", "plan": "gold"}, {"plan"}),
        (requests.CreateAccountRequest, {"name": "Acme", "credits": -5}, {"credits"}),
        (requests.CreateAccountRequest, {"name": "Acme", "currency": "usd"}, {"currency"}),
        (requests.CreateAccountRequest, {"name": "Acme", "creditPrice": -1}, {"creditPrice"}),
        (requests.CreateAccountRequest, {"name": " "}, {"name"}),
        (requests.ShowAccountRequest, {"accountId": "a b"}, {"accountId"}),
        (requests.ListAccountsRequest, {"limit": 0}, {"limit"}),
        (requests.ListAccountsRequest, {"limit": 1001}, {"limit"}),
        (requests.SuspendRequest, {"accountId": "acct_1"}, {"reason"}),
        (requests.SuspendRequest, {"accountId": "acct_1", "reason": "  "}, {"reason"}),
        (requests.FlagRequest, {"accountId": "acct_1"}, {"warning"}),
        (requests.UnflagRequest, {"accountId": "acct_1", "warning": "x"}, {"warning"}),
        (
            requests.SettingsRequest,
            {"accountId": "acct_1", "lowBalanceTreshold": 5},
            {"lowBalanceTreshold"},
        ),
        (
            requests.SettingsRequest,
            {**A, "overdraftLimit": -1},
            {"overdraftLimit"},
        ),
        (requests.SettingsRequest, {"accountId": "acct_1", "autoReload": "maybe"}, {"autoReload"}),
        (
            requests.SettingsRequest,
            {**A, "autoReloadAmount": 0},
            {"autoReloadAmount"},
        ),
        (requests.SettingsRequest, {"accountId": "acct_1", "plan": "gold"}, {"plan"}),
        (requests.RevokeKeyRequest, {"accountId": "acct_1"}, {"apiKeyId"}),
        (requests.RevokeKeyRequest, {"accountId": "acct_1", "apiKeyId": "a/b"}, {"apiKeyId"}),
        (
            requests.TopUpRequest,
            {"accountId": "acct_1", "amount": -10, "idempotencyKey": "k"},
            {"amount"},
        ),
        (
            requests.TopUpRequest,
            {**K, "amount": 0},
            {"amount"},
        ),
        (requests.TopUpRequest, {"accountId": "acct_1", "amount": 10}, {"idempotencyKey"}),
        (
            requests.TopUpRequest,
            {"accountId": "acct_1", "amount": "1.0000001", "idempotencyKey": "k"},
            {"amount"},
        ),
        (
            requests.GrantRequest,
            {"accountId": "acct_1", "amount": 5, "idempotencyKey": "k", "priority": 101},
            {"priority"},
        ),
        (
            requests.GrantRequest,
            {"accountId": "acct_1", "amount": 5, "idempotencyKey": "k", "expiresAt": "soon"},
            {"expiresAt"},
        ),
        (
            requests.AdjustRequest,
            {"accountId": "acct_1", "amount": 5, "idempotencyKey": "k"},
            {"reason"},
        ),
        (
            requests.RefundRequest,
            {"accountId": "acct_1", "idempotencyKey": "k", "transactionId": "t", "amont": 1},
            {"amont"},
        ),
        (requests.LedgerRequest, {"accountId": "acct_1", "limit": 101}, {"limit"}),
    ],
)
def test_a_wrong_or_unknown_field_is_named(
    model: type[requests.AdminRequest], fields: dict[str, Any], wrong: set[str]
) -> None:
    assert invalid_fields(model, **fields) == wrong


def test_every_request_names_its_actor() -> None:
    with pytest.raises(ValidationError) as caught:
        requests.ShowAccountRequest.model_validate({"accountId": "acct_1"})
    assert [e["loc"] for e in caught.value.errors()] == [("actor",)]
    with pytest.raises(ValidationError):
        requests.ShowAccountRequest.model_validate({"accountId": "acct_1", "actor": " "})


def test_settings_need_at_least_one_setting() -> None:
    with pytest.raises(ValidationError, match="at least one setting"):
        requests.SettingsRequest.model_validate({**ACTOR, "accountId": "acct_1"})
    with pytest.raises(ValidationError, match="at least one setting"):
        requests.SettingsRequest.model_validate(
            {**ACTOR, "accountId": "acct_1", "lowBalanceThreshold": None}
        )
    accepted = requests.SettingsRequest.model_validate(
        {**ACTOR, "accountId": "acct_1", "autoReload": False}
    )
    assert accepted.auto_reload is False


def test_adjustments_are_non_zero_and_bounded_either_way() -> None:
    base = {**ACTOR, "accountId": "acct_1", "idempotencyKey": "k", "reason": "fix"}
    assert requests.AdjustRequest.model_validate({**base, "amount": -5}).amount == Decimal(-5)
    for amount in (0, "1000000001", "-1000000001"):
        with pytest.raises(ValidationError):
            requests.AdjustRequest.model_validate({**base, "amount": amount})


def test_reconcile_one_account_or_all() -> None:
    assert requests.ReconcileRequest.model_validate({**ACTOR, "all": True}).all
    assert requests.ReconcileRequest.model_validate({**ACTOR, "accountId": "acct_1"}).account_id
    for fields in ({}, {"all": True, "accountId": "acct_1"}, {"all": False}):
        with pytest.raises(ValidationError):
            requests.ReconcileRequest.model_validate({**ACTOR, **fields})


def test_defaults() -> None:
    created = requests.CreateAccountRequest.model_validate({**ACTOR, "name": " Acme "})
    assert (created.name, created.plan, created.currency, created.credits) == (
        "Acme",
        requests.Plan.FREE,
        "USD",
        None,
    )
    assert requests.ListAccountsRequest.model_validate(ACTOR).limit == 100
    assert requests.LedgerRequest.model_validate({**ACTOR, "accountId": "acct_1"}).limit == 20


@pytest.mark.parametrize(
    "command",
    [
        CreditCommand(account_id="acct_1", idempotency_key="k", amount=Decimal(5)),
        AdjustmentCommand(account_id="acct_1", idempotency_key="k", amount=Decimal(-5), reason="r"),
        RefundCommand(account_id="acct_1", idempotency_key="k", transaction_id="txn_1_a"),
    ],
    ids=["credit", "adjustment", "refund"],
)
def test_the_actor_is_no_part_of_a_fingerprint(command: Any) -> None:
    """Who asked does not change what is asked: another operator retrying with the same key
    replays; and a request without an actor keeps its fingerprint from before the field."""
    with_actor = command.model_copy(update={"actor": "ops@example"})
    assert "actor" not in parameters(command)
    assert fingerprint("x", parameters(with_actor)) == fingerprint("x", parameters(command))
    before = command.model_dump(mode="python", exclude={"idempotency_key", "actor"})
    assert set(parameters(command)) == set(before)
