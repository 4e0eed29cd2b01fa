"""The storage the use cases need, as small interfaces (`storage/` implements them)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

from serverless_credits.domain.events import BalanceEvent, FailedEvent, ReplayMessage
from serverless_credits.domain.models import (
    Account,
    AutoReloadPending,
    Hold,
    IdempotencyRecord,
    LastOp,
    LedgerEntry,
    Lot,
    OperationResult,
    PriceList,
    UsageIncrement,
)
from serverless_credits.domain.outcomes import Counted, EntryWrite, LedgerHead
from serverless_credits.domain.posting import Posting


class Accounts(Protocol):
    def get(self, account_id: str, *, consistent: bool = False) -> Account | None: ...
    def create(self, account: Account) -> None: ...
    def open_lots(self, current: Account) -> Account | None: ...
    def update_settings(self, account_id: str, changes: Mapping[str, Any]) -> Account: ...
    def apply(
        self,
        account_id: str,
        posting: Posting,
        last_op: LastOp,
        *,
        assumed_overdraft: Decimal,
        now: datetime,
    ) -> Account: ...


class IdempotencyRecords(Protocol):
    def lease(self, record: IdempotencyRecord, now: datetime) -> None: ...
    def get(self, account_id: str, idempotency_key: str) -> IdempotencyRecord | None: ...
    def get_many(
        self, wanted: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], IdempotencyRecord]: ...
    def complete(
        self,
        account_id: str,
        idempotency_key: str,
        *,
        op_id: str,
        result: OperationResult,
        sequence: int,
    ) -> None: ...
    def finalize(
        self,
        account_id: str,
        idempotency_key: str,
        *,
        op_id: str,
        result: OperationResult,
        sequence: int,
        expires_at: int,
    ) -> bool: ...
    def take_over(
        self,
        account_id: str,
        idempotency_key: str,
        old_op_id: str,
        new_op_id: str,
        lease: datetime,
    ) -> bool: ...
    def release(self, account_id: str, idempotency_key: str, op_id: str) -> None: ...


class LedgerEntries(Protocol):
    def put(self, entry: LedgerEntry, *, filled: bool = False) -> EntryWrite: ...
    def get(self, account_id: str, sequence: int) -> LedgerEntry | None: ...
    def head(self, account_id: str) -> LedgerHead: ...
    def advance_head(self, account_id: str, head: LedgerHead) -> None: ...


class Usage(Protocol):
    def add(self, account_id: str, usage: UsageIncrement) -> None: ...
    def count(self, account_id: str, day: date, counted: Sequence[Counted]) -> None: ...
    def index(self, account_id: str, day: date, sequence: int) -> None: ...


class RefundGuards(Protocol):
    def refunded(self, account_id: str, transaction_id: str) -> Decimal: ...
    def claim(
        self,
        account_id: str,
        transaction_id: str,
        *,
        original: Decimal,
        amount: Decimal,
        idempotency_key: str,
        refunded_before: Decimal | None = None,
    ) -> None: ...


class HoldItems(Protocol):
    """The HOLD items: descriptions and fates of holds, and the index of open ones by
    expiry (written from the stream; the account item's `holds` map decides)."""

    def get(self, account_id: str, hold_id: str) -> Hold | None: ...
    def get_many(self, account_id: str, hold_ids: Iterable[str]) -> dict[str, Hold]: ...
    def record(self, entry: LedgerEntry) -> None: ...
    def due(self, now: datetime, limit: int) -> list[tuple[str, str]]: ...
    def unlist(self, account_id: str, hold_id: str) -> None: ...


class LotItems(Protocol):
    """The LOT items: what each credit lot was granted as, and the index of lots that may
    still hold credit to expire (written from the stream; the account item's `lots` map
    holds what is left)."""

    def get_many(self, account_id: str, lot_ids: Iterable[str]) -> dict[str, Lot]: ...
    def record(self, entry: LedgerEntry) -> None: ...
    def due(self, now: datetime, limit: int) -> list[tuple[str, str]]: ...
    def unlist(self, account_id: str, lot_id: str) -> None: ...


class PriceLists(Protocol):
    def get_price_list(self) -> PriceList | None: ...
    def put_price_list(self, prices: PriceList) -> None: ...


class EventBus(Protocol):
    """Where balance events go (EventBridge's PutEvents): the entries it did not accept,
    each with its error, never an exception for a per-entry failure."""

    def put(self, events: Sequence[BalanceEvent]) -> list[FailedEvent]: ...


class EventReplayQueue(Protocol):
    """Where events go that the bus kept refusing: whole events, so that they can be
    published again after the stream's 24 hours (`credits-admin events replay`)."""

    def send(self, failed: Sequence[FailedEvent]) -> None: ...


class ReplayInbox(Protocol):
    """The replay queue as `credits-admin events replay` reads it: messages received are
    hidden from other readers for a while; a deleted message is gone."""

    def receive(self, limit: int) -> list[ReplayMessage]: ...
    def delete(self, message: ReplayMessage) -> None: ...
    def depth(self) -> int | None: ...


class AutoReloadMarks(Protocol):
    """The account item's record of a pending auto-reload request."""

    def mark_auto_reload(
        self, account_id: str, pending: AutoReloadPending, *, expired_before: datetime
    ) -> bool: ...
    def clear_auto_reload(self, account_id: str, request_id: str) -> bool: ...
