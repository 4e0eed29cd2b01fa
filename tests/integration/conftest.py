"""What the ledger's integration tests share: reading back an account's whole ledger and
checking the invariants SPEC.md lists under "Ledger rules"."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest

from devtools.streams import materializer_poller
from serverless_credits.domain.models import Account, DailyUsage, EntryType, LedgerEntry, utc_now
from serverless_credits.storage.store import CreditsStore


@dataclass(frozen=True)
class LedgerSnapshot:
    account: Account
    entries: list[LedgerEntry]  # oldest first

    def of_type(self, entry_type: EntryType) -> list[LedgerEntry]:
        return [entry for entry in self.entries if entry.type is entry_type]


class LedgerAudit:
    """Reads an account back (consistently, once the stream is materialized) and proves the
    ledger rules hold for it."""

    def __init__(self, store: CreditsStore, materialize: Callable[[], int]) -> None:
        self.store = store
        self.materialize = materialize

    def snapshot(self, account_id: str) -> LedgerSnapshot:
        self.materialize()
        account = self.store.accounts.get(account_id, consistent=True)
        assert account is not None, f"account {account_id} is missing"
        entries, more = self.store.entries.page(account_id, limit=100_000, newest_first=False)
        assert more is None
        return LedgerSnapshot(account, entries)

    def check(self, account_id: str) -> LedgerSnapshot:
        """balance == sum(amounts); each balanceAfter == previous + amount; a gapless
        sequence 1..N equal to the account's version; the overdraft floor; total - used."""
        snapshot = self.snapshot(account_id)
        account, entries = snapshot.account, snapshot.entries
        assert [e.sequence for e in entries] == list(range(1, len(entries) + 1))
        assert account.version == len(entries)
        previous = Decimal(0)
        for entry in entries:
            assert entry.balance_after == previous + entry.amount, entry
            assert entry.balance_after >= -account.overdraft_limit, entry
            previous = entry.balance_after
        assert account.balance == sum((e.amount for e in entries), Decimal(0)) == previous
        assert account.balance >= -account.overdraft_limit
        assert account.total - account.used == account.balance
        assert account.available == account.balance - account.reserved
        if entries:
            assert entries[-1].available_after == account.available
        created = [e.created_at for e in entries]
        assert created == sorted(created)
        assert len(set(created)) == len(created)
        assert len({e.transaction_id for e in entries}) == len(entries)
        return snapshot

    def usage(self, account_id: str) -> DailyUsage:
        """The account's usage summed over yesterday and today (a run may cross midnight)."""
        today = utc_now().date()
        rows = self.store.usage.daily(account_id, today - timedelta(days=1), today)
        total = DailyUsage(day=today)
        for row in rows:
            total = total.model_copy(
                update={
                    "calls": total.calls + row.calls,
                    "failed": total.failed + row.failed,
                    "credits_used": total.credits_used + row.credits_used,
                }
            )
        return total


@pytest.fixture
def local_materialize(local_store: CreditsStore) -> Callable[[], int]:
    """Run the materializer over DynamoDB Local's stream of the test's table."""
    return materializer_poller(local_store.client, local_store.table_name).drain


@pytest.fixture
def audit(local_store: CreditsStore, local_materialize: Callable[[], int]) -> LedgerAudit:
    return LedgerAudit(local_store, local_materialize)
