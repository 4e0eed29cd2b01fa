"""The one mapping from domain errors to HTTP statuses, error bodies and Debit payloads."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from serverless_credits.domain import errors, money
from serverless_credits.domain.commands import DebitCommand
from serverless_credits.transport import responses


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.ValidationFailed("bad"), 400),
        (errors.UnknownAction("teleport"), 400),
        (errors.ApiKeyNotRecognised(), 403),
        (errors.AccountSuspended("acct_1", "suspended"), 403),
        (errors.AccountNotFound("acct_1"), 404),
        (errors.TransactionNotFound("txn_1"), 404),
        (errors.InsufficientCredits(Decimal(3), Decimal(5)), 402),
        (errors.IdempotencyConflict("key-1"), 409),
        (errors.AccountAlreadyExists("acct_1"), 409),
        (errors.RefundNotAllowed("no"), 409),
        (errors.TooManyActiveLots("acct_1", 25), 409),
        (errors.CreditsError("anything else"), 400),
    ],
)
def test_each_error_maps_to_its_http_status(error: errors.CreditsError, status: int) -> None:
    assert responses.status_for(error) == status


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.ValidationFailed("bad"), "VALIDATION_ERROR"),
        (errors.UnknownAction("teleport"), "VALIDATION_ERROR"),
        (errors.AccountSuspended("acct_1", "closed"), "ACCOUNT_SUSPENDED"),
        (errors.AccountNotFound("acct_1"), "ACCOUNT_NOT_FOUND"),
        (errors.InsufficientCredits(Decimal(3), Decimal(5)), "INSUFFICIENT_CREDITS"),
        (errors.IdempotencyConflict("key-1"), "IDEMPOTENCY_CONFLICT"),
        (errors.TransactionNotFound("txn_1"), "TRANSACTION_NOT_FOUND"),
        (errors.RefundNotAllowed("no"), "REFUND_NOT_ALLOWED"),
    ],
)
def test_debit_error_payload_is_an_error_object_with_the_stable_code(
    error: errors.CreditsError, code: str
) -> None:
    payload = responses.debit_error(error)

    assert set(payload) == {"error"}
    assert set(payload["error"]) == {"code", "message", "details"}
    assert payload["error"]["code"] == code
    assert payload["error"]["message"] == error.message
    json.dumps(payload)  # a Lambda response must serialise as plain JSON


def test_insufficient_credits_payload_carries_available_and_requested_as_json_numbers() -> None:
    payload = responses.debit_error(errors.InsufficientCredits(Decimal("2.50"), Decimal(10)))

    details = payload["error"]["details"]
    assert details == {"available": 2.5, "requested": 10}
    assert isinstance(details["requested"], int)
    # Exact: the Lambda runtime writes a Decimal as its literal (money.dumps does the same).
    assert json.loads(money.dumps(payload), parse_float=Decimal) == payload


def test_unknown_action_names_the_field() -> None:
    error = errors.UnknownAction("teleport")
    payload = responses.debit_error(error)
    # A validation error names its fields under `details.fields`, whichever layer found it.
    assert payload["error"]["details"] == {
        "fields": [{"field": "action", "message": error.message}]
    }


def test_a_validation_failure_keeps_its_other_context_beside_the_fields() -> None:
    error = errors.ValidationFailed("too much", {"field": "amount", "held": Decimal("5.0")})

    assert responses.from_domain(error)["details"] == {
        "fields": [{"field": "amount", "message": "too much"}],
        "held": 5,
    }
    # Over HTTP every field is a query parameter, and the answer says so.
    assert responses.details_of(error, location="query")["fields"] == [
        {"field": "amount", "message": "too much", "in": "query"}
    ]
    # A rule on the request as a whole names no field.
    whole = responses.from_domain(errors.ValidationFailed("give one of a or b"))
    assert whole["details"] == {"fields": [{"field": None, "message": "give one of a or b"}]}


def test_an_error_rebuilt_from_a_debit_function_answer_keeps_its_fields() -> None:
    # The client rebuilds a refusal from the payload's details (already in the one shape);
    # mapping it again (an API in front of the client) must not nest or lose them.
    answered = responses.debit_error(errors.UnknownAction("teleport"))["error"]
    rebuilt = errors.ValidationFailed.from_payload(answered["message"], answered["details"])

    assert responses.from_domain(rebuilt)["details"] == answered["details"]


def test_error_body_is_the_services_one_error_shape() -> None:
    body = responses.error_body("NOT_FOUND", "Nothing here", {"id": Decimal("1.0")}, "req-1")
    assert body == {
        "error": {"code": "NOT_FOUND", "message": "Nothing here", "details": {"id": 1}},
        "requestId": "req-1",
    }


def test_error_body_without_details_or_request_id() -> None:
    assert responses.error_body("X", "y") == {
        "error": {"code": "X", "message": "y", "details": {}},
        "requestId": None,
    }


def test_from_domain_keeps_nested_decimals_exact() -> None:
    """Integers become `int`; any other figure stays an exact, normalised Decimal (never a
    float), for `money.dumps` or the Lambda runtime to write as its exact literal."""
    error = errors.CreditsError(
        "m", {"rows": [Decimal("0.000001"), {"n": Decimal("-4.0")}, Decimal("1234567890123.50")]}
    )
    details = responses.from_domain(error)["details"]
    assert details == {"rows": [Decimal("0.000001"), {"n": -4}, Decimal("1234567890123.5")]}
    assert type(details["rows"][1]["n"]) is int
    assert money.dumps(details) == '{"rows":[0.000001,{"n":-4},1234567890123.5]}'


def validation_error_for(request: dict[str, Any]) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        DebitCommand.model_validate(request)
    return caught.value


SECRET = "sk_live_do-not-echo-4242"


def test_validation_details_name_each_field_without_echoing_the_input() -> None:
    error = validation_error_for(
        {"accountId": "acct 1 " + SECRET, "idempotencyKey": SECRET + " !", "amount": SECRET}
    )

    details = responses.validation_details(error)

    assert {d["field"] for d in details} == {"accountId", "idempotencyKey", "amount"}
    assert all(set(d) == {"field", "message"} for d in details)
    assert SECRET not in json.dumps(details)


def test_validation_error_payload_names_the_fields_in_its_message() -> None:
    payload = responses.validation_error(
        validation_error_for({"accountId": "acct_1", "idempotencyKey": "k", "amount": -1})
    )

    assert payload["code"] == "VALIDATION_ERROR"
    assert payload["message"] == "Invalid request: amount"
    assert payload["details"] == {
        "fields": [{"field": "amount", "message": "Input should be greater than 0"}]
    }


def test_a_whole_request_rule_has_no_field_and_the_message_says_request() -> None:
    payload = responses.validation_error(
        validation_error_for({"accountId": "acct_1", "idempotencyKey": "k"})
    )

    assert payload["message"] == "Invalid request: request"
    (whole,) = payload["details"]["fields"]
    assert whole["field"] is None
    assert "exactly one of 'amount' or 'action'" in whole["message"]


def test_an_unknown_field_is_named_but_its_value_is_not_echoed() -> None:
    payload = responses.validation_error(
        validation_error_for(
            {"accountId": "acct_1", "idempotencyKey": "k", "amount": 1, "apiKey": SECRET}
        )
    )

    assert payload["details"] == {
        "fields": [{"field": "apiKey", "message": "Extra inputs are not permitted"}]
    }
    assert SECRET not in json.dumps(payload)
