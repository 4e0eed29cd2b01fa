"""Balance events, derived from one account change's images before and after (pure).

The account item's stream carries every change of the item in order, each with its old and
new image, so a crossing is decided by comparing exactly two states that really followed
each other: 16 writers racing one account still produce one version that crosses a
threshold, and one event. What is decided here:

- `Balance Low`: `available` goes from above `lowBalanceThreshold` to at or below it. Once per
  crossing; re-armed only when a later change lifts it above the threshold again.
- `Balance Depleted`: `available` goes from above the floor to at or below it; the floor is
  zero, or `-overdraftLimit` when the account has an overdraft.
- `Auto Reload Requested`: auto-reload is enabled and `available` goes from above
  `autoReloadThreshold` to at or below it (or stays there while the pending request has
  timed out), for `autoReloadAmount`. Never while a request is pending: the account records
  the pending request (`autoReloadPending`); whether a request wins is decided by the
  publisher's conditional mark, not here (images can lag behind the mark).
- `Hold Expired`: the version removes a hold from the account's `holds` map and its
  `lastOp.reason` is `expired` (the ExpirerFunction's release of an overdue hold; only an
  expiry sets a reason on `lastOp`). The hold's amount and expiry come from the old image's
  entry, so no read is needed; a capture or an ordinary release emits nothing.
- `Credits Expired`: the version's `lastOp.type` is `expiry` (the ExpirerFunction's expiry of
  a credit lot past its `expiresAt`). An expiry touches one lot, so `lastOp.lots` has a single
  key, the lot, and its (negative) share is what expired; what the lot still holds after is
  the new image's `lots.<lotId>` (open holds pinned it), or 0 when it left the item. Its
  expiry is the one its id encodes (`domain.lots.rank_of`), so no read is needed either.
- `Account Status Changed`: `status` or `flagged` differ between the images.

Balance events come only from a new version (a balance change); a settings change has no
version, and its status events are named by the account's `updatedAt` instead.

Each event has a deterministic id (`<account>:<version>:<kind>`, or
`<account>:<updatedAt>:<kind>` for a status change without a new version), carried as
`detail.eventId`: EventBridge assigns envelope ids of its own, so consumers drop duplicates
by `detail.eventId`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, SerializeAsAny

from serverless_credits.domain.lots import rank_of
from serverless_credits.domain.models import (
    Account,
    AccountStatus,
    CamelModel,
    EntryType,
    ReleaseReason,
)
from serverless_credits.domain.money import Credits, dumps, exact_dump

SOURCE = "serverless-credits"
# A pending auto-reload request that no top-up answered within this time no longer holds a
# new one back (a declined card, a lost request): the next change at or below the threshold
# requests once more.
AUTO_RELOAD_TIMEOUT = timedelta(hours=1)


class EventKind(StrEnum):
    BALANCE_LOW = "balance-low"
    BALANCE_DEPLETED = "balance-depleted"
    AUTO_RELOAD_REQUESTED = "auto-reload-requested"
    ACCOUNT_STATUS_CHANGED = "account-status-changed"
    HOLD_EXPIRED = "hold-expired"
    CREDITS_EXPIRED = "credits-expired"


DETAIL_TYPES: dict[EventKind, str] = {
    EventKind.BALANCE_LOW: "Balance Low",
    EventKind.BALANCE_DEPLETED: "Balance Depleted",
    EventKind.AUTO_RELOAD_REQUESTED: "Auto Reload Requested",
    EventKind.ACCOUNT_STATUS_CHANGED: "Account Status Changed",
    EventKind.HOLD_EXPIRED: "Hold Expired",
    EventKind.CREDITS_EXPIRED: "Credits Expired",
}


class EventDetail(CamelModel):
    """What every event's `detail` holds."""

    event_id: str  # deterministic: (account, version, kind); consumers deduplicate on it
    account_id: str
    version: int  # the account version that caused it (the current one for status changes)
    kind: EventKind
    occurred_at: AwareDatetime  # the time of the change (the account's updatedAt)
    available: Credits
    balance: Credits


