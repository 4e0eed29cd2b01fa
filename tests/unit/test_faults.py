"""Faults (issue 15, "Faults"): a DynamoDB read that is throttled past botocore's retries,
times out or loses its connection is a transient fault, answered 503 `SERVICE_BUSY` with
`Retry-After` on every HTTP route and as the typed, retryable `SERVICE_BUSY` by the Debit
function; and a failing usage-counter write never changes a refusal.

Faults are injected on the store's boto3 client at `before-call`, which runs after
botocore's retry handling would have been set up but bypasses it: what the code sees is what
it sees once botocore has given up (and no test waits through real backoff)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from devtools.api_events import ApiAccount, api_event, invoke, open_account
from functions.account_summary import app as summary_app
from functions.balance import app as balance_app
from functions.debit import app as debit_app
from functions.stats import app as stats_app
from functions.transactions import app as transactions_app
from serverless_credits import wiring
from serverless_credits.domain.commands import CreateAccountCommand, DebitCommand, ReserveCommand
from serverless_credits.domain.errors import InsufficientCredits
from serverless_credits.storage.store import CreditsStore
from serverless_credits.transport import responses

ENDPOINT = "https://dynamodb.us-east-1.amazonaws.com"


class FakeContext:
    aws_request_id = "debit-req"
    function_name = "DebitFunction"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:DebitFunction"


Fault = Callable[[str], Exception]


def throttled(operation: str) -> Exception:
    return ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow"}}, operation)


def over_throughput(operation: str) -> Exception:
    code = "ProvisionedThroughputExceededException"
    return ClientError({"Error": {"Code": code, "Message": "slow"}}, operation)


def server_error(operation: str) -> Exception:
    return ClientError({"Error": {"Code": "InternalServerError", "Message": "oops"}}, operation)


def read_timeout(_: str) -> Exception:
    return ReadTimeoutError(endpoint_url=ENDPOINT)


def connection_lost(_: str) -> Exception:
    return ConnectionClosedError(endpoint_url=ENDPOINT)


def unreachable(_: str) -> Exception:
    return EndpointConnectionError(endpoint_url=ENDPOINT)


FAULTS: dict[str, Fault] = {
    "throttled": throttled,
    "over-throughput": over_throughput,
    "server-error": server_error,
    "read-timeout": read_timeout,
    "connection-closed": connection_lost,
    "unreachable": unreachable,
}
READS = ("GetItem", "Query", "BatchGetItem")
ROUTES: dict[str, Callable[[dict[str, Any], Any], dict[str, Any]]] = {
    "/v1/credits/balance": balance_app.lambda_handler,
    "/v1/credits/balances": balance_app.lambda_handler,
    "/v1/credits/holds": balance_app.lambda_handler,
    "/v1/credits/transactions": transactions_app.lambda_handler,
    "/v1/credits/stats": stats_app.lambda_handler,
    "/v1/account/summary": summary_app.lambda_handler,
}


class Faults:
    """Makes the store's client fail chosen operations with a chosen fault, and counts."""

    def __init__(self, store: CreditsStore) -> None:
        self._store = store
        self.failing: dict[str, Fault] = {}
        self.raised = 0
        store.client.meta.events.register("before-call.dynamodb.*", self._before_call)

    def _before_call(self, model: Any, **_: Any) -> None:
        fault = self.failing.get(model.name)
        if fault is not None:
            self.raised += 1
            raise fault(model.name)

    def fail(self, fault: Fault, *operations: str) -> None:
        self.failing = dict.fromkeys(operations, fault)

    def heal(self) -> None:
        self.failing = {}


@pytest.fixture
def faults(moto_store: CreditsStore) -> Faults:
    return Faults(moto_store)


@pytest.fixture
def owner(moto_store: CreditsStore) -> ApiAccount:
    account = open_account("acct_faults", opening_balance=100)
    wiring.ledger().debit(
        DebitCommand(account_id="acct_faults", idempotency_key="d1", amount=Decimal(3))
    )
    return account


def get(path: str, owner: ApiAccount, request_id: str = "r-fault") -> Any:
    return invoke(ROUTES[path], api_event(path, api_key_id=owner.api_key_id, request_id=request_id))


def assert_busy(response: Any, request_id: str = "r-fault") -> None:
    assert response.status == 503
    assert response.headers["Retry-After"] == str(responses.RETRY_AFTER_SECONDS)
    assert response.headers["X-Request-Id"] == request_id
    assert response.body["error"]["code"] == "SERVICE_BUSY"
    assert response.body["requestId"] == request_id
    assert set(response.body) == {"error", "requestId"}


# ---------------------------------------------------------------- HTTP routes
@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
@pytest.mark.parametrize("path", ROUTES)
def test_a_read_fault_on_any_route_is_a_503_with_retry_after(
    owner: ApiAccount, faults: Faults, path: str, fault: Fault
) -> None:
    assert get(path, owner).status == 200  # the key is resolved (and cached) before the fault
    faults.fail(fault, *READS)

    response = get(path, owner)

    assert faults.raised >= 1, "the route read nothing: the fault was never injected"
    assert_busy(response)
    faults.heal()
    assert get(path, owner).status == 200  # transient: the same request works again


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
def test_a_read_fault_while_resolving_the_api_key_is_a_503_too(
    moto_store: CreditsStore, faults: Faults, fault: Fault
) -> None:
    """The key's mapping is read before routing: its fault is a 503 as well, not a 500."""
    owner = open_account("acct_faults", opening_balance=100)
    faults.fail(fault, "GetItem")

    assert_busy(get("/v1/credits/balance", owner))
    assert faults.raised == 1


