"""`Hold Expired` from an account change's images (domain.events): pure, no AWS.

The images alone decide it: the old image's `holds` entry gives the amount and the expiry,
the new image's `lastOp.reason` tells an expiry from an ordinary release, and a capture or
a release of the same hold changes the same map without a reason."""

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
from serverless_credits.domain.models import (
    Account,
    EntryType,
    LastOp,
    OpenHold,
    ReleaseReason,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
EXPIRES = T0 + timedelta(minutes=5)
HOLD = "hold_00000000000000aa"
OTHER = "hold_00000000000000bb"


def held(amount: str, expires: datetime = EXPIRES) -> OpenHold:
    return OpenHold.model_validate(
        {"a": Decimal(amount), "x": int(expires.timestamp()), "c": int(T0.timestamp())}
    )


def image(
    version: int,
    *,
    balance: str,
    reserved: str,
    holds: dict[str, OpenHold] | None,
    last_op: LastOp | None = None,
    **changes: Any,
) -> Account:
    fields: dict[str, Any] = {
        "account_id": "acct_1",
        "created_at": T0,
        "updated_at": T0 + timedelta(minutes=version),
        "version": version,
        "balance": Decimal(balance),
        "reserved": Decimal(reserved),
        "available": Decimal(balance) - Decimal(reserved),
        "holds": holds,
        "last_op": last_op,
        **changes,
    }
    return Account(**fields)


def op(
    entry_type: EntryType, amount: str = "0", reason: ReleaseReason | None = None, key: str = "k"
) -> LastOp:
    return LastOp(id="op_1", key=key, type=entry_type, amount=Decimal(amount), at=T0, reason=reason)


# Before: 100 credits, 30 of them held by HOLD (and 5 by OTHER in some tests).
BEFORE = image(4, balance="100", reserved="30", holds={HOLD: held("30")})


def expiry(before: Account = BEFORE, **changes: Any) -> Account:
    """The version the ExpirerFunction writes: the hold leaves the map, reason `expired`."""
    remaining = {k: v for k, v in (before.holds or {}).items() if k != HOLD}
    fields: dict[str, Any] = {
        "balance": str(before.balance),
        "reserved": str(before.reserved - Decimal(30)),
        "holds": remaining,
        "last_op": op(EntryType.RELEASE, reason=ReleaseReason.EXPIRED, key=f"expire:{HOLD}"),
        **changes,
    }
    return image(before.version + 1, **fields)


def kinds(events: list[BalanceEvent]) -> list[EventKind]:
    return [event.kind for event in events]


def test_an_expiry_emits_exactly_one_hold_expired_with_its_figures() -> None:
    (event,) = derive(BEFORE, expiry())
    assert event.kind is EventKind.HOLD_EXPIRED
    assert event.detail_type == "Hold Expired"
    assert event.id == "acct_1:5:hold-expired"
    envelope = event.envelope()
    assert envelope["time"] == "2025-01-01T00:05:00Z"
    assert envelope["detail"] == {
        "eventId": "acct_1:5:hold-expired",
        "accountId": "acct_1",
        "version": 5,
        "kind": "hold-expired",
        "occurredAt": "2025-01-01T00:05:00Z",
        "holdId": HOLD,
        "amount": 30,  # what it held, back in available
        "expiresAt": "2025-01-01T00:05:00Z",  # from the old image's `x`
        "available": 100,
        "balance": 100,
        "reserved": 0,
    }


def test_an_ordinary_release_or_a_capture_emits_nothing() -> None:
    released = expiry(last_op=op(EntryType.RELEASE, reason=None))
    assert derive(BEFORE, released) == []
    # Captures 20 of the 30: balance 80, nothing reserved, available 80.
    captured = expiry(balance="80", last_op=op(EntryType.CAPTURE, "-20"))
    assert derive(BEFORE, captured) == []


def test_only_the_expired_hold_is_named_when_others_stay_open() -> None:
    before = image(
        4, balance="100", reserved="35", holds={HOLD: held("30"), OTHER: held("5.5", T0)}
    )
    after = expiry(before)
    assert after.holds == {OTHER: held("5.5", T0)}
    (event,) = derive(before, after)
    detail = event.envelope()["detail"]
    assert detail["holdId"] == HOLD  # type: ignore[index]
    assert detail["reserved"] == 5  # type: ignore[index]
    assert detail["available"] == 95  # type: ignore[index]


def test_redelivery_of_the_same_change_gives_the_same_event() -> None:
    """The stream delivers a change once or more; consumers drop duplicates by id."""
    first, again = derive(BEFORE, expiry()), derive(BEFORE, expiry())
    assert [e.id for e in first] == [e.id for e in again] == ["acct_1:5:hold-expired"]
    assert first[0].detail_json() == again[0].detail_json()


def test_no_event_from_an_expiry_reason_without_a_removed_hold() -> None:
    # Images of an item written before holds existed (no map): nothing to name.
    bare = image(4, balance="100", reserved="0", holds=None)
    assert derive(bare, expiry(bare, reserved="0", holds=None)) == []


def test_the_next_change_after_an_expiry_is_judged_by_its_own_last_op() -> None:
    """The old image of the following change still says `expired`: only the new one counts."""
    before = image(4, balance="100", reserved="35", holds={HOLD: held("30"), OTHER: held("5", T0)})
    expired = expiry(before)
    captured = image(6, balance="95", reserved="0", holds={}, last_op=op(EntryType.CAPTURE, "-5"))
    assert kinds(derive(before, expired)) == [EventKind.HOLD_EXPIRED]
    assert derive(expired, captured) == []


def test_the_detail_validates_against_its_schema_and_replays_whole() -> None:
    (event,) = derive(BEFORE, expiry())
    schema = json.loads((SCHEMAS / "hold-expired.json").read_text(encoding="utf-8"))
    jsonschema.validate(event.envelope()["detail"], schema)
    # The replay queue keeps envelopes: one comes back as the same event, same id.
    assert event_from_envelope(json.loads(money.dumps(event.envelope()))) == event