class BalanceLowDetail(EventDetail):
    kind: Literal[EventKind.BALANCE_LOW] = EventKind.BALANCE_LOW
    threshold: Credits
    previous_available: Credits


class BalanceDepletedDetail(EventDetail):
    kind: Literal[EventKind.BALANCE_DEPLETED] = EventKind.BALANCE_DEPLETED
    floor: Credits  # 0, or -overdraftLimit
    overdraft_limit: Credits
    previous_available: Credits


class AutoReloadRequestedDetail(EventDetail):
    kind: Literal[EventKind.AUTO_RELOAD_REQUESTED] = EventKind.AUTO_RELOAD_REQUESTED
    request_id: str  # = event_id: a top-up with this `reference` answers the request
    threshold: Credits
    amount: Credits


class AccountStatusChangedDetail(EventDetail):
    kind: Literal[EventKind.ACCOUNT_STATUS_CHANGED] = EventKind.ACCOUNT_STATUS_CHANGED
    status: AccountStatus
    previous_status: AccountStatus
    flagged: bool
    previous_flagged: bool
    reason: str | None = None  # the operator's status reason, if any
    fraud_warning: str | None = None
    changed_by: str | None = None


class HoldExpiredDetail(EventDetail):
    kind: Literal[EventKind.HOLD_EXPIRED] = EventKind.HOLD_EXPIRED
    hold_id: str
    amount: Credits  # what the hold held: back in `available` with this version
    expires_at: AwareDatetime  # the hold's expiry (the old image's `holds.<holdId>.x`)
    reserved: Credits  # the account's `reserved` after the expiry


class CreditsExpiredDetail(EventDetail):
    kind: Literal[EventKind.CREDITS_EXPIRED] = EventKind.CREDITS_EXPIRED
    lot_id: str
    amount: Credits  # what expired (positive): out of `balance` and `available` with this version
    remaining: Credits  # what the lot still holds: 0, or what open holds pin until they close
    expires_at: AwareDatetime  # the lot's expiry (whole seconds, as its id encodes it)
    reserved: Credits  # the account's `reserved` after the expiry


DETAIL_MODELS: dict[EventKind, type[EventDetail]] = {
    EventKind.BALANCE_LOW: BalanceLowDetail,
    EventKind.BALANCE_DEPLETED: BalanceDepletedDetail,
    EventKind.AUTO_RELOAD_REQUESTED: AutoReloadRequestedDetail,
    EventKind.ACCOUNT_STATUS_CHANGED: AccountStatusChangedDetail,
    EventKind.HOLD_EXPIRED: HoldExpiredDetail,
    EventKind.CREDITS_EXPIRED: CreditsExpiredDetail,
}


class BalanceEvent(CamelModel):
    """One event as published: EventBridge's Source, DetailType, Time and Detail."""

    detail: SerializeAsAny[EventDetail]

    @property
    def id(self) -> str:
        return self.detail.event_id

    @property
    def kind(self) -> EventKind:
        return self.detail.kind

    @property
    def detail_type(self) -> str:
        return DETAIL_TYPES[self.detail.kind]

    @property
    def source(self) -> str:
        return SOURCE

    @property
    def time(self) -> datetime:
        return self.detail.occurred_at

    def detail_json(self) -> str:
        """The detail as PutEvents sends it: money written exactly (`money.dumps`)."""
        return dumps(exact_dump(self.detail))

    def envelope(self) -> dict[str, object]:
        """The EventBridge envelope as a rule target receives it (the local stack's
        `.local/events.jsonl` lines); on AWS the envelope `id` is EventBridge's own."""
        return {
            "id": self.id,
            "source": SOURCE,
            "detail-type": self.detail_type,
            "time": self.time.isoformat().replace("+00:00", "Z"),
            "detail": exact_dump(self.detail),
        }


@dataclass(frozen=True)
class FailedEvent:
    """An event the bus did not accept, with its error code and message."""

    event: BalanceEvent
    error_code: str
    error_message: str = ""


