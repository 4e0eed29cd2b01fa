"""`Credits Expired` on DynamoDB Local: lots granted with an expiry on a settable clock, the
clock moved past it, the ExpirerFunction's `ledger.lots.sweep()` over the real expiry index
(LOT items written by the materializer from the stream), and the event publisher reading the
table's real stream with EventBridge's PutEvents stubbed at the client
(tests/integration/test_balance_events.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from serverless_credits import wiring
from serverless_credits.domain.commands import (
    CreateAccountCommand,
    CreditCommand,
    DebitCommand,
    ReleaseCommand,
    ReserveCommand,
)
from serverless_credits.domain.lots import rank_of
from serverless_credits.domain.models import Account, utc_now
from serverless_credits.ledger.operations import Ledger
from serverless_credits.storage.store import CreditsStore
from tests.integration.test_balance_events import events_for
from tests.support import Clock

pytestmark = pytest.mark.integration

HOUR = timedelta(hours=1)


@pytest.fixture
def clock() -> Clock:
    return Clock(utc_now())


@pytest.fixture
def ledger(local_store: CreditsStore, clock: Clock) -> Ledger:
    return wiring.build_ledger(local_store, wiring.prices(), clock=clock)


def grant(ledger: Ledger, account_id: str, key: str, amount: str, expires_at: datetime) -> str:
    """Grant `amount` expiring at `expires_at`; the lot it opened."""
    result = ledger.grant(
        CreditCommand(
            account_id=account_id,
            idempotency_key=key,
            amount=Decimal(amount),
            expires_at=expires_at,
        )
    )
    assert result.lots is not None
    (lot_id,) = [lot for lot, moved in result.lots.items() if moved > 0]
    return lot_id


def account(store: CreditsStore, account_id: str) -> Account:
    found = store.accounts.get(account_id, consistent=True)
    assert found is not None
    return found


def details(accepted: list[dict[str, Any]], detail_type: str) -> list[dict[str, Any]]:
    return [json.loads(e["Detail"]) for e in accepted if e["DetailType"] == detail_type]


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_an_expired_lot_is_published_once_with_its_figures(
    local_store: CreditsStore,
    ledger: Ledger,
    clock: Clock,
    local_materialize: Callable[[], int],
) -> None:
    """A partly spent lot expires in one sweep: one event, its remainder, the lot gone."""
    ledger.create_account(CreateAccountCommand(account_id="acct_lx", opening_balance=Decimal(100)))
    expiring = grant(ledger, "acct_lx", "g1", "40", clock.now + HOUR)
    spent = ledger.debit(
        DebitCommand(account_id="acct_lx", idempotency_key="d1", amount=Decimal(15))
    )
    assert spent.lots == {expiring: Decimal(-15)}  # the grant's priority burns it first
    events = events_for(local_store)
    assert events.drain().accepted == []  # granting, spending: no event

    local_materialize()  # the LOT items and the expiry index, from the stream
    clock.now += HOUR + timedelta(seconds=1)
    report = ledger.lots.sweep()
    assert (report.due, report.expired, report.pinned, report.failed) == (1, 1, 0, 0)

    client = events.drain()
    after = account(local_store, "acct_lx")
    assert expiring not in (after.lots or {})
    assert [e["DetailType"] for e in client.accepted] == ["Credits Expired"]
    (detail,) = details(client.accepted, "Credits Expired")
    rank = rank_of(expiring)
    assert rank is not None
    assert rank.expires is not None
    assert detail == {
        "eventId": f"acct_lx:{after.version}:credits-expired",
        "accountId": "acct_lx",
        "version": after.version,
        "kind": "credits-expired",
        "occurredAt": iso(after.updated_at),
        "lotId": expiring,
        "amount": 25,  # 40 granted, 15 spent
        "remaining": 0,
        "expiresAt": iso(rank.expires),
        "available": 100,  # the opening balance's lot, untouched
        "balance": 100,
        "reserved": 0,
    }

    # Once the expiry is materialized nothing more is due; a second consumer reading the
    # whole stream again (a redelivery) publishes the same event under the same id.
    local_materialize()
    assert ledger.lots.sweep().due == 0
    assert events.drain().ids("Credits Expired") == [detail["eventId"]]
    assert events_for(local_store).drain().ids() == [detail["eventId"]]


def test_a_pinned_lot_expires_in_two_events_as_its_holds_close(
    local_store: CreditsStore,
    ledger: Ledger,
    clock: Clock,
    local_materialize: Callable[[], int],
) -> None:
    """A hold reserves 30 of the lot's 40: the first sweep takes 10 and reports 30 pinned;
    once the hold is released the next sweep takes those 30."""
    ledger.create_account(CreateAccountCommand(account_id="acct_pin"))
    expiring = grant(ledger, "acct_pin", "g1", "40", clock.now + HOUR)
    hold = ledger.holds.reserve(
        ReserveCommand(
            account_id="acct_pin",
            idempotency_key="r1",
            amount=Decimal(30),
            expires_in=3 * 3600,
        )
    )
    assert hold.hold_id is not None
    local_materialize()
    clock.now += HOUR + timedelta(seconds=1)
    first = ledger.lots.sweep()
    assert (first.due, first.expired, first.failed) == (1, 1, 0)
    assert account(local_store, "acct_pin").lots == {expiring: Decimal(30)}

    ledger.holds.release(
        ReleaseCommand(account_id="acct_pin", idempotency_key="rel", hold_id=hold.hold_id)
    )
    local_materialize()
    second = ledger.lots.sweep()
    assert (second.due, second.expired, second.failed) == (1, 1, 0)
    assert account(local_store, "acct_pin").lots in ({}, None)

    expired = details(events_for(local_store).drain().accepted, "Credits Expired")
    assert [(d["lotId"], d["amount"], d["remaining"], d["reserved"]) for d in expired] == [
        (expiring, 10, 30, 30),  # the hold's 30 stay pinned
        (expiring, 30, 0, 0),
    ]
    assert len({d["eventId"] for d in expired}) == 2
    assert expired[-1]["balance"] == expired[-1]["available"] == 0


def test_an_expiry_below_the_thresholds_raises_the_balance_events(
    local_store: CreditsStore,
    ledger: Ledger,
    clock: Clock,
    local_materialize: Callable[[], int],
) -> None:
    """No debit: the expiry alone takes `available` below the low-balance and auto-reload
    thresholds and to zero; each event once, all named by the expiry's version."""
    ledger.create_account(
        CreateAccountCommand(account_id="acct_lxt", low_balance_threshold=Decimal(50))
    )
    local_store.accounts.update_settings(
        "acct_lxt",
        {
            "autoReloadEnabled": True,
            "autoReloadThreshold": Decimal(30),
            "autoReloadAmount": Decimal(100),
        },
    )
    grant(ledger, "acct_lxt", "g1", "60", clock.now + HOUR)
    events = events_for(local_store)
    assert events.drain().accepted == []  # going up crosses nothing

    local_materialize()
    clock.now += HOUR + timedelta(seconds=1)
    assert ledger.lots.sweep().expired == 1
    client = events.drain()
    after = account(local_store, "acct_lxt")
    assert (after.balance, after.available) == (Decimal(0), Decimal(0))
    assert sorted(e["DetailType"] for e in client.accepted) == [
        "Auto Reload Requested",
        "Balance Depleted",
        "Balance Low",
        "Credits Expired",
    ]
    assert {json.loads(e["Detail"])["version"] for e in client.accepted} == {after.version}
    (low,) = details(client.accepted, "Balance Low")
    assert (low["previousAvailable"], low["available"], low["threshold"]) == (60, 0, 50)
    (reload,) = details(client.accepted, "Auto Reload Requested")
    assert after.auto_reload_pending is not None
    assert after.auto_reload_pending.request_id == reload["requestId"]
    # A redelivery of the whole stream publishes nothing new (ids, and the pending mark).
    assert sorted(events_for(local_store).drain().ids()) == sorted(
        json.loads(e["Detail"])["eventId"] for e in client.accepted
    )