def test_other_storage_failures_are_still_a_500(owner: ApiAccount, faults: Faults) -> None:
    """Not every failure is transient: a refused request (permissions, a missing table) is a
    bug or a misconfiguration, not something to retry."""
    assert get("/v1/credits/balance", owner).status == 200

    def denied(operation: str) -> Exception:
        return ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, operation)

    faults.fail(denied, *READS)
    response = get("/v1/credits/balance", owner)

    assert response.status == 500
    assert response.body["error"]["code"] == "INTERNAL_ERROR"
    assert "Retry-After" not in response.headers


# ---------------------------------------------------------------- the Debit function
@pytest.fixture
def funded(moto_store: CreditsStore) -> str:
    wiring.ledger().create_account(
        CreateAccountCommand(account_id="acct_debit_faults", opening_balance=Decimal(10))
    )
    return "acct_debit_faults"


def debit(account_id: str, key: str = "k-fault", **fields: Any) -> dict[str, Any]:
    event = {"accountId": account_id, "amount": 4, "idempotencyKey": key, **fields}
    result: dict[str, Any] = debit_app.lambda_handler(event, FakeContext())
    return result


REFUSED = {"throttled": throttled, "over-throughput": over_throughput}
UNKNOWN_OUTCOME = {name: fault for name, fault in FAULTS.items() if name not in REFUSED}


@pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
@pytest.mark.parametrize(
    ("operation", "fault"),
    [
        *(pytest.param("PutItem", f, id=f"lease-{name}") for name, f in FAULTS.items()),
        *(pytest.param("UpdateItem", f, id=f"update-{name}") for name, f in REFUSED.items()),
    ],
)
def test_the_debit_function_answers_a_fault_as_a_typed_retryable_error(
    funded: str, faults: Faults, fault: Fault, operation: str
) -> None:
    """A fault before anything could land (the idempotency lease, a PutItem, failing in any
    way; the account update refused by throttling) is `SERVICE_BUSY`, never an unhandled
    function error; the caller's retry with the same key then charges exactly once."""
    faults.fail(fault, operation)

    busy = debit(funded)

    assert faults.raised >= 1
    assert busy["error"]["code"] == "SERVICE_BUSY"
    assert set(busy) == {"error"}
    faults.heal()
    charged = debit(funded)
    assert charged.get("error") is None, charged
    assert debit(funded)["replayed"] is True
    assert wiring.ledger().account(funded).balance == Decimal(6)


@pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
@pytest.mark.parametrize("fault", UNKNOWN_OUTCOME.values(), ids=UNKNOWN_OUTCOME.keys())
def test_an_account_update_of_unknown_outcome_is_a_typed_answer_too(
    funded: str, faults: Faults, fault: Fault
) -> None:
    """The account update timed out or failed on the server: it may have landed, so the write
    path holds the key (tests/integration/test_write_path_crashes.py proves it settles once)
    and the caller is told to retry with it: a typed answer, never a function error."""
    faults.fail(fault, "UpdateItem")

    answer = debit(funded)

    assert faults.raised >= 1
    assert answer["error"]["code"] in {"SERVICE_BUSY", "OPERATION_IN_PROGRESS"}
    assert wiring.ledger().account(funded).balance == Decimal(10)


# ---------------------------------------------------------------- the declined-call counter
@pytest.mark.parametrize(
    "fault",
    [throttled, read_timeout, connection_lost, server_error],
    ids=["throttled", "read-timeout", "connection-closed", "server-error"],
)
@pytest.mark.parametrize("operation", ["debit", "reserve"])
def test_a_failing_usage_write_never_changes_a_refusal(
    funded: str, faults: Faults, fault: Fault, operation: str
) -> None:
    """A debit or a reserve refused for funds counts a declined call in the day's usage; the
    counter's write failing (throttled, timed out, whatever) must leave the refusal as it
    was: the same typed error, nothing charged or held."""
    usage_writes: list[str] = []

    def fail_usage_writes(params: dict[str, Any], **_: Any) -> None:
        if params["Key"]["pk"]["S"].startswith("USAGE#"):
            usage_writes.append(params["Key"]["sk"]["S"])
            raise fault("UpdateItem")

    wiring.store().client.meta.events.register(
        "before-parameter-build.dynamodb.UpdateItem", fail_usage_writes
    )
    ledger = wiring.ledger()
    too_much = Decimal(1000)

    refuse: Callable[[], Any] = (
        (
            lambda: ledger.debit(
                DebitCommand(account_id=funded, idempotency_key="big", amount=too_much)
            )
        )
        if operation == "debit"
        else (
            lambda: ledger.holds.reserve(
                ReserveCommand(account_id=funded, idempotency_key="big", amount=too_much)
            )
        )
    )
    with pytest.raises(InsufficientCredits) as refused:
        refuse()

    assert usage_writes, "the declined call was never counted: the fault was never injected"
    assert refused.value.available == Decimal(10)
    account = ledger.account(funded)
    assert (account.balance, account.available, account.reserved) == (
        Decimal(10),
        Decimal(10),
        Decimal(0),
    )
    # The same refusal through the Debit function: a typed answer, not a function error.
    answer = debit(funded, "big-2", amount=1000, operation=operation)
    assert answer["error"]["code"] == "INSUFFICIENT_CREDITS"