@dataclass(frozen=True)
class ReplayMessage:
    """One message of the replay queue: the events it holds whole (empty when it holds
    none: Lambda's own on-failure record, stream positions only, cannot be re-published),
    and what deletes it."""

    message_id: str
    receipt: str
    events: tuple[BalanceEvent, ...] = ()

    @property
    def replayable(self) -> bool:
        return bool(self.events)


def event_from_envelope(envelope: object) -> BalanceEvent:
    """The event an envelope (`BalanceEvent.envelope()`) holds, with its own `eventId`.
    Raises ValueError (pydantic's ValidationError is one) if it holds no valid event."""
    if not isinstance(envelope, dict) or not isinstance(envelope.get("detail"), dict):
        raise ValueError("an envelope with a detail object is needed")
    detail = envelope["detail"]
    try:
        model = DETAIL_MODELS[EventKind(detail.get("kind"))]
    except ValueError:
        raise ValueError(f"unknown event kind {detail.get('kind')!r}") from None
    return BalanceEvent(detail=model.model_validate(detail))


def event_id(account_id: str, version: int | str, kind: EventKind) -> str:
    return f"{account_id}:{version}:{kind.value}"


def depletion_floor(account: Account) -> Decimal:
    return -account.overdraft_limit if account.overdraft_limit > 0 else Decimal(0)


def _crossed_down(before: Decimal, after: Decimal, threshold: Decimal) -> bool:
    return before > threshold >= after


def is_new_version(old: Account | None, new: Account | None) -> bool:
    return new is not None and new.version > 0 and (old is None or new.version > old.version)


def pending_expired(pending_at: datetime, now: datetime, timeout: timedelta) -> bool:
    return pending_at + timeout <= now


def derive(
    old: Account | None,
    new: Account | None,
    *,
    auto_reload_timeout: timedelta = AUTO_RELOAD_TIMEOUT,
) -> list[BalanceEvent]:
    """The events one account change causes, in a stable order (low, depleted, reload,
    hold expired, credits expired, status). An account's creation (no old image) and
    removal (no new image) cause none."""
    if old is None or new is None:
        return []
    events: list[BalanceEvent] = []
    if is_new_version(old, new):
        events += _balance_events(old, new, auto_reload_timeout)
    if old.status != new.status or old.flagged != new.flagged:
        events.append(_status_changed(old, new))
    return events


def _common(new: Account, kind: EventKind, name: int | str) -> dict[str, object]:
    return {
        "event_id": event_id(new.account_id, name, kind),
        "account_id": new.account_id,
        "version": new.version,
        "occurred_at": new.updated_at,
        "available": new.available,
        "balance": new.balance,
    }


def _balance_events(old: Account, new: Account, timeout: timedelta) -> list[BalanceEvent]:
    events: list[BalanceEvent] = []
    threshold = new.low_balance_threshold
    if threshold is not None and _crossed_down(old.available, new.available, threshold):
        detail = BalanceLowDetail.model_validate(
            {
                **_common(new, EventKind.BALANCE_LOW, new.version),
                "threshold": threshold,
                "previous_available": old.available,
            }
        )
        events.append(BalanceEvent(detail=detail))
    floor = depletion_floor(new)
    if _crossed_down(old.available, new.available, floor):
        depleted = BalanceDepletedDetail.model_validate(
            {
                **_common(new, EventKind.BALANCE_DEPLETED, new.version),
                "floor": floor,
                "overdraft_limit": new.overdraft_limit,
                "previous_available": old.available,
            }
        )
        events.append(BalanceEvent(detail=depleted))
    reload = auto_reload_wanted(old, new, timeout)
    if reload is not None:
        events.append(reload)
    expired = hold_expired(old, new)
    if expired is not None:
        events.append(expired)
    lot_expiry = credits_expired(new)
    if lot_expiry is not None:
        events.append(lot_expiry)
    return events


