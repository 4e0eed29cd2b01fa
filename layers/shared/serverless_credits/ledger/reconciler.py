"""Reconciliation: prove each account's ledger against its balance, and fill any gap.

The stream keeps records for 24 hours; if the materializer failed for longer (or sent a
version to its on-failure destination), entries are missing. Every completed operation's
idempotency record keeps what its entry needs, and expires only once the entry exists, so
a gap is filled from the records. What it proves for each account: sequences 1..version
with no gap, each `balanceAfter` the previous plus its amount, `balance == sum(amounts)`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from serverless_credits.config import Settings
from serverless_credits.domain.errors import AccountNotFound, CreditsError, ServiceBusy
from serverless_credits.domain.holds import expired_holds
from serverless_credits.domain.lots import expired_lots
from serverless_credits.domain.models import Account, IdempotencyRecord, utc_now
from serverless_credits.domain.operations import entry_time, ledger_entry, usage_of
from serverless_credits.domain.outcomes import EntryWrite, LedgerHead
from serverless_credits.ledger.ports import (
    Accounts,
    HoldItems,
    IdempotencyRecords,
    LedgerEntries,
    LotItems,
    Usage,
)

logger = logging.getLogger(__name__)


class AuditableEntries(LedgerEntries, Protocol):
    def sequences(self, account_id: str) -> list[tuple[int, Any, Any]]: ...


class SearchableRecords(IdempotencyRecords, Protocol):
    def by_sequence(
        self, account_id: str, sequences: list[int]
    ) -> dict[int, IdempotencyRecord]: ...


class ListableAccounts(Accounts, Protocol):
    def ids(self) -> list[str]: ...


@dataclass
class AccountReport:
    account_id: str
    version: int
    balance: Decimal
    entries: int
    filled: list[int] = field(default_factory=list)
    unresolved: list[int] = field(default_factory=list)
    # Versions still on their way through the stream (the materializer is progressing):
    # left to it, and the balance is proven once they are written.
    in_flight: list[int] = field(default_factory=list)
    chain_breaks: list[int] = field(default_factory=list)
    ledger_sum: Decimal = Decimal(0)
    expired_holds: list[str] = field(default_factory=list)  # overdue holds it expired
    expired_lots: list[str] = field(default_factory=list)  # overdue lots it expired

    @property
    def consistent(self) -> bool:
        if self.unresolved or self.chain_breaks:
            return False
        return bool(self.in_flight) or self.ledger_sum == self.balance

    def as_dict(self) -> dict[str, Any]:
        return {
            "accountId": self.account_id,
            "version": self.version,
            "balance": str(self.balance),
            "ledgerSum": str(self.ledger_sum),
            "entries": self.entries,
            "filled": self.filled,
            "unresolved": self.unresolved,
            "inFlight": self.in_flight,
            "chainBreaks": self.chain_breaks,
            "expiredHolds": self.expired_holds,
            "expiredLots": self.expired_lots,
            "consistent": self.consistent,
        }


class Reconciler:
    def __init__(
        self,
        *,
        accounts: ListableAccounts,
        records: SearchableRecords,
        entries: AuditableEntries,
        usage: Usage,
        holds: HoldItems,
        lots: LotItems,
        expire_hold: Callable[[str, str], object],
        expire_lot: Callable[[str, str], object],
        settings: Settings,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._accounts = accounts
        self._records = records
        self._entries = entries
        self._usage = usage
        self._holds = holds
        self._lots = lots
        self._expire_hold = expire_hold
        self._expire_lot = expire_lot
        self._retention = timedelta(hours=settings.idempotency_retention_hours)
        self._settle = timedelta(seconds=settings.reconcile_settle_seconds)
        self._clock = clock

    def all(self) -> list[AccountReport]:
        return [self.account(account_id) for account_id in self._accounts.ids()]

    def account(self, account_id: str) -> AccountReport:
        account = self._accounts.get(account_id, consistent=True)
        if account is None:
            raise AccountNotFound(account_id)
        present = {sequence for sequence, _, _ in self._entries.sequences(account_id)}
        missing = sorted(set(range(1, account.version + 1)) - present)
        report = AccountReport(account_id, account.version, account.balance, len(present))
        head = self._entries.head(account_id)
        if missing and head.at is not None and head.at > self._clock() - self._settle:
            # The head moved recently: the materializer is at work and the versions above
            # it are in the stream. Filling them now would race it.
            report.in_flight = [v for v in missing if v > head.version]
            missing = [v for v in missing if v <= head.version]
        if missing:
            self._fill(account, missing, report)
        self._prove(account, report)
        self._expire_overdue(account, report)
        if not report.consistent:
            logger.error("ledger inconsistent", extra=report.as_dict())
        return report

    def _fill(self, account: Account, missing: list[int], report: AccountReport) -> None:
        records = self._records.by_sequence(account.account_id, missing)
        expires_at = int((self._clock() + self._retention).timestamp())
        for sequence in missing:
            record = records.get(sequence)
            if record is None or record.result is None:
                report.unresolved.append(sequence)
                continue
            previous = self._entries.get(account.account_id, sequence - 1)
            after = account.model_copy(
                update={
                    "version": sequence,
                    "balance": record.result.balance_after,
                    "available": record.result.available,
                }
            )
            entry = ledger_entry(
                account_id=account.account_id,
                op_id=record.op_id,
                idempotency_key=record.idempotency_key,
                operation=record.operation,
                after=after,
                created_at=entry_time(record.created_at, previous.created_at if previous else None),
                lots=record.result.lots,
            )
            written = self._entries.put(entry, filled=True)
            self._holds.record(entry)  # the HOLD item the lost stream record never wrote
            self._lots.record(entry)  # and the LOT item
            if written is EntryWrite.WRITTEN:
                # Marked as filled: a late delivery of this version will not count it again.
                usage = usage_of(entry, record.operation)
                if usage is not None:
                    self._usage.add(account.account_id, usage)
                self._usage.index(account.account_id, entry.day, sequence)
            self._records.finalize(
                account.account_id,
                record.idempotency_key,
                op_id=record.op_id,
                result=record.result,
                sequence=sequence,
                expires_at=expires_at,
            )
            report.filled.append(sequence)
        if not report.unresolved:
            last = self._entries.get(account.account_id, account.version)
            if last is not None:
                self._entries.advance_head(
                    account.account_id, LedgerHead(account.version, last.created_at)
                )

    def _expire_overdue(self, account: Account, report: AccountReport) -> None:
        """Expire the holds still open on the account item past their expiry, then the lots
        past theirs: the sweep finds them through their HOLD and LOT items, which a lost
        stream record never wrote."""
        now = self._clock()
        for hold_id in expired_holds(account, now):
            try:
                self._expire_hold(account.account_id, hold_id)
            except (CreditsError, ServiceBusy):
                logger.warning("overdue hold not expired", extra={"holdId": hold_id})
                continue
            report.expired_holds.append(hold_id)
        for lot_id in expired_lots(account, now):
            try:
                expired = self._expire_lot(account.account_id, lot_id)
            except (CreditsError, ServiceBusy):
                logger.warning("overdue lot not expired", extra={"lotId": lot_id})
                continue
            if expired is not None:
                report.expired_lots.append(lot_id)

    def _prove(self, account: Account, report: AccountReport) -> None:
        rows = self._entries.sequences(account.account_id)
        report.entries = len(rows)
        previous = Decimal(0)
        total = Decimal(0)
        expected = 1
        in_flight = set(report.in_flight)
        for sequence, amount, balance_after in rows:
            linked = True  # the previous entry is this one's predecessor
            if sequence != expected:
                # A gap of versions still in the stream is no break; across it the chain
                # cannot be checked until they are written.
                linked = not set(range(expected, sequence)) <= in_flight
                if linked:
                    report.chain_breaks.append(expected)
                expected = sequence
            if linked and Decimal(balance_after) != previous + Decimal(amount):
                report.chain_breaks.append(sequence)
            previous = Decimal(balance_after)
            total += Decimal(amount)
            expected += 1
        report.ledger_sum = total
