"""Holds (reservations): credits set aside from `available` for work of unknown cost, then
captured (all or part) or released; an open hold past its expiry is released by the
ExpirerFunction.

Every step that moves `reserved` is one conditional update of the account item fenced on
the hold's entry in its `holds` map (`domain.posting.HoldFence`): a reserve needs the id
absent, a capture, release or expiry needs it present with the amount held, so a repeated
or late step fails its condition instead of applying twice (docs/design-notes.md, "Fix 3").
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from serverless_credits.domain.errors import (
    CreditsError,
    HoldNotFound,
    HoldNotOpen,
    ValidationFailed,
)
from serverless_credits.domain.models import Account, Hold, HoldStatus, OpenHold
from serverless_credits.domain.money import normalize

HOLD_ID_PREFIX = "hold_"
HOLD_ID_PATTERN = r"^hold_[0-9a-f]{16}$"
# Each open hold adds about 45 bytes to the account item, which every change of the
# account writes: at this cap the item is about 2.7 KB, 3 write units a change instead of 1
# (bench/README.md, "Holds").
MAX_OPEN_HOLDS = 50
DEFAULT_HOLD_SECONDS = 300
MAX_HOLD_SECONDS = 7 * 24 * 3600


def new_hold_id() -> str:
    """A fresh hold id: random, so two reserves can never fence on the same entry."""
    return f"{HOLD_ID_PREFIX}{uuid.uuid4().hex[:16]}"


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def open_hold(account: Account, hold_id: str, now: datetime, *, capture: bool) -> OpenHold | None:
    """The open hold `hold_id` as the account item records it, or None when the item has
    no such hold (closed, or never this account's: `not_open` tells which). A capture also
    needs it unexpired; a release of an expired hold the ExpirerFunction has not reached
    yet gives it back all the same."""
    held = (account.holds or {}).get(hold_id)
    if held is not None and capture and held.expired(now):
        raise HoldNotOpen(hold_id, HoldStatus.EXPIRED.value)
    return held


def not_open(account_id: str, hold_id: str, known: Hold | None) -> CreditsError:
    """Why a hold the account item does not have cannot be captured or released: its HOLD
    item (`known`) says how it closed; without one, the account never had it."""
    if known is None:
        return HoldNotFound(account_id, hold_id)
    status = known.status if known.status is not HoldStatus.OPEN else "closed"
    return HoldNotOpen(hold_id, str(status))


def hold_expiry(now: datetime, seconds: int) -> datetime:
    """When a hold made at `now` for `seconds` expires, to the second (the fence compares
    whole epoch seconds)."""
    return now.replace(microsecond=0) + timedelta(seconds=seconds)


def capture_amount(held: OpenHold, hold_id: str, requested: Decimal | None) -> Decimal:
    """What a capture takes: all of the hold by default, never more than it holds."""
    if requested is None:
        return normalize(held.amount)
    if requested > held.amount:
        raise ValidationFailed(
            "Cannot capture more than the hold holds",
            {"field": "amount", "holdId": hold_id, "held": normalize(held.amount)},
        )
    return normalize(requested)


def expired_holds(account: Account, now: datetime) -> list[str]:
    """The ids of `account`'s open holds past their expiry at `now`."""
    return sorted(hold_id for hold_id, held in (account.holds or {}).items() if held.expired(now))
