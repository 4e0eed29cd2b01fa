"""How much each benchmark does: full sizes for `make bench`, small ones for `--quick` (CI)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    name: str
    warmup: int  # calls before timing starts (caches, connections, JIT of DynamoDB Local)
    warmup_seconds: float  # DynamoDB Local exercised before the first section
    samples: int  # timed calls per operation (handler overhead, read timings)
    op_samples: int  # timed calls per operation in the cost table
    concurrency: tuple[int, ...]  # workers in the contention runs
    hot_account_debits: int  # debits attempted per run on one account
    debits_per_run: int  # debits attempted per run spread over `spread_accounts`
    spread_accounts: int  # accounts in the "spread" contention runs
    baseline_workers: int  # concurrent workers for the naive and Powertools baselines
    baseline_debits: int
    scale_entries: tuple[int, int]  # ledger entries in the small and the large account
    import_runs: int  # fresh interpreters per function for the import-time median


FULL = Sizes(
    name="full",
    warmup=20,
    warmup_seconds=15.0,
    samples=200,
    op_samples=50,
    concurrency=(1, 4, 16, 64),
    hot_account_debits=256,
    debits_per_run=512,
    spread_accounts=64,
    baseline_workers=16,
    baseline_debits=320,
    scale_entries=(1_000, 100_000),
    import_runs=5,
)

QUICK = Sizes(
    name="quick",
    warmup=10,
    warmup_seconds=4.0,
    samples=40,
    op_samples=15,
    concurrency=(1, 4, 16, 64),
    hot_account_debits=128,
    debits_per_run=256,
    spread_accounts=64,
    baseline_workers=16,
    baseline_debits=128,
    scale_entries=(1_000, 10_000),
    import_runs=3,
)
