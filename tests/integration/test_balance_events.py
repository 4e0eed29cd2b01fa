"""Balance events on DynamoDB Local: the table's real stream, read by the event publisher
(`transport.streams.publish`) as the EventPublisherFunction's event source would deliver it,
the account item's real conditional auto-reload mark, and EventBridge's PutEvents stubbed
at the client (per-entry results, one injected failure)."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest

from devtools.streams import StreamPoller, streams_client_for
from serverless_credits import wiring
from serverless_credits.domain.commands import CreateAccountCommand, CreditCommand, DebitCommand
from serverless_credits.domain.errors import InsufficientCredits
from serverless_credits.integrations.eventbridge import EventBridgeBus
from serverless_credits.ledger.events import EventPublisher
from serverless_credits.storage.store import CreditsStore
from serverless_credits.transport import streams

pytestmark = pytest.mark.integration


class StubEventBridge:
    """`put_events` as EventBridge answers it; refuses the entries `refuse` picks, once."""

    def __init__(self, refuse: Callable[[dict[str, Any]], bool] = lambda _: False) -> None:
        self.refuse = refuse
        self.refused: list[str] = []
        self.accepted: list[dict[str, Any]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        assert len(Entries) <= 10
        results = []
        for entry in Entries:
            if self.refuse(entry) and entry["Detail"] not in self.refused:
                self.refused.append(entry["Detail"])
                results.append({"ErrorCode": "InternalFailure", "ErrorMessage": "injected"})
            else:
                self.accepted.append(entry)
                results.append({"EventId": f"eb-{len(self.accepted)}"})
        return {
            "FailedEntryCount": len(Entries) - sum("EventId" in r for r in results),
            "Entries": results,
        }

    def ids(self, detail_type: str | None = None) -> list[str]:
        return [
            json.loads(e["Detail"])["eventId"]
            for e in self.accepted
            if detail_type is None or e["DetailType"] == detail_type
        ]


class Events:
    def __init__(self, store: CreditsStore, client: StubEventBridge) -> None:
        self.client = client
        self.publisher = EventPublisher(
            EventBridgeBus(client, "bus"),
            store.accounts,
            store.idempotency,
            None,
            sleep=lambda _: None,
        )
        self.poller = StreamPoller(
            store.client,
            streams_client_for(store.client),
            store.table_name,
            lambda event: streams.publish(event, self.publisher)[0],
        )

    def drain(self) -> StubEventBridge:
        self.poller.drain()
        return self.client


def events_for(store: CreditsStore, **stub: Any) -> Events:
    return Events(store, StubEventBridge(**stub))


def debit(account_id: str, key: str, amount: str) -> None:
    wiring.ledger().debit(
        DebitCommand(account_id=account_id, idempotency_key=key, amount=Decimal(amount))
    )


def top_up(account_id: str, key: str, amount: str, reference: str | None = None) -> None:
    wiring.ledger().top_up(
        CreditCommand(
            account_id=account_id, idempotency_key=key, amount=Decimal(amount), reference=reference
        )
    )


def test_sixteen_writers_cross_the_threshold_once(local_store: CreditsStore) -> None:
    wiring.ledger().create_account(
        CreateAccountCommand(
            account_id="acct_race", opening_balance=Decimal(100), low_balance_threshold=Decimal(50)
        )
    )
    events = events_for(local_store)
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda i: debit("acct_race", f"d{i}", "5"), range(16)))  # 100 -> 20
    (low,) = events.drain().ids("Balance Low")  # exactly one, by whichever debit crossed
    assert low.startswith("acct_race:")
    assert low.endswith(":balance-low")
    # Up above the threshold and down again: exactly one more.
    top_up("acct_race", "t1", "100")  # 120
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda i: debit("acct_race", f"e{i}", "5"), range(16)))  # 120 -> 40
    lows = events.drain().ids("Balance Low")
    assert len(lows) == 2
    assert lows[0] == low
    assert len(set(lows)) == 2
    assert events.client.ids("Balance Depleted") == []


def test_a_refused_entry_is_retried_without_loss_or_duplicate(local_store: CreditsStore) -> None:
    wiring.ledger().create_account(
        CreateAccountCommand(
            account_id="acct_flaky", opening_balance=Decimal(30), low_balance_threshold=Decimal(20)
        )
    )
    events = events_for(local_store, refuse=lambda entry: entry["DetailType"] == "Balance Low")
    debit("acct_flaky", "d1", "15")  # 15: low
    debit("acct_flaky", "d2", "15")  # 0: depleted
    client = events.drain()
    assert len(client.refused) == 1  # the injected failure happened
    ids = client.ids()
    assert Counter(ids) == Counter(
        {"acct_flaky:2:balance-low": 1, "acct_flaky:3:balance-depleted": 1}
    )


def test_auto_reload_is_requested_once_until_its_top_up(local_store: CreditsStore) -> None:
    wiring.ledger().create_account(
        CreateAccountCommand(account_id="acct_reload", opening_balance=Decimal(100))
    )
    local_store.accounts.update_settings(
        "acct_reload",
        {
            "autoReloadEnabled": True,
            "autoReloadThreshold": Decimal(50),
            "autoReloadAmount": Decimal(200),
        },
    )
    events = events_for(local_store)

    def burst(prefix: str, count: int) -> None:
        def one(i: int) -> None:
            with contextlib.suppress(InsufficientCredits):
                debit("acct_reload", f"{prefix}{i}", "4")

        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(one, range(count)))

    burst("a", 20)  # 100 -> 20: one crossing, many debits below the threshold
    (request,) = events.drain().ids("Auto Reload Requested")
    account = local_store.accounts.get("acct_reload", consistent=True)
    assert account is not None
    assert account.auto_reload_pending is not None
    assert account.auto_reload_pending.request_id == request
    # A top-up that does not answer it lifts the balance; falling again requests nothing.
    top_up("acct_reload", "other", "60")  # 80
    burst("b", 10)  # 80 -> 40: a crossing, but a request is pending
    assert events.drain().ids("Auto Reload Requested") == [request]
    # The reload lands (its reference is the request id): the mark is cleared ...
    top_up("acct_reload", "reload-1", "200", reference=request)  # 240
    events.drain()
    account = local_store.accounts.get("acct_reload", consistent=True)
    assert account is not None
    assert account.auto_reload_pending is None
    # ... and a later crossing requests again.
    burst("c", 50)  # 240 -> 40
    requests = events.drain().ids("Auto Reload Requested")
    assert len(requests) == 2
    assert requests[0] == request
    assert requests[1] != request
