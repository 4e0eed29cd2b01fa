"""Balance events from an account change's images (domain.events): pure, no AWS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from serverless_credits.domain.events import (
    AUTO_RELOAD_TIMEOUT,
    SOURCE,
    BalanceEvent,
    EventKind,
    derive,
)
from serverless_credits.domain.models import Account, AccountStatus, AutoReloadPending

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def account(version: int = 1, available: str = "100", **changes: Any) -> Account:
    fields: dict[str, Any] = {
        "account_id": "acct_1",
        "created_at": T0,
        "updated_at": T0 + timedelta(seconds=version),
        "version": version,
        "available": Decimal(available),
        "balance": Decimal(available),
        "low_balance_threshold": Decimal(10),
        **changes,
    }
    return Account(**fields)


def kinds(events: list[BalanceEvent]) -> list[EventKind]:
    return [event.kind for event in events]


def step(before: str, after: str, version: int = 5, **changes: Any) -> list[BalanceEvent]:
    return derive(account(version - 1, before, **changes), account(version, after, **changes))


def test_balance_low_once_per_crossing() -> None:
    assert kinds(step("11", "10")) == [EventKind.BALANCE_LOW]  # at the threshold counts
    assert kinds(step("50", "3")) == [EventKind.BALANCE_LOW]
    assert step("10", "9") == []  # already low: no second event
    assert step("9", "8") == []
    assert step("5", "20") == []  # going up re-arms, silently
    assert step("50", "11") == []
    assert step("50", "3", low_balance_threshold=None) == []


def test_balance_low_event_figures_and_id() -> None:
    (event,) = step("12", "8")
    assert event.id == "acct_1:5:balance-low"
    assert event.source == SOURCE == "serverless-credits"
    assert event.detail_type == "Balance Low"
    envelope = event.envelope()
    assert envelope["id"] == "acct_1:5:balance-low"
    assert envelope["detail-type"] == "Balance Low"
    assert envelope["time"] == "2025-01-01T00:00:05Z"
    assert envelope["detail"] == {
        "eventId": "acct_1:5:balance-low",
        "accountId": "acct_1",
        "version": 5,
        "kind": "balance-low",
        "occurredAt": "2025-01-01T00:00:05Z",
        "available": 8,
        "balance": 8,
        "threshold": 10,
        "previousAvailable": 12,
    }


def test_the_same_change_gives_the_same_ids() -> None:
    assert [e.id for e in step("12", "0")] == [e.id for e in step("12", "0")]


def test_depleted_at_zero_or_the_overdraft_floor() -> None:
    assert kinds(step("5", "0")) == [EventKind.BALANCE_DEPLETED]
    assert kinds(step("20", "-1")) == [EventKind.BALANCE_LOW, EventKind.BALANCE_DEPLETED]
    assert step("0", "-1") == []
    overdraft: dict[str, Any] = {"overdraft_limit": Decimal(50)}
    assert step("5", "0", **overdraft) == []
    assert step("5", "-49", **overdraft) == []
    (event,) = step("-49", "-50", **overdraft)
    assert event.kind is EventKind.BALANCE_DEPLETED
    assert event.envelope()["detail"]["floor"] == -50  # type: ignore[index]


def reload_settings(**more: Any) -> dict[str, Any]:
    return {
        "auto_reload_enabled": True,
        "auto_reload_threshold": Decimal(20),
        "auto_reload_amount": Decimal(500),
        "low_balance_threshold": None,
        **more,
    }


def test_auto_reload_requested_on_crossing_with_amount() -> None:
    (event,) = step("25", "20", **reload_settings())
    assert event.kind is EventKind.AUTO_RELOAD_REQUESTED
    detail = event.envelope()["detail"]
    assert detail["amount"] == 500  # type: ignore[index]
    assert detail["requestId"] == event.id == "acct_1:5:auto-reload-requested"  # type: ignore[index]
    assert step("20", "19", **reload_settings()) == []  # no crossing
    assert step("25", "19", **reload_settings(auto_reload_enabled=False)) == []
    assert step("25", "19", **reload_settings(auto_reload_amount=None)) == []


def test_auto_reload_held_back_while_pending_until_the_timeout() -> None:
    recent = AutoReloadPending(request_id="acct_1:2:auto-reload-requested", at=T0)
    assert step("25", "19", **reload_settings(auto_reload_pending=recent)) == []
    old = account(9, "15", **reload_settings(auto_reload_pending=recent))
    late = T0 + AUTO_RELOAD_TIMEOUT + timedelta(seconds=1)
    new = account(10, "14", **reload_settings(auto_reload_pending=recent)).model_copy(
        update={"updated_at": late}
    )
    # Still below the threshold, the pending request timed out: requested once more.
    assert kinds(derive(old, new)) == [EventKind.AUTO_RELOAD_REQUESTED]
    in_time = new.model_copy(update={"updated_at": T0 + timedelta(minutes=5)})
    assert derive(old, in_time) == []


def test_status_changes_without_a_version_are_named_by_time() -> None:
    old = account(3, "50")
    new = old.model_copy(
        update={
            "status": AccountStatus.SUSPENDED,
            "status_reason": "chargeback",
            "updated_at": T0 + timedelta(hours=1),
            "updated_by": "ops",
        }
    )
    (event,) = derive(old, new)
    assert event.kind is EventKind.ACCOUNT_STATUS_CHANGED
    assert event.id == "acct_1:2025-01-01T01:00:00+00:00:account-status-changed"
    detail = event.envelope()["detail"]
    assert detail["status"] == "suspended"  # type: ignore[index]
    assert detail["previousStatus"] == "active"  # type: ignore[index]
    assert detail["version"] == 3  # type: ignore[index]
    flagged = old.model_copy(update={"flagged": True, "updated_at": T0 + timedelta(hours=2)})
    assert kinds(derive(old, flagged)) == [EventKind.ACCOUNT_STATUS_CHANGED]


def test_other_changes_cause_nothing() -> None:
    base = account(3, "50")
    assert derive(None, base) == []  # creation
    assert derive(base, None) == []  # removal
    threshold = base.model_copy(update={"low_balance_threshold": Decimal(80)})
    assert derive(base, threshold) == []  # settings: no version, no crossing
    pending = base.model_copy(
        update={"auto_reload_pending": AutoReloadPending(request_id="r", at=T0)}
    )
    assert derive(base, pending) == []  # the publisher's own mark
    assert derive(base, base) == []
