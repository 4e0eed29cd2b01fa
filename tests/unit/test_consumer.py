"""Consumers (issue 15, "Consumers"): the client's typed refusals answered as API Gateway
proxy responses with the service's one status mapping, the example consumer using it, and
one retry layer in the client (counted on a throttled Lambda API)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders

from functions.example_consumer import app as consumer
from serverless_credits.domain import errors
from serverless_credits.integrations.client import CreditsClient, CreditsUnavailable
from serverless_credits.storage.store import CreditsStore
from serverless_credits.transport import responses
from serverless_credits.transport.consumer import answer_refusals, proxy_response
from tests.unit.test_client import FakeContext, InProcessLambda, client_with

REFUSALS: list[tuple[errors.CreditsError, int, str]] = [
    (errors.InsufficientCredits(Decimal("2.5"), Decimal(10)), 402, "INSUFFICIENT_CREDITS"),
    (errors.AccountSuspended("acct_1", "suspended"), 403, "ACCOUNT_SUSPENDED"),
    (errors.IdempotencyConflict("k"), 409, "IDEMPOTENCY_CONFLICT"),
    (errors.OperationInProgress("k"), 409, "OPERATION_IN_PROGRESS"),
    (errors.HoldNotOpen("h", "captured"), 409, "HOLD_NOT_OPEN"),
    (errors.HoldNotFound("acct_1", "h"), 404, "HOLD_NOT_FOUND"),
    (errors.AccountNotFound("acct_1"), 404, "ACCOUNT_NOT_FOUND"),
    (errors.ValidationFailed("bad", {"field": "amount"}), 400, "VALIDATION_ERROR"),
    (CreditsUnavailable(), 503, "SERVICE_BUSY"),
]


@pytest.mark.parametrize(("error", "status", "code"), REFUSALS, ids=[r[2] for r in REFUSALS])
def test_each_refusal_is_the_proxy_response_the_service_would_answer(
    error: errors.CreditsError, status: int, code: str
) -> None:
    response = proxy_response(error, "req-9")

    assert response["statusCode"] == status == responses.status_for(error)
    body = json.loads(response["body"])
    assert body["error"]["code"] == code
    assert body["requestId"] == "req-9"
    assert response["headers"]["Content-Type"] == "application/json"
    assert ("Retry-After" in response["headers"]) == (status == 503)


def test_insufficient_credits_carries_what_is_available() -> None:
    body = json.loads(
        proxy_response(errors.InsufficientCredits(Decimal("2.5"), Decimal(10)))["body"]
    )
    assert body["error"]["details"]["available"] == 2.5


def test_an_unavailable_debit_function_never_leaks_its_cause() -> None:
    response = proxy_response(CreditsUnavailable("invoke failed: arn:aws:lambda:secret-fn"))
    assert "secret" not in response["body"]
    assert response["headers"]["Retry-After"] == str(responses.RETRY_AFTER_SECONDS)


def test_answer_refusals_passes_results_and_other_errors_through() -> None:
    @answer_refusals
    def handler(event: dict[str, Any], context: Any) -> Any:
        if event.get("fail"):
            raise RuntimeError("a bug")
        if event.get("refuse"):
            raise errors.AccountSuspended("acct_1", "closed")
        return {"ok": True}

    assert handler({}, None) == {"ok": True}
    refused = handler({"refuse": True, "requestContext": {"requestId": "gw-1"}}, None)
    assert refused["statusCode"] == 403
    assert json.loads(refused["body"])["requestId"] == "gw-1"
    with pytest.raises(RuntimeError):
        handler({"fail": True}, None)


# ---------------------------------------------------------------- the example consumer
def test_the_example_consumer_answers_402_instead_of_failing(
    moto_store: CreditsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serverless_credits import wiring  # noqa: PLC0415
    from serverless_credits.domain.commands import CreateAccountCommand  # noqa: PLC0415

    wiring.ledger().create_account(
        CreateAccountCommand(account_id="acct_poor", opening_balance=Decimal(0))
    )
    monkeypatch.setattr(consumer, "credits", client_with(InProcessLambda()))

    response = consumer.lambda_handler(
        {"idempotencyKey": "r-poor", "accountId": "acct_poor"}, FakeContext("r-poor")
    )

    assert response["statusCode"] == 402
    assert json.loads(response["body"])["error"]["details"]["available"] == 0


def test_the_example_consumer_answers_503_when_the_debit_function_is_down(
    moto_store: CreditsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    down = InProcessLambda(failures_before_success=100)
    client = CreditsClient("DebitFunction", down, sleep=lambda _: None)  # type: ignore[arg-type]
    monkeypatch.setattr(consumer, "credits", client)

    response = consumer.lambda_handler(
        {"idempotencyKey": "r-down", "accountId": "acct_any"}, FakeContext("r-down")
    )

    assert response["statusCode"] == 503
    assert response["headers"]["Retry-After"] == str(responses.RETRY_AFTER_SECONDS)
    assert len(down.calls) == 3


# ---------------------------------------------------------------- one retry layer
def throttled_lambda_api(status: int, code: str) -> tuple[CreditsClient, list[str]]:
    """The client as it builds its own boto3 Lambda client, with every HTTP request the Lambda
    API receives answered `status`/`code` (botocore's retry logic, if any, still runs)."""
    sent: list[str] = []
    waits: list[float] = []
    client = CreditsClient("DebitFunction", sleep=waits.append)
    # The client's own boto3 client, as built by default (fake region: nothing leaves).
    boto = client.lambda_client

    def answer(request: Any, **_: Any) -> AWSResponse:
        sent.append(request.url)
        body = json.dumps({"Type": "User", "message": "Rate exceeded"}).encode()
        raw = _Raw(body)
        headers = HTTPHeaders()
        headers["x-amzn-ErrorType"] = code
        return AWSResponse(request.url, status, headers, raw)

    boto.meta.events.register("before-send.lambda.Invoke", answer)  # type: ignore[arg-type]
    return client, sent


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


def test_a_throttled_lambda_is_invoked_exactly_attempts_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three attempts in all (the client's), not 3 x botocore's 3: one retry layer."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client, sent = throttled_lambda_api(429, "TooManyRequestsException")

    with pytest.raises(CreditsUnavailable):
        client.debit(account_id="acct_1", idempotency_key="k-1", amount=Decimal(1))

    assert len(sent) == 3


def test_a_misconfiguration_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client, sent = throttled_lambda_api(403, "AccessDeniedException")

    with pytest.raises(CreditsUnavailable):
        client.debit(account_id="acct_1", idempotency_key="k-1", amount=Decimal(1))

    assert len(sent) == 1


def test_a_busy_debit_function_is_retried_with_the_same_key(moto_store: CreditsStore) -> None:
    """The Debit function's typed SERVICE_BUSY is transient: retried like a throttle."""

    class BusyOnce(InProcessLambda):
        def invoke(self, **kwargs: Any) -> dict[str, Any]:
            if not self.calls:
                self.calls.append(json.loads(kwargs["Payload"]))
                busy = {"error": responses.from_domain(CreditsUnavailable())}
                import io  # noqa: PLC0415

                return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(busy).encode())}
            return super().invoke(**kwargs)

    from serverless_credits import wiring  # noqa: PLC0415
    from serverless_credits.domain.commands import CreateAccountCommand  # noqa: PLC0415

    wiring.ledger().create_account(
        CreateAccountCommand(account_id="acct_busy", opening_balance=Decimal(5))
    )
    fake = BusyOnce()
    client = CreditsClient("DebitFunction", fake, sleep=lambda _: None)  # type: ignore[arg-type]

    result = client.debit(account_id="acct_busy", idempotency_key="k-b", amount=Decimal(1))

    assert result.balance_after == Decimal(4)
    assert [call["idempotencyKey"] for call in fake.calls] == ["k-b", "k-b"]
