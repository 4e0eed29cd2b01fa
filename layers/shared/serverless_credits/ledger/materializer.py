"""Materialization: the ledger and daily usage, written from the account's change stream.

Each account version (one per balance change) becomes exactly one immutable ledger entry,
built from the operation in its idempotency record and the version's image. Per account and
batch: one read of the ledger head, one BatchGetItem of records, one conditional put per
entry, one update per record (completed, TTL from now on), one update of the HOLD item per
hold step, one put of a LOT item per lot opened, one usage update per day and one head
update. A redelivered version changes nothing: it is at or below the head, its entry put
is conditional, its usage is counted once per day item (`lastVersion`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from serverless_credits.config import Settings
from serverless_credits.domain.models import Account, IdempotencyRecord, LedgerEntry, utc_now
from serverless_credits.domain.operations import (
    allocation,
    entry_time,
    ledger_entry,
    result_of,
    usage_of,
)
from serverless_credits.domain.outcomes import Counted, EntryWrite, LedgerHead
from serverless_credits.ledger.ports import (
    HoldItems,
    IdempotencyRecords,
    LedgerEntries,
    LotItems,
    Usage,
)

logger = logging.getLogger(__name__)

# A batch's entry puts and record updates are independent per version: a few in flight at
# once keep one shard's materializer well ahead of one hot account's writers.
PARALLEL_WRITES = 8


@dataclass(frozen=True)
class AccountChange:
    """One record of the account item's stream: its images before and after."""

    position: str  # the stream record's sequence number (what a batch failure names)
    account_id: str
    old: Account | None
    new: Account | None

    @property
    def new_version(self) -> Account | None:
        """The image of a new version (a balance change), or None for other changes
        (settings, status) and removals."""
        if self.new is None or self.new.version == 0:
            return None
        if self.old is not None and self.old.version >= self.new.version:
            return None
        return self.new


class MaterializationError(Exception):
    """A version's operation cannot be found: retried, then sent to the on-failure
    destination; the reconciler fills the entry from the idempotency records."""


class Materializer:
    def __init__(
        self,
        records: IdempotencyRecords,
        entries: LedgerEntries,
        usage: Usage,
        settings: Settings,
        clock: Callable[[], datetime] = utc_now,
        *,
        holds: HoldItems,
        lots: LotItems,
    ) -> None:
        self._records = records
        self._entries = entries
        self._usage = usage
        self._holds = holds
        self._lots = lots
        self._retention = timedelta(hours=settings.idempotency_retention_hours)
        self._clock = clock
        self._pool: ThreadPoolExecutor | None = None

    def materialize(self, changes: Sequence[AccountChange]) -> list[str]:
        """Write the ledger for a batch of changes, account by account; the positions of
        the changes that failed (the first failure of an account and everything after it
        for that account), for a partial batch response."""
        by_account: dict[str, list[AccountChange]] = defaultdict(list)
        for change in changes:
            by_account[change.account_id].append(change)
        failed: list[str] = []
        for account_id, account_changes in by_account.items():
            try:
                self.account(account_id, [c.new_version for c in account_changes if c.new_version])
            except Exception:
                logger.exception("materialization failed", extra={"accountId": account_id})
                failed.append(account_changes[0].position)
        return failed

    def account(self, account_id: str, versions: Sequence[Account]) -> None:
        if not versions:
            return  # settings and status changes: no version, no entry
        head = self._entries.head(account_id)
        todo = sorted((v for v in versions if v.version > head.version), key=lambda v: v.version)
        if not todo:
            return
        wanted = [(account_id, v.last_op.key) for v in todo if v.last_op is not None]
        records = self._records.get_many(wanted)
        expires_at = int((self._clock() + self._retention).timestamp())
        # Entry times chain through the versions, so the plan is made in order; the writes
        # of different versions are independent and go out in parallel.
        planned: list[_Planned] = []
        previous_at = head.at
        written = head  # the head moves over contiguous versions only
        missing: MaterializationError | None = None
        for after in todo:
            try:
                record = _record_for(after, records)
            except MaterializationError as error:
                missing = error  # write what comes before it, then fail from here on
                break
            created_at = entry_time(record.created_at, previous_at)
            entry = ledger_entry(
                account_id=account_id,
                op_id=record.op_id,
                idempotency_key=record.idempotency_key,
                operation=record.operation,
                after=after,
                created_at=created_at,
                lots=allocation(record.op_id, after),
            )
            planned.append(_Planned(after, record, entry))
            previous_at = created_at
            if after.version == written.version + 1:
                written = LedgerHead(after.version, created_at)
        filled = self._in_parallel(lambda p: self._write(p, expires_at), planned)
        by_day: dict[date, dict[int, Counted]] = defaultdict(dict)
        for plan, was_filled in zip(planned, filled, strict=True):
            entry, version = plan.entry, plan.after.version
            # An entry the reconciler filled had its usage counted there.
            usage = None if was_filled else usage_of(entry, plan.record.operation)
            by_day[entry.day][version] = Counted(
                version, usage if usage and usage.day == entry.day else None
            )
            if usage is not None and usage.day != entry.day:
                by_day[usage.day][version] = Counted(version, usage, indexed=False)
        for day, counted in sorted(by_day.items()):
            self._usage.count(account_id, day, list(counted.values()))
        if written.version > head.version:
            self._entries.advance_head(account_id, written)
        if missing is None and written.version < todo[-1].version:
            # A version below was never delivered (sent to the on-failure destination): the
            # head waits there, so recovery stays cautious, until the reconciler fills it.
            logger.error("ledger gap", extra={"accountId": account_id, "after": written.version})
        if missing is not None:
            raise missing

    def _write(self, plan: _Planned, expires_at: int) -> bool:
        """Write one version's entry, then (only then) let its record expire; True when
        the reconciler had filled the entry first."""
        filled = self._entries.put(plan.entry) is EntryWrite.FILLED
        self._holds.record(plan.entry)  # a hold step's HOLD item (no-op for other entries)
        self._lots.record(plan.entry)  # the LOT item of a lot it opened (no-op otherwise)
        record, after = plan.record, plan.after
        self._records.finalize(
            after.account_id,
            record.idempotency_key,
            op_id=record.op_id,
            result=result_of(record.op_id, record.operation, after),
            sequence=after.version,
            expires_at=expires_at,
        )
        return filled

    def _in_parallel(
        self, write: Callable[[_Planned], bool], planned: list[_Planned]
    ) -> list[bool]:
        if len(planned) <= 1:
            return [write(plan) for plan in planned]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=PARALLEL_WRITES)
        return list(self._pool.map(write, planned))


@dataclass(frozen=True)
class _Planned:
    after: Account
    record: IdempotencyRecord
    entry: LedgerEntry


def _record_for(
    after: Account, records: dict[tuple[str, str], IdempotencyRecord]
) -> IdempotencyRecord:
    op = after.last_op
    if op is None:
        raise MaterializationError(f"version {after.version} names no operation")
    record = records.get((after.account_id, op.key))
    if record is None or record.op_id != op.id:
        raise MaterializationError(
            f"version {after.version}: no idempotency record for operation {op.id}"
        )
    return record
