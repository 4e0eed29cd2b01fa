"""`Hold Expired` on DynamoDB Local: holds reserved on a settable clock, the clock moved past
their expiry, the ExpirerFunction's `ledger.holds.sweep()` over the real expiry index (HOLD
items written by the materializer from the stream), and the event publisher reading the
table's real stream with EventBridge's PutEvents stubbed at the client
(tests/integration/test_balance_events.py)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from serverless_credits import wiring
from serverless_credits.domain.commands import (
    CaptureCommand,
    CreateAccountCommand,
    ReleaseCommand,
    ReserveCommand,
)
from serverless_credits.domain.models import utc_now
from serverless_credits.ledger.operations import Ledger
from serverless_credits.storage.store import CreditsStore
from tests.integration.test_balance_events import events_for
from tests.support import Clock

pytestmark = pytest.mark.integration


@pytest.fixture
def clock() -> Clock:
    return Clock(utc_now())


@pytest.fixture
def ledger(local_store: CreditsStore, clock: Clock) -> Ledger:
    return wiring.build_ledger(local_store, wiring.prices(), clock=clock)


def reserve(ledger: Ledger, account_id: str, key: str, amount: str, seconds: int) -> str:
    result = ledger.holds.reserve(
        ReserveCommand(
            account_id=account_id,
            idempotency_key=key,
            amount=Decimal(amount),
            expires_in=seconds,
        )
    )
    assert result.hold_id is not None
    return result.hold_id


def details(accepted: list[dict[str, Any]], detail_type: str) -> list[dict[str, Any]]:
    return [json.loads(e["Detail"]) for e in accepted if e["DetailType"] == detail_type]


def test_an_expired_hold_is_published_once_with_its_figures(
    local_store: CreditsStore,
    ledger: Ledger,
    clock: Clock,
    local_materialize: Callable[[], int],
) -> None:
    """Three holds, one of each ending: only the one the sweep expires is an event."""
    ledger.create_account(CreateAccountCommand(account_id="acct_exp", opening_balance=Decimal(100)))
    expiring = reserve(ledger, "acct_exp", "r1", "30", seconds=60)
    released = reserve(ledger, "acct_exp", "r2", "10", seconds=60)
    captured = reserve(ledger, "acct_exp", "r3", "20", seconds=3600)
    ledger.holds.release(
        ReleaseCommand(account_id="acct_exp", idempotency_key="rel", hold_id=released)
    )
    ledger.holds.capture(
        CaptureCommand(
            account_id="acct_exp", idempotency_key="cap", hold_id=captured, amount=Decimal(15)
        )
    )
    opened = local_store.accounts.get("acct_exp", consistent=True)
    assert opened is not None
    assert opened.holds is not None
    expires_at = opened.holds[expiring].expires
    events = events_for(local_store)
    assert events.drain().accepted == []  # reserving, releasing, capturing: no event

    local_materialize()  # the HOLD items and the expiry index, from the stream
    clock.now += timedelta(seconds=61)
    report = ledger.holds.sweep()
    assert (report.due, report.expired, report.failed) == (1, 1, 0)

    client = events.drain()
    after = local_store.accounts.get("acct_exp", consistent=True)
    assert after is not None
    assert [e["DetailType"] for e in client.accepted] == ["Hold Expired"]
    (detail,) = details(client.accepted, "Hold Expired")
    assert detail == {
        "eventId": f"acct_exp:{after.version}:hold-expired",
        "accountId": "acct_exp",
        "version": after.version,
        "kind": "hold-expired",
        "occurredAt": after.updated_at.isoformat().replace("+00:00", "Z"),
        "holdId": expiring,
        "amount": 30,
        "expiresAt": expires_at.isoformat().replace("+00:00", "Z"),
        "available": 85,  # 100, less the 15 captured; nothing held any more
        "balance": 85,
        "reserved": 0,
    }
    assert (after.available, after.balance, after.reserved) == (
        Decimal(85),
        Decimal(85),
        Decimal(0),
    )

    # Once the expiry is materialized nothing more is due; a second consumer reading the
    # whole stream again (a redelivery) publishes the same event under the same id.
    local_materialize()
    assert ledger.holds.sweep().due == 0
    assert events.drain().ids("Hold Expired") == [detail["eventId"]]
    assert events_for(local_store).drain().ids() == [detail["eventId"]]


def test_a_refused_hold_expired_is_retried_without_a_duplicate(
    local_store: CreditsStore,
    ledger: Ledger,
    clock: Clock,
    local_materialize: Callable[[], int],
) -> None:
    ledger.create_account(
        CreateAccountCommand(account_id="acct_flaky_hold", opening_balance=Decimal(50))
    )
    first = reserve(ledger, "acct_flaky_hold", "r1", "20", seconds=30)
    second = reserve(ledger, "acct_flaky_hold", "r2", "5", seconds=30)
    local_materialize()
    clock.now += timedelta(seconds=31)
    assert ledger.holds.sweep().expired == 2
    events = events_for(
        local_store, refuse=lambda entry: json.loads(entry["Detail"]).get("holdId") == first
    )
    client = events.drain()
    assert len(client.refused) == 1  # the injected failure happened, and was retried
    expired = details(client.accepted, "Hold Expired")
    assert Counter(d["eventId"] for d in expired) == Counter(
        {f"acct_flaky_hold:{v}:hold-expired": 1 for v in (4, 5)}
    )
    assert {d["holdId"]: d["amount"] for d in expired} == {first: 20, second: 5}
    # The sweep expires them in either order: the later version leaves nothing reserved.
    by_version = {d["version"]: d for d in expired}
    assert by_version[4]["reserved"] == by_version[5]["amount"]
    assert by_version[5]["reserved"] == 0
    assert by_version[5]["available"] == by_version[5]["balance"] == 50
