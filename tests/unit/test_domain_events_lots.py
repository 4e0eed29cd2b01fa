"""`Credits Expired` from an account change's images (domain.events): pure, no AWS.

The new image decides it: `lastOp.type` is `expiry`, `lastOp.lots` names the one lot and
what it lost, the new image's `lots` what the lot still holds (pinned by open holds) or
nothing (it left the item), and the lot id its expiry. The balance events of the same
version (low, depleted, auto-reload) come from `available` as for any other change."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # via schemathesis

from devtools.event_schemas import SCHEMAS
from serverless_credits.domain import money
from serverless_credits.domain.events import (
    BalanceEvent,
    EventKind,
    derive,
    event_from_envelope,
)
from serverless_credits.domain.lots import new_lot_id
from serverless_credits.domain.models import Account, EntryType, LastOp

T0 = datetime(2025, 1, 1, tzinfo=UTC)
EXPIRES = T0 + timedelta(days=30)
EXPIRING = new_lot_id(60, EXPIRES, T0, salt="aaaa")
LASTING = new_lot_id(50, None, T0, salt="bbbb")


def image(
    version: int,
    *,
    lots: dict[str, str] | None,
    reserved: str = "0",
    last_op: LastOp | None = None,
    **changes: Any,
) -> Account:
    remainders = {lot: Decimal(amount) for lot, amount in (lots or {}).items()}
    balance = sum(remainders.values(), Decimal(0))
    fields: dict[str, Any] = {
        "account_id": "acct_1",
        "created_at": T0,
        "updated_at": EXPIRES + timedelta(minutes=version),
        "version": version,
        "balance": balance,
        "reserved": Decimal(reserved),
        "available": balance - Decimal(reserved),
        "lots": remainders if lots is not None else None,
        "last_op": last_op,
        **changes,
    }
    return Account(**fields)


def op(entry_type: EntryType, lots: dict[str, str] | None, key: str = "k") -> LastOp:
    moved = {lot: Decimal(amount) for lot, amount in (lots or {}).items()} or None
    total = sum((moved or {}).values(), Decimal(0))
    return LastOp(id="op_1", key=key, type=entry_type, amount=total, at=EXPIRES, lots=moved)


def expired(lot: str, amount: str) -> LastOp:
    return op(EntryType.EXPIRY, {lot: f"-{amount}"}, key=f"expire:{lot}:{amount}")


def kinds(events: list[BalanceEvent]) -> list[EventKind]:
    return [event.kind for event in events]


# Before: 100 credits, 40 of them in the expiring lot.
BEFORE = image(4, lots={EXPIRING: "40", LASTING: "60"})


def test_an_expiry_emits_exactly_one_credits_expired_with_its_figures() -> None:
    after = image(5, lots={LASTING: "60"}, last_op=expired(EXPIRING, "40"))
    (event,) = derive(BEFORE, after)
    assert event.kind is EventKind.CREDITS_EXPIRED
    assert event.detail_type == "Credits Expired"
    assert event.id == "acct_1:5:credits-expired"
    envelope = event.envelope()
    assert envelope["time"] == "2025-01-31T00:05:00Z"
    assert envelope["detail"] == {
        "eventId": "acct_1:5:credits-expired",
        "accountId": "acct_1",
        "version": 5,
        "kind": "credits-expired",
        "occurredAt": "2025-01-31T00:05:00Z",
        "lotId": EXPIRING,
        "amount": 40,  # positive: what left the balance
        "remaining": 0,  # the lot left the item
        "expiresAt": "2025-01-31T00:00:00Z",  # from the lot id
        "available": 60,
        "balance": 60,
        "reserved": 0,
    }


def test_a_pinned_lot_reports_its_remainder_from_the_new_image() -> None:
    """Holds reserve 70 of 100: only 30 of the lot's 40 may expire; 10 stay pinned."""
    before = image(4, lots={EXPIRING: "40", LASTING: "60"}, reserved="70")
    after = image(
        5, lots={EXPIRING: "10", LASTING: "60"}, reserved="70", last_op=expired(EXPIRING, "30")
    )
    depleted, event = derive(before, after)  # available 30 -> 0: depleted too
    assert (depleted.kind, event.kind) == (EventKind.BALANCE_DEPLETED, EventKind.CREDITS_EXPIRED)
    detail = event.envelope()["detail"]
    assert (detail["amount"], detail["remaining"]) == (30, 10)  # type: ignore[index]
    assert (detail["balance"], detail["available"], detail["reserved"]) == (70, 0, 70)  # type: ignore[index]
    # The holds close; the next sweep takes the rest: a second event, its own version.
    freed = image(6, lots={EXPIRING: "10", LASTING: "60"})
    rest = image(7, lots={LASTING: "60"}, last_op=expired(EXPIRING, "10"))
    (second,) = derive(freed, rest)
    assert second.id == "acct_1:7:credits-expired"
    assert second.envelope()["detail"]["remaining"] == 0  # type: ignore[index]


