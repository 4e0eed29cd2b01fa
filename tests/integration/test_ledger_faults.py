"""Faults injected at the HTTP layer, on DynamoDB Local, through the library's own client
(botocore's standard retries, as `storage.items.connect` configures them): throttling,
responses lost after a write committed, and what the write path makes of each. There is no
retry loop of the ledger's own any more (one conditional update per change cannot conflict):
a throttled request is retried by botocore, an update whose outcome is unknown is never sent
twice, and the stream (the materializer) tells whether it landed.

Faults are injected on `before-send`, so botocore's retry handler sees them exactly as it
sees real ones: a throttle is an HTTP 400 answer (nothing applied); a lost response is the
real request sent and applied, then a read timeout instead of its answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any, cast

import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.exceptions import ReadTimeoutError
from botocore.httpsession import URLLib3Session

from serverless_credits import wiring
from serverless_credits.config import get_settings
from serverless_credits.domain.commands import CreateAccountCommand, DebitCommand, RefundCommand
from serverless_credits.domain.errors import OperationInProgress, ServiceBusy
from serverless_credits.domain.models import EntryType, utc_now
from serverless_credits.ledger.operations import Ledger
from serverless_credits.ledger.prices import PriceCatalog
from serverless_credits.storage import keys
from serverless_credits.storage.store import CreditsStore
from tests.integration.conftest import BackgroundMaterializer, LedgerAudit
from tests.support import Clock

pytestmark = pytest.mark.integration

ACCOUNT = "acct_faults"
Matcher = Callable[[dict[str, Any]], bool]


def account_update(body: dict[str, Any]) -> bool:
    """The write path's one update of the account item (not a settings change)."""
    return body.get("Key", {}).get("sk", {}).get("S") == keys.ACCOUNT_SK and "lastOp" in str(
        body.get("UpdateExpression", "")
    )


def lease_put(body: dict[str, Any]) -> bool:
    return str(body.get("Item", {}).get("pk", {}).get("S", "")).startswith("IDEMPOTENCY#")


class _Body:
    def __init__(self, content: bytes) -> None:
        self.content = content

    def stream(self, **_: Any) -> Any:
        return iter([self.content])


