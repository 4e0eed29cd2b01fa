"""The account's open holds for the customer HTTP API (GET /v1/credits/holds).

The account item's `holds` map decides which holds are open, how much each holds, and when
each was made and expires: it is read with one strongly consistent GetItem, so a hold is
listed the moment its reserve returns and gone the moment its capture or release does.
The HOLD items (written from the stream, `storage.holds`) add what the map does not keep -
description, action, endpoint, metadata - with one BatchGetItem per page; a hold whose
HOLD item is not written yet is listed all the same, undescribed.

A hold past its `expiresAt` that the ExpirerFunction has not released yet (it sweeps every
minute) is still open: it still counts in `reserved`, so it is listed, marked `expired`.
It can no longer be captured; a release gives it back at once.

Pages are newest first (creation time, then hold id, both descending) and continue by the
signed cursor of the transactions route (`reads.cursor`), whose position here is the last
listed hold's `<created epoch seconds>:<hold id>`: holds made or closed between two pages
cause no repeats, and no gaps among the holds still open.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, Field

from serverless_credits.domain.errors import AccountNotFound, ValidationFailed
from serverless_credits.domain.holds import HOLD_ID_PATTERN
from serverless_credits.domain.models import Account, CamelModel, Hold, OpenHold, utc_now
from serverless_credits.domain.money import Credits, jsonable, normalize
from serverless_credits.reads.cursor import CursorSigner
from serverless_credits.reads.queries import DEFAULT_LIMIT, MAX_LIMIT
from serverless_credits.storage.store import CreditsStore

SCOPE = "holds"  # what a holds cursor is bound to (a transactions cursor never says this)
POSITION = re.compile(r"^(0|[1-9][0-9]{0,11}):(" + HOLD_ID_PATTERN.strip("^$") + ")$")


class HoldView(CamelModel):
    hold_id: str = Field(description="The hold's id, as the reserve returned it")
    amount: Credits = Field(description="Credits held (counted in `reserved`)")
    created_at: AwareDatetime = Field(description="When the hold was made (to the second)")
    expires_at: AwareDatetime = Field(description="When the hold expires (to the second)")
    expired: bool = Field(
        description="Past `expiresAt` but not yet released by the expiry sweep (within about "
        "a minute): still counted in `reserved`, no longer capturable, releasable"
    )
    description: str = Field(
        default="", description="The reserve's description (empty until its entry is written)"
    )
    action: str | None = None
    endpoint: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class HoldsPage(CamelModel):
    """GET /v1/credits/holds: a page of open holds, newest first."""

    data: list[HoldView]
    has_more: bool
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` to read the next page (null on the last page)"
    )
    limit: int


def _position(created_at: int, hold_id: str) -> str:
    return f"{created_at}:{hold_id}"


def _order(item: tuple[str, OpenHold]) -> tuple[int, str]:
    hold_id, held = item
    return held.created_at, hold_id


def newest_first(account: Account) -> list[tuple[str, OpenHold]]:
    """The account's open holds, newest first (the hold id breaks ties within a second)."""
    return sorted((account.holds or {}).items(), key=_order, reverse=True)


def hold_view(hold_id: str, held: OpenHold, described: Hold | None, now: datetime) -> HoldView:
    """An open hold as the API shows it: figures from the account item, words from its HOLD
    item (when written); `expired` judged at `now` as a capture would judge it."""
    return HoldView(
        hold_id=hold_id,
        amount=normalize(held.amount),
        created_at=held.created,
        expires_at=held.expires,
        expired=held.expired(now),
        description=described.description if described else "",
        action=described.action if described else None,
        endpoint=described.endpoint if described else None,
        metadata=jsonable(described.metadata) if described else {},
    )


def holds(
    store: CreditsStore,
    account_id: str,
    signer: CursorSigner,
    *,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
    now: datetime | None = None,
) -> HoldsPage:
    """A page of the account's open holds, newest first: one GetItem of the account item
    (strongly consistent), and one BatchGetItem of the page's HOLD items. `expired` is
    judged at `now` (default: the current time) as a capture would judge it."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed(f"limit must be between 1 and {MAX_LIMIT}", {"field": "limit"})
    after: tuple[int, str] | None = None
    if cursor is not None:
        created, hold_id = signer.verify(
            cursor, account_id=account_id, scope=SCOPE, position=POSITION
        ).split(":")
        after = int(created), hold_id
    account = store.accounts.get(account_id, consistent=True)
    if account is None:
        raise AccountNotFound(account_id)
    listed = newest_first(account)
    if after is not None:
        listed = [item for item in listed if _order(item) < after]
    page, more = listed[:limit], len(listed) > limit
    described = store.holds.get_many(account_id, [hold_id for hold_id, _ in page]) if page else {}
    at = now or utc_now()
    return HoldsPage(
        data=[hold_view(hold_id, held, described.get(hold_id), at) for hold_id, held in page],
        has_more=more,
        next_cursor=(
            signer.sign(account_id=account_id, scope=SCOPE, position=_position(*_order(page[-1])))
            if more
            else None
        ),
        limit=limit,
    )


__all__ = ["HoldView", "HoldsPage", "hold_view", "holds", "newest_first"]
