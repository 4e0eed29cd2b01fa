"""The Expirer Lambda handler in-process (Powertools Logger and Metrics around it) on moto, fed
`events/expirer-schedule.json`, the EventBridge Scheduled Event its `rate(1 minute)` schedule
sends (`sam local invoke ExpirerFunction -e ...`). It sweeps with the real clock: the holds
it should expire are made by a ledger whose clock is in the past."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from functions.expirer import app
from serverless_credits import wiring
from serverless_credits.domain.commands import CreateAccountCommand, CreditCommand, ReserveCommand
from serverless_credits.domain.models import EntryType, HoldStatus, ReleaseReason, utc_now
from serverless_credits.storage.store import CreditsStore
from tests.support import Clock
from tests.unit.test_debit_function import emitted_metrics

EVENTS = Path(__file__).resolve().parents[2] / "events"
ACCOUNT = "acct_expirer"
NO_LOTS_DUE = {"due": 0, "expired": 0, "pinned": 0, "gone": 0, "failed": 0}
NOTHING_DUE = {"due": 0, "expired": 0, "alreadyClosed": 0, "failed": 0, "lots": NO_LOTS_DUE}


@dataclass(frozen=True)
class FakeLambdaContext:
    function_name: str = "serverless-credits-dev-ExpirerFunction"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:123456789012:function:serverless-credits-dev-ExpirerFunction"
    )
    aws_request_id: str = "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"


def schedule_event() -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / "expirer-schedule.json").read_text())
    return event


def invoke(event: Any) -> dict[str, Any]:
    response: dict[str, Any] = app.lambda_handler(event, FakeLambdaContext())
    return response


@pytest.fixture
def account(moto_store: CreditsStore) -> str:
    wiring.ledger().create_account(
        CreateAccountCommand(account_id=ACCOUNT, opening_balance=Decimal(100))
    )
    return ACCOUNT


def reserve_at(store: CreditsStore, ago: timedelta, amount: int, expires_in: int, key: str) -> str:
    """A hold made `ago` before now, for `expires_in` seconds."""
    ledger = wiring.build_ledger(store, wiring.prices(), clock=Clock(utc_now() - ago))
    result = ledger.holds.reserve(
        ReserveCommand(
            account_id=ACCOUNT,
            idempotency_key=key,
            amount=Decimal(amount),
            expires_in=expires_in,
        )
    )
    assert result.hold_id is not None
    return result.hold_id


def test_the_schedule_event_is_what_eventbridge_sends() -> None:
    event = schedule_event()

    assert (event["source"], event["detail-type"], event["detail"]) == (
        "aws.events",
        "Scheduled Event",
        {},
    )
    assert event["resources"][0].startswith("arn:aws:events:")
    assert "ExpirerFunction" in event["resources"][0]


def test_the_schedule_with_nothing_due_sweeps_nothing(
    account: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert invoke(schedule_event()) == NOTHING_DUE
    assert emitted_metrics(capsys.readouterr().out) == {
        "HoldsExpired": [0],
        "HoldExpiriesFailed": [0],
        "LotsExpired": [0],
        "LotExpiriesFailed": [0],
    }


def test_the_schedule_releases_a_due_hold_once_and_leaves_the_others(
    account: str,
    moto_store: CreditsStore,
    materialize: Callable[[], int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    due = reserve_at(moto_store, timedelta(minutes=10), 30, expires_in=60, key="due")
    live = reserve_at(moto_store, timedelta(0), 20, expires_in=3600, key="live")
    materialize()  # their HOLD items, in the expiry index
    capsys.readouterr()

    report = invoke(schedule_event())

    assert report == {
        "due": 1,
        "expired": 1,
        "alreadyClosed": 0,
        "failed": 0,
        "lots": NO_LOTS_DUE,
    }
    assert emitted_metrics(capsys.readouterr().out) == {
        "HoldsExpired": [1],
        "HoldExpiriesFailed": [0],
        "LotsExpired": [0],
        "LotExpiriesFailed": [0],
    }
    stored = moto_store.accounts.get(ACCOUNT, consistent=True)
    assert stored is not None
    assert (stored.balance, stored.reserved, stored.available) == (
        Decimal(100),
        Decimal(20),
        Decimal(80),
    )
    assert set(stored.holds or {}) == {live}
    materialize()
    expired = moto_store.holds.get(ACCOUNT, due)
    assert expired is not None
    assert (expired.status, expired.released) == (HoldStatus.EXPIRED, Decimal(30))
    entries, _ = moto_store.entries.page(ACCOUNT, limit=10, newest_first=False)
    assert [(e.type, e.reason) for e in entries] == [
        (EntryType.GRANT, None),
        (EntryType.HOLD, None),
        (EntryType.HOLD, None),
        (EntryType.RELEASE, ReleaseReason.EXPIRED),
    ]
    # The next minute's run finds nothing left to expire.
    assert invoke(schedule_event()) == NOTHING_DUE
    assert moto_store.accounts.get(ACCOUNT, consistent=True) == stored


def test_the_schedule_expires_a_due_lot_once(
    account: str,
    moto_store: CreditsStore,
    materialize: Callable[[], int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    granted_at = utc_now() - timedelta(hours=2)
    promo = wiring.build_ledger(moto_store, wiring.prices(), clock=Clock(granted_at)).grant(
        CreditCommand(
            account_id=ACCOUNT,
            idempotency_key="promo",
            amount=Decimal(25),
            expires_at=granted_at + timedelta(hours=1),
        )
    )
    materialize()  # its LOT item, in the expiry index
    capsys.readouterr()

    report = invoke(schedule_event())

    assert report["lots"] == {**NO_LOTS_DUE, "due": 1, "expired": 1}
    assert emitted_metrics(capsys.readouterr().out)["LotsExpired"] == [1]
    stored = moto_store.accounts.get(ACCOUNT, consistent=True)
    assert stored is not None
    assert stored.balance == 100  # the opening balance's lot stays; the promo is gone
    assert set(stored.lots or {}).isdisjoint(promo.lots or {})
    assert invoke(schedule_event()) == NOTHING_DUE  # out of the index once expired


@pytest.mark.parametrize("event", [{}, None, []])
def test_the_handler_does_not_depend_on_the_event(account: str, event: Any) -> None:
    """A schedule's `Input`, a manual invoke without payload: the sweep is the same."""
    assert invoke(event) == NOTHING_DUE