def test_other_changes_of_lots_emit_no_credits_expired() -> None:
    debit = image(
        5, lots={EXPIRING: "10", LASTING: "60"}, last_op=op(EntryType.DEBIT, {EXPIRING: "-30"})
    )
    assert derive(BEFORE, debit) == []
    granted = image(
        5, lots={EXPIRING: "40", LASTING: "80"}, last_op=op(EntryType.GRANT, {LASTING: "20"})
    )
    assert derive(BEFORE, granted) == []
    # An expiry without its allocation (impossible: the write path always records it).
    bare = image(5, lots={LASTING: "60"}, last_op=op(EntryType.EXPIRY, None))
    assert derive(BEFORE, bare) == []


def test_the_next_change_after_an_expiry_is_judged_by_its_own_last_op() -> None:
    after = image(5, lots={LASTING: "60"}, last_op=expired(EXPIRING, "40"))
    spent = image(6, lots={LASTING: "50"}, last_op=op(EntryType.DEBIT, {LASTING: "-10"}))
    assert kinds(derive(BEFORE, after)) == [EventKind.CREDITS_EXPIRED]
    assert derive(after, spent) == []
    # A redelivery of the expiry (same images) is the same event, same id.
    assert derive(BEFORE, after) == derive(BEFORE, after)


def test_an_expiry_crossing_the_thresholds_emits_them_too() -> None:
    """The threshold events read `available` before and after, whatever moved it."""
    settings: dict[str, Any] = {
        "low_balance_threshold": Decimal(20),
        "auto_reload_enabled": True,
        "auto_reload_threshold": Decimal(10),
        "auto_reload_amount": Decimal(50),
    }
    before = image(4, lots={EXPIRING: "40"}, **settings)
    after = image(5, lots={}, last_op=expired(EXPIRING, "40"), **settings)
    assert kinds(derive(before, after)) == [
        EventKind.BALANCE_LOW,
        EventKind.BALANCE_DEPLETED,
        EventKind.AUTO_RELOAD_REQUESTED,
        EventKind.CREDITS_EXPIRED,
    ]
    assert {event.detail.version for event in derive(before, after)} == {5}


def test_the_detail_validates_against_its_schema_and_replays_whole() -> None:
    after = image(5, lots={EXPIRING: "0.25", LASTING: "60"}, last_op=expired(EXPIRING, "39.75"))
    (event,) = derive(BEFORE, after)
    schema = json.loads((SCHEMAS / "credits-expired.json").read_text(encoding="utf-8"))
    jsonschema.validate(event.envelope()["detail"], schema)
    assert event.envelope()["detail"]["amount"] == Decimal("39.75")  # type: ignore[index]
    # The replay queue keeps envelopes: one comes back as the same event, same id.
    assert event_from_envelope(json.loads(money.dumps(event.envelope()))) == event