class Faults:
    """Fails chosen requests of one operation on a client, as the network or DynamoDB would."""

    def __init__(self, store: CreditsStore, operation: str, matches: Matcher) -> None:
        self.events = store.client.meta.events
        self.event = f"before-send.dynamodb.{operation}"
        self.matches = matches
        self.attempts = 0  # matching requests botocore tried to send
        self.faults = 0
        self.statuses: list[int] = []  # answers DynamoDB gave to requests whose answer was lost
        self._http = URLLib3Session()
        self._handlers: list[Callable[..., Any]] = []

    def _register(self, handler: Callable[..., Any]) -> None:
        self._handlers.append(handler)
        self.events.register(self.event, handler)

    def stop(self) -> None:
        for handler in self._handlers:
            self.events.unregister(self.event, handler)

    def _matching(self, request: AWSPreparedRequest) -> bool:
        if not self.matches(json.loads(cast(bytes, request.body or b"{}"))):
            return False
        self.attempts += 1
        return True

    def throttle(self, times: int) -> None:
        """The first `times` matching requests are refused with HTTP 400 throttling."""

        def handler(request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
            if not self._matching(request) or self.faults >= times:
                return None
            self.faults += 1
            body = json.dumps(
                {
                    "__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException",
                    "message": "Rate of requests exceeds the allowed throughput.",
                }
            ).encode()
            headers = {"x-amzn-RequestId": f"throttled-{self.faults}"}
            return AWSResponse(request.url, 400, headers, _Body(body))  # type: ignore[arg-type]

        self._register(handler)

    def lose_response(self, times: int) -> None:
        """The first `times` matching requests reach DynamoDB and are applied; the caller
        gets a read timeout instead of the answer."""

        def handler(request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
            if not self._matching(request) or self.faults >= times:
                return None
            self.faults += 1
            self.statuses.append(self._http.send(request).status_code)
            raise ReadTimeoutError(endpoint_url=request.url)

        self._register(handler)


@pytest.fixture
def clock() -> Clock:
    return Clock(utc_now())


@pytest.fixture
def ledger(local_store: CreditsStore, clock: Clock) -> Ledger:
    ledger = make_ledger(local_store, clock)
    ledger.create_account(CreateAccountCommand(account_id=ACCOUNT, opening_balance=Decimal(100)))
    return ledger


def make_ledger(store: CreditsStore, clock: Clock) -> Ledger:
    """A function instance on the library's own client (`connect()`, botocore retries on)."""
    return wiring.build_ledger(store, PriceCatalog(store.catalog, 60), get_settings(), clock=clock)


def charge(amount: str = "4", key: str = "charge-1") -> DebitCommand:
    return DebitCommand(
        account_id=ACCOUNT, idempotency_key=key, amount=Decimal(amount), endpoint="/v1/x"
    )


# What `storage.items.connect` gives botocore: attempts per request, the first included.
TOTAL_ATTEMPTS = 4


def test_the_librarys_client_retries_as_these_tests_assume(local_store: CreditsStore) -> None:
    assert getattr(local_store.client.meta.config, "retries", None) == {
        "mode": "standard",
        "total_max_attempts": TOTAL_ATTEMPTS,
    }


def past_the_lease(clock: Clock) -> None:
    clock.now += timedelta(seconds=get_settings().lease_seconds + 1)


@pytest.mark.parametrize("throttles", [1, 2])
def test_throttling_within_botocores_retries_is_absorbed_and_the_debit_applies_once(
    ledger: Ledger, local_store: CreditsStore, audit: LedgerAudit, throttles: int
) -> None:
    faults = Faults(local_store, "UpdateItem", account_update)
    faults.throttle(throttles)

    result = ledger.debit(charge())

    assert (faults.faults, faults.attempts) == (throttles, throttles + 1)
    assert (result.replayed, result.balance_after) == (False, Decimal(96))
    snapshot = audit.check(ACCOUNT)
    assert snapshot.account.balance == 96
    [entry] = snapshot.of_type(EntryType.DEBIT)
    assert entry.transaction_id == result.transaction_id
    usage = audit.usage(ACCOUNT)
    assert (usage.calls, usage.credits_used) == (1, Decimal(4))


def test_persistent_throttling_fails_cleanly_charges_nothing_and_frees_the_key(
    ledger: Ledger,
    local_store: CreditsStore,
    audit: LedgerAudit,
    clock: Clock,
) -> None:
    faults = Faults(local_store, "UpdateItem", account_update)
    faults.throttle(1_000)

    with pytest.raises(ServiceBusy):
        ledger.debit(charge())

    # botocore's budget, and no retry loop of the ledger's own.
    assert faults.attempts == faults.faults == TOTAL_ATTEMPTS
    snapshot = audit.check(ACCOUNT)
    assert snapshot.account.balance == 100
    assert snapshot.of_type(EntryType.DEBIT) == []
    # A throttled update was refused, not applied: its lease is released at once.
    assert local_store.idempotency.get(ACCOUNT, "charge-1") is None

    faults.stop()  # the throttling is over
    # The caller's retry with the same key applies it, once, without waiting out a lease.
    result = make_ledger(local_store, clock).debit(charge())

    assert (result.replayed, result.balance_after) == (False, Decimal(96))
    snapshot = audit.check(ACCOUNT)
    assert snapshot.account.balance == 96
    assert [e.transaction_id for e in snapshot.of_type(EntryType.DEBIT)] == [result.transaction_id]
    assert audit.usage(ACCOUNT, clock.now.date() - timedelta(days=1), clock.now.date()).calls == 1


def test_a_lost_response_after_the_account_update_is_never_sent_again(
    ledger: Ledger,
    local_store: CreditsStore,
    audit: LedgerAudit,
    background_materializer: BackgroundMaterializer,
) -> None:
    """botocore retries a read timeout by sending the request again: for the account's
    ADD that would charge twice. The write path learns the outcome from the stream instead,
    and returns its own result."""
    faults = Faults(local_store, "UpdateItem", account_update)
    faults.lose_response(1)

    result = ledger.debit(charge())

    assert faults.statuses == [200]  # it was applied; only the answer was lost
    assert faults.attempts == 1, "the update was sent again"
    assert (result.replayed, result.balance_after) == (False, Decimal(96))
    background_materializer.stop()
    snapshot = audit.check(ACCOUNT)
    assert snapshot.account.balance == 96
    [entry] = snapshot.of_type(EntryType.DEBIT)
    assert (entry.transaction_id, entry.balance_after) == (result.transaction_id, Decimal(96))
    assert audit.usage(ACCOUNT).calls == 1
    again = make_ledger(local_store, Clock(utc_now())).debit(charge())
    assert again == result.model_copy(update={"replayed": True})


def test_a_lost_response_without_the_materializer_is_in_progress_then_replays(
    ledger: Ledger,
    local_store: CreditsStore,
    audit: LedgerAudit,
    local_materialize: Callable[[], int],
) -> None:
    faults = Faults(local_store, "UpdateItem", account_update)
    faults.lose_response(1)

    with pytest.raises(OperationInProgress):
        ledger.debit(charge())  # waits its budget for the stream, which nobody reads here

    assert (faults.statuses, faults.attempts) == ([200], 1)
    assert local_store.accounts.get(ACCOUNT, consistent=True).balance == 96  # type: ignore[union-attr]
    with pytest.raises(OperationInProgress):
        make_ledger(local_store, Clock(utc_now())).debit(charge())
    local_materialize()  # the materializer completes the record from the stream
    retried = make_ledger(local_store, Clock(utc_now())).debit(charge())

    assert (retried.replayed, retried.balance_after) == (True, Decimal(96))
    snapshot = audit.check(ACCOUNT)
    assert snapshot.account.balance == 96
    assert [e.transaction_id for e in snapshot.of_type(EntryType.DEBIT)] == [retried.transaction_id]
    assert audit.usage(ACCOUNT).calls == 1


def test_a_refund_whose_response_was_lost_is_applied_once(
    ledger: Ledger,
    local_store: CreditsStore,
    audit: LedgerAudit,
    local_materialize: Callable[[], int],
    background_materializer: BackgroundMaterializer,
) -> None:
    charged = ledger.debit(charge("10"))
    faults = Faults(local_store, "UpdateItem", account_update)
    faults.lose_response(1)

    refunded = ledger.refund(
        RefundCommand(
            account_id=ACCOUNT,
            idempotency_key="refund-1",
            transaction_id=charged.transaction_id,
            amount=Decimal(4),
        )
    )

    assert (faults.statuses, faults.attempts) == ([200], 1)
    assert (refunded.replayed, refunded.balance_after) == (False, Decimal(94))
    background_materializer.stop()
    snapshot = audit.check(ACCOUNT)
    assert snapshot.account.balance == 94
    assert [e.transaction_id for e in snapshot.of_type(EntryType.REFUND)] == [
        refunded.transaction_id
    ]
    assert local_store.refunds.refunded(ACCOUNT, charged.transaction_id) == 4
    usage = audit.usage(ACCOUNT)
    assert (usage.calls, usage.credits_used) == (1, Decimal(6))


def test_a_lost_response_to_the_lease_is_recognised_as_our_own_lease(
    ledger: Ledger, local_store: CreditsStore, audit: LedgerAudit
) -> None:
    """botocore sends the lease's PutItem again after a read timeout: the second one finds
    the record the first one wrote, which is this very request's lease, not another's."""
    faults = Faults(local_store, "PutItem", lease_put)
    faults.lose_response(1)

    result = ledger.debit(charge())

    assert (faults.statuses, faults.attempts) == ([200], 2)
    assert (result.replayed, result.balance_after) == (False, Decimal(96))
    snapshot = audit.check(ACCOUNT)
    assert snapshot.account.balance == 96
    assert [e.transaction_id for e in snapshot.of_type(EntryType.DEBIT)] == [result.transaction_id]
