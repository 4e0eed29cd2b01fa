"""An account's credit lots as operators see them (`credits-admin lots list`, the
AdminFunction's `lots.list`): every lot on the account item, in burn order, with what it
was granted as and what is left of it.

The account item's `lots` map decides which lots there are and what each holds (read
strongly consistent, so a lot is listed the moment its grant returns). The LOT items,
written from the stream, add the initial amount, source, reference and description; a lot
whose LOT item is not written yet (or an account's opening lot from before lots existed)
is listed all the same, with what its id says (`domain.lots.rank_of`: priority, expiry,
grant time) and nothing else.

Status, judged at `now` as a debit would judge it:
- `active`: spendable;
- `expired`: past its `expiresAt`, never spent again; the ExpirerFunction's next sweep (or
  `lots expire`) takes what is left out of the balance;
- `pinned`: past its `expiresAt`, and what is left is reserved by open holds: it stays
  until they close (captures burn it first), then a sweep takes the rest;
- `overdraft`: the account's debt as a negative lot, repaid first by the next credit.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import AwareDatetime, Field

from serverless_credits.domain.lots import (
    OVERDRAFT_LOT,
    UNITS,
    burn_order,
    expirable,
    lots_on,
    opening_lot_id,
    rank_of,
)
from serverless_credits.domain.models import Account, CamelModel, Lot
from serverless_credits.domain.money import Credits, normalize

OPENING = "opening"  # the source of an account's balance from before lots


class LotStatus(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    PINNED = "pinned"
    OVERDRAFT = "overdraft"


class OperatorLotView(CamelModel):
    lot_id: str
    status: LotStatus
    remaining: Credits = Field(description="What is left of the lot (negative: overdraft)")
    initial_amount: Credits | None = Field(
        default=None, description="What the lot was granted with (null until recorded)"
    )
    units: str = UNITS
    priority: int | None = None
    expires_at: AwareDatetime | None = None
    granted_at: AwareDatetime | None = None
    reference: str | None = None
    source: str | None = Field(
        default=None,
        description="The entry type that opened it (topup, grant, adjustment, refund, void), "
        "`opening` for the balance of an account from before lots; null until recorded",
    )
    description: str = ""
    granted_by: str | None = Field(default=None, description="The opening transaction's id")


def _source(account: Account, lot_id: str, described: Lot | None) -> str | None:
    if described is not None:
        return described.source.value
    return OPENING if lot_id == opening_lot_id(account.created_at) else None


def _status(account: Account, lot_id: str, now: datetime) -> LotStatus:
    if lot_id == OVERDRAFT_LOT:
        return LotStatus.OVERDRAFT
    rank = rank_of(lot_id)
    if rank is None or not rank.expired(now):
        return LotStatus.ACTIVE
    return LotStatus.EXPIRED if expirable(account, lot_id, now) > 0 else LotStatus.PINNED


def lot_view(
    account: Account, lot_id: str, remaining: Decimal, described: Lot | None, now: datetime
) -> OperatorLotView:
    rank = rank_of(lot_id)
    return OperatorLotView(
        lot_id=lot_id,
        status=_status(account, lot_id, now),
        remaining=normalize(remaining),
        initial_amount=normalize(described.initial_amount) if described else None,
        priority=described.priority if described else (rank.priority if rank else None),
        expires_at=described.expires_at if described else (rank.expires if rank else None),
        granted_at=described.granted_at if described else (rank.granted if rank else None),
        reference=described.reference if described else None,
        source=_source(account, lot_id, described),
        description=described.description if described else "",
        granted_by=described.granted_by if described else None,
    )


def lot_views(
    account: Account, described: Mapping[str, Lot], now: datetime
) -> list[OperatorLotView]:
    """The account's lots in burn order (the overdraft lot, no credit, last). Expired and
    pinned lots keep their place in the order but no debit burns them."""
    lots = lots_on(account)
    order = burn_order(lots) + ([OVERDRAFT_LOT] if OVERDRAFT_LOT in lots else [])
    return [lot_view(account, lot_id, lots[lot_id], described.get(lot_id), now) for lot_id in order]


__all__ = ["LotStatus", "OperatorLotView", "lot_view", "lot_views"]