def auto_reload_wanted(old: Account, new: Account, timeout: timedelta) -> BalanceEvent | None:
    """An `Auto Reload Requested` event if this version calls for one: a crossing below the
    auto-reload threshold, or a change at or below it while the pending request timed out.
    The image's pending request (if the image already shows it) holds it back; the
    publisher's conditional mark is the final word."""
    threshold, amount = new.auto_reload_threshold, new.auto_reload_amount
    if not new.auto_reload_enabled or threshold is None or amount is None or amount <= 0:
        return None
    if new.available > threshold:
        return None
    pending = new.auto_reload_pending
    if pending is not None:
        if not pending_expired(pending.at, new.updated_at, timeout):
            return None
    elif not _crossed_down(old.available, new.available, threshold):
        return None
    common = _common(new, EventKind.AUTO_RELOAD_REQUESTED, new.version)
    detail = AutoReloadRequestedDetail.model_validate(
        {**common, "request_id": common["event_id"], "threshold": threshold, "amount": amount}
    )
    return BalanceEvent(detail=detail)


def hold_expired(old: Account, new: Account) -> BalanceEvent | None:
    """A `Hold Expired` event if this version is the expiry of a hold: `lastOp.reason` is
    `expired` and a hold left the `holds` map. One step closes one hold, so the version
    removes exactly one entry; its amount and expiry are the old image's."""
    op = new.last_op
    if op is None or op.reason is not ReleaseReason.EXPIRED:
        return None
    before, after = old.holds or {}, new.holds or {}
    removed = [hold_id for hold_id in before if hold_id not in after]
    if len(removed) != 1:
        return None  # no hold closed (or, impossibly, several): nothing to name
    hold_id = removed[0]
    held = before[hold_id]
    detail = HoldExpiredDetail.model_validate(
        {
            **_common(new, EventKind.HOLD_EXPIRED, new.version),
            "hold_id": hold_id,
            "amount": held.amount,
            "expires_at": held.expires,
            "reserved": new.reserved,
        }
    )
    return BalanceEvent(detail=detail)


def credits_expired(new: Account) -> BalanceEvent | None:
    """A `Credits Expired` event if this version is the expiry of a lot: `lastOp.type` is
    `expiry` and `lastOp.lots` names the one lot it took from. The new image alone tells it
    (the old one holds nothing the event needs)."""
    op = new.last_op
    if op is None or op.type is not EntryType.EXPIRY or not op.lots or len(op.lots) != 1:
        return None  # not an expiry (or, impossibly, one without its lot): nothing to name
    ((lot_id, share),) = op.lots.items()
    rank = rank_of(lot_id)
    if rank is None or rank.expires is None or share >= 0:
        return None  # only a lot with an expiry is ever expired, and only ever loses credit
    detail = CreditsExpiredDetail.model_validate(
        {
            **_common(new, EventKind.CREDITS_EXPIRED, new.version),
            "lot_id": lot_id,
            "amount": -share,
            "remaining": (new.lots or {}).get(lot_id, Decimal(0)),
            "expires_at": rank.expires,
            "reserved": new.reserved,
        }
    )
    return BalanceEvent(detail=detail)


def _status_changed(old: Account, new: Account) -> BalanceEvent:
    # A settings change has no version: the change is named by its time instead.
    name: int | str = new.version if is_new_version(old, new) else new.updated_at.isoformat()
    detail = AccountStatusChangedDetail.model_validate(
        {
            **_common(new, EventKind.ACCOUNT_STATUS_CHANGED, name),
            "status": new.status,
            "previous_status": old.status,
            "flagged": new.flagged,
            "previous_flagged": old.flagged,
            "reason": new.status_reason,
            "fraud_warning": new.fraud_warning,
            "changed_by": new.updated_by,
        }
    )
    return BalanceEvent(detail=detail)


__all__ = [
    "AUTO_RELOAD_TIMEOUT",
    "DETAIL_MODELS",
    "DETAIL_TYPES",
    "SOURCE",
    "AccountStatusChangedDetail",
    "AutoReloadRequestedDetail",
    "BalanceDepletedDetail",
    "BalanceEvent",
    "BalanceLowDetail",
    "CreditsExpiredDetail",
    "EventDetail",
    "EventKind",
    "FailedEvent",
    "HoldExpiredDetail",
    "ReplayMessage",
    "auto_reload_wanted",
    "credits_expired",
    "depletion_floor",
    "derive",
    "event_from_envelope",
    "event_id",
    "hold_expired",
    "is_new_version",
    "pending_expired",
]
