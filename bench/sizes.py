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
    materializer_batch: int  # debits materialized in one stream batch when pricing it
    concurrency: tuple[int, ...]  # workers in the contention runs (one account)
    hot_account_debits: int  # debits attempted per contention run
    contention_repeats: int  # runs per approach and worker count (alternating order)
    baseline_workers: int  # concurrent workers for the naive and Powertools baselines
    baseline_debits: int
    lag_debits: int  # debits whose materialization lag is measured, per load level
    lag_workers: tuple[int, ...]  # load levels of the lag measurement
    scale_entries: tuple[int, int]  # ledger entries in the small and the large account
    import_runs: int  # fresh interpreters per function for the import-time median
    hold_workers: tuple[int, ...]  # workers in the holds rate runs (one account)
    hold_pairs: int  # reserve+capture pairs (and debits beside them) per holds rate run
    lot_workers: tuple[int, ...]  # workers in the lots rate runs (one account)
    lot_debits: int  # debits per lots rate run (and per debit/baseline run beside them)
    lot_repeats: int  # runs per lot configuration and worker count (rotating order)


FULL = Sizes(
    name="full",
    warmup=20,
    warmup_seconds=15.0,
    samples=200,
    op_samples=50,
    materializer_batch=100,
    concurrency=(1, 4, 16, 32),
    hot_account_debits=320,
    contention_repeats=3,
    baseline_workers=16,
    baseline_debits=320,
    lag_debits=300,
    lag_workers=(1, 16),
    scale_entries=(1_000, 100_000),
    import_runs=5,
    hold_workers=(1, 16),
    hold_pairs=320,
    lot_workers=(1, 16),
    lot_debits=320,
    lot_repeats=2,
)

QUICK = Sizes(
    name="quick",
    warmup=5,
    warmup_seconds=3.0,
    samples=30,
    op_samples=10,
    materializer_batch=25,
    concurrency=(1, 4, 16, 32),
    hot_account_debits=96,
    contention_repeats=1,
    baseline_workers=16,
    baseline_debits=96,
    lag_debits=40,
    lag_workers=(1, 16),
    scale_entries=(1_000, 5_000),
    import_runs=3,
    hold_workers=(1, 16),
    hold_pairs=32,
    lot_workers=(1, 16),
    lot_debits=48,
    lot_repeats=1,
)
