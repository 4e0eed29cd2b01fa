"""Every validation rule of the ledger's commands (the boundary of every write)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from serverless_credits.domain.commands import (
    AdjustmentCommand,
    CreateAccountCommand,
    CreditCommand,
    DebitCommand,
    RefundCommand,
)


def debit_request(**changes: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"accountId": "acct_1", "idempotencyKey": "key-1", "amount": 5}
    request.update(changes)
    return {name: value for name, value in request.items() if value is not None}


def invalid_fields(model: type[BaseModel], request: dict[str, Any]) -> set[str]:
    """The fields pydantic names for a rejected request ('' for whole-model rules)."""
    with pytest.raises(ValidationError) as caught:
        model.model_validate(request)
    return {".".join(str(part) for part in error["loc"]) for error in caught.value.errors()}


# ---------------------------------------------------------------- amounts
@pytest.mark.parametrize(
    "amount",
    [1, "0.000001", 0.000001, "12.5", 12.5, 1_000_000_000, "999999999.999999", "1.5000000"],
)
def test_debit_accepts_positive_amounts_up_to_a_billion_with_six_places(amount: object) -> None:
    command = DebitCommand.model_validate(debit_request(amount=amount))
    assert command.amount == Decimal(str(amount))
    assert isinstance(command.amount, Decimal)


def test_a_float_amount_becomes_the_decimal_it_reads_as() -> None:
    assert DebitCommand.model_validate(debit_request(amount=0.1)).amount == Decimal("0.1")


@pytest.mark.parametrize(
    "amount",
    [
        0,
        "0",
        -1,
        "-0.5",
        "1000000000.000001",
        1_000_000_001,
        "1e10",
        "0.0000001",
        1e-7,
        "1.1234567",
        "NaN",
        "nan",
        "sNaN",
        "Infinity",
        "-Infinity",
        float("nan"),
        float("inf"),
        "ten",
        "",
        [5],
        {"value": 5},
    ],
)
def test_debit_rejects_amounts_that_are_not_positive_bounded_exact_numbers(amount: object) -> None:
    assert invalid_fields(DebitCommand, debit_request(amount=amount)) == {"amount"}


# ---------------------------------------------------------------- amount or action
def test_debit_by_action_defaults_to_no_quantity() -> None:
    command = DebitCommand.model_validate(debit_request(amount=None, action="sms"))
    assert command.action == "sms"
    assert command.amount is None
    assert command.quantity is None


def test_debit_by_action_and_quantity() -> None:
    command = DebitCommand.model_validate(
        debit_request(amount=None, action="voice_call_minute", quantity="2.5")
    )
    assert command.quantity == Decimal("2.5")


@pytest.mark.parametrize(
    "changes",
    [
        {"amount": None},  # neither amount nor action
        {"amount": 5, "action": "sms"},  # both
        {"amount": 5, "quantity": 2},  # quantity without action
        {"amount": None, "quantity": 2},  # quantity alone
    ],
)
def test_debit_needs_exactly_one_of_amount_or_action_and_quantity_only_with_action(
    changes: dict[str, Any],
) -> None:
    with pytest.raises(
        ValidationError, match=r"'amount' or 'action'|'quantity' goes with 'action'"
    ):
        DebitCommand.model_validate(debit_request(**changes))


@pytest.mark.parametrize("quantity", [0, -1, "1000000.000001", "0.0000001", "NaN", "Infinity"])
def test_debit_rejects_quantities_that_are_not_positive_bounded_exact_numbers(
    quantity: object,
) -> None:
    request = debit_request(amount=None, action="sms", quantity=quantity)
    assert invalid_fields(DebitCommand, request) == {"quantity"}


@pytest.mark.parametrize("action", ["", "SMS", "1sms", "voice call", "a" * 65, "sms!"])
def test_debit_rejects_malformed_action_names(action: str) -> None:
    assert invalid_fields(DebitCommand, debit_request(amount=None, action=action)) == {"action"}


# ---------------------------------------------------------------- identifiers
@pytest.mark.parametrize("key", ["k", "a" * 128, "order:42#line.3_retry-1", "UPPER-lower-09"])
def test_idempotency_keys_that_match_the_pattern_are_accepted(key: str) -> None:
    assert DebitCommand.model_validate(debit_request(idempotencyKey=key)).idempotency_key == key


@pytest.mark.parametrize(
    "key", ["", "a" * 129, "has space", "slash/key", "ümlaut", "semi;colon", "new\nline"]
)
def test_idempotency_keys_outside_the_pattern_are_rejected(key: str) -> None:
    assert invalid_fields(DebitCommand, debit_request(idempotencyKey=key)) == {"idempotencyKey"}


def test_idempotency_key_is_required() -> None:
    request = debit_request()
    del request["idempotencyKey"]
    assert invalid_fields(DebitCommand, request) == {"idempotencyKey"}


@pytest.mark.parametrize("account_id", ["ab", "a" * 65, "acct 1", "acct/1", "acct#1", ""])
def test_account_ids_outside_the_pattern_are_rejected(account_id: str) -> None:
    assert invalid_fields(DebitCommand, debit_request(accountId=account_id)) == {"accountId"}


# ---------------------------------------------------------------- unknown fields, text
@pytest.mark.parametrize("field", ["amout", "account_idd", "balance", "operation"])
def test_unknown_fields_are_rejected_not_ignored(field: str) -> None:
    assert invalid_fields(DebitCommand, debit_request(**{field: 1})) == {field}


def test_fields_are_accepted_by_their_python_names_too() -> None:
    command = DebitCommand.model_validate(
        {"account_id": "acct_1", "idempotency_key": "k-1", "amount": "3"}
    )
    assert command.account_id == "acct_1"


def test_description_is_limited_to_500_characters() -> None:
    assert DebitCommand.model_validate(debit_request(description="d" * 500)).description
    assert invalid_fields(DebitCommand, debit_request(description="d" * 501)) == {"description"}


@pytest.mark.parametrize("endpoint", ["", "has space", "e" * 129, "tab\there", "é"])
def test_endpoint_must_be_printable_ascii_up_to_128(endpoint: str) -> None:
    assert invalid_fields(DebitCommand, debit_request(endpoint=endpoint)) == {"endpoint"}


def test_endpoint_may_be_a_route() -> None:
    command = DebitCommand.model_validate(debit_request(endpoint="POST:/v1/sms/send?x=1"))
    assert command.endpoint == "POST:/v1/sms/send?x=1"


# ---------------------------------------------------------------- metadata
def test_metadata_takes_up_to_20_short_strings_integers_and_booleans() -> None:
    metadata: dict[str, object] = {f"k{i}": "v" for i in range(17)}
    metadata.update({"count": 3, "flag": True, "long": "x" * 256})
    command = DebitCommand.model_validate(debit_request(metadata=metadata))
    assert command.metadata == metadata


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({f"k{i}": "v" for i in range(21)}, "metadata"),
        ({"k" * 65: "v"}, "metadata." + "k" * 65),
        ({"note": "x" * 257}, "metadata.note"),
        ({"nested": {"a": 1}}, "metadata.nested"),
        ({"ratio": 0.5}, "metadata.ratio"),
        ({"items": [1, 2]}, "metadata.items"),
        ({"missing": None}, "metadata.missing"),
    ],
)
def test_metadata_beyond_its_limits_is_rejected(metadata: dict[str, Any], field: str) -> None:
    fields = invalid_fields(DebitCommand, debit_request(metadata=metadata))
    # The location names the entry; the last part says which rule (or union member) failed.
    assert {".".join(name.split(".")[:2]) for name in fields} == {field}


def test_metadata_must_be_an_object() -> None:
    assert invalid_fields(DebitCommand, debit_request(metadata=["a"])) == {"metadata"}


# ---------------------------------------------------------------- credits: top-up and grant
def test_credit_command_takes_amount_reference_and_metadata() -> None:
    command = CreditCommand.model_validate(
        {
            "accountId": "acct_1",
            "idempotencyKey": "po-1",
            "amount": "250.75",
            "reference": "PO-2024-001",
            "metadata": {"invoice": "inv_9"},
        }
    )
    assert (command.amount, command.reference) == (Decimal("250.75"), "PO-2024-001")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"amount": 0}, "amount"),
        ({"amount": -5}, "amount"),
        ({"amount": "1000000000.5"}, "amount"),
        ({"amount": "0.1234567"}, "amount"),
        ({"amount": "NaN"}, "amount"),
        ({"reference": ""}, "reference"),
        ({"reference": "r" * 129}, "reference"),
        ({"action": "sms"}, "action"),
    ],
)
def test_credit_command_rejects_bad_amounts_references_and_unknown_fields(
    changes: dict[str, Any], field: str
) -> None:
    request = {"accountId": "acct_1", "idempotencyKey": "po-1", "amount": 10, **changes}
    assert invalid_fields(CreditCommand, request) == {field}


def test_credit_command_requires_an_amount() -> None:
    assert invalid_fields(CreditCommand, {"accountId": "acct_1", "idempotencyKey": "k"}) == {
        "amount"
    }


# ---------------------------------------------------------------- adjustments
def adjustment(**changes: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "accountId": "acct_1",
        "idempotencyKey": "adj-1",
        "amount": "-2.5",
        "reason": "Double charge on 2024-05-01",
    }
    request.update(changes)
    return {name: value for name, value in request.items() if value is not None}


@pytest.mark.parametrize("amount", ["-2.5", "2.5", "-1000000000", "1000000000", "-0.000001"])
def test_adjustments_go_either_way_within_the_bound(amount: str) -> None:
    assert AdjustmentCommand.model_validate(adjustment(amount=amount)).amount == Decimal(amount)


@pytest.mark.parametrize(
    "amount", [0, "0.0", "-1000000000.000001", "1000000001", "NaN", "-Infinity", "0.0000001"]
)
def test_adjustments_reject_zero_out_of_bound_and_inexact_amounts(amount: object) -> None:
    with pytest.raises(ValidationError):
        AdjustmentCommand.model_validate(adjustment(amount=amount))


@pytest.mark.parametrize("reason", [None, "", "   ", "r" * 501])
def test_adjustments_require_a_reason(reason: str | None) -> None:
    assert invalid_fields(AdjustmentCommand, adjustment(reason=reason)) == {"reason"}


def test_adjustment_reason_is_stripped() -> None:
    assert AdjustmentCommand.model_validate(adjustment(reason="  fix  ")).reason == "fix"


# ---------------------------------------------------------------- refunds
def test_refund_amount_is_optional_meaning_whatever_remains() -> None:
    command = RefundCommand.model_validate(
        {"accountId": "acct_1", "idempotencyKey": "r-1", "transactionId": "txn_1"}
    )
    assert command.amount is None
    assert command.failed_call is False


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"transactionId": ""}, "transactionId"),
        ({"transactionId": "t" * 65}, "transactionId"),
        ({"amount": 0}, "amount"),
        ({"amount": "-1"}, "amount"),
        ({"amount": "0.0000001"}, "amount"),
        ({"reason": "r" * 501}, "reason"),
        ({"refundAll": True}, "refundAll"),
    ],
)
def test_refund_command_rules(changes: dict[str, Any], field: str) -> None:
    request = {"accountId": "acct_1", "idempotencyKey": "r-1", "transactionId": "txn_1", **changes}
    assert invalid_fields(RefundCommand, request) == {field}


# ---------------------------------------------------------------- accounts
def test_create_account_defaults() -> None:
    command = CreateAccountCommand.model_validate({"accountId": "acct_1"})
    assert command.currency == "USD"
    assert command.opening_balance == 0
    assert command.overdraft_limit == 0


@pytest.mark.parametrize(
    "changes",
    [
        {"currency": "usd"},
        {"currency": "DOLLARS"},
        {"creditPrice": "-0.01"},
        {"overdraftLimit": -1},
        {"openingBalance": -1},
        {"openingBalance": "1000000000.5"},
        {"openingBalance": "0.0000001"},
        {"plan": "Pro Plan"},
        {"email": "e" * 255},
        {"balance": 100},
    ],
)
def test_create_account_rejects_bad_settings(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CreateAccountCommand.model_validate({"accountId": "acct_1", **changes})
