"""The lots benchmark's own arithmetic and checks, without DynamoDB (milliseconds): the lot
sizes of a run, the burn-order replay that judges every run, and the section's rendering."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from bench import contention, lots, lots_report
from serverless_credits.domain.lots import new_lot_id
from serverless_credits.domain.models import EntryType, LedgerEntry

AT = datetime(2026, 1, 1, tzinfo=UTC)
FIRST = new_lot_id(90, None, AT, salt="aaaa")
SECOND = new_lot_id(50, None, AT, salt="bbbb")


def _entry(sequence: int, kind: EntryType, amount: int, allocation: dict[str, int]) -> LedgerEntry:
    return LedgerEntry.model_validate(
        {
            "account_id": "acct_bench",
            "sequence": sequence,
            "transaction_id": f"txn_{sequence}",
            "type": kind,
            "amount": Decimal(amount),
            "balance_after": Decimal(0),
            "created_at": AT,
            "lots": {lot: Decimal(share) for lot, share in allocation.items()},
        }
    )


def _granted() -> list[LedgerEntry]:
    return [
        _entry(1, EntryType.GRANT, 5, {FIRST: 5}),
        _entry(2, EntryType.GRANT, 7, {SECOND: 7}),
    ]


def test_run_out_lots_hold_the_funded_debits_in_sizes_no_debit_divides() -> None:
    sizes = lots.lot_sizes(lots.Shape(25, runs_out=True), 320)
    assert len(sizes) == 25
    assert sum(sizes) == lots.DEBIT_CREDITS * contention.plan(320)
    assert max(sizes) - min(sizes) <= 1
    assert any(size % lots.DEBIT_CREDITS for size in sizes)


def test_the_top_lot_covers_every_debit_when_none_runs_out() -> None:
    sizes = lots.lot_sizes(lots.Shape(5, runs_out=False), 320)
    assert sizes[0] > lots.DEBIT_CREDITS * 320
    assert len(sizes) == 5


def test_replay_accepts_debits_in_burn_order_across_a_boundary() -> None:
    entries = [
        *_granted(),
        _entry(3, EntryType.DEBIT, -3, {FIRST: -3}),
        _entry(4, EntryType.DEBIT, -3, {FIRST: -2, SECOND: -1}),
    ]
    left, across, problems = lots.replay_burns(entries)
    assert problems == []
    assert across == 1
    assert left == {SECOND: Decimal(6)}


def test_replay_flags_a_debit_that_burned_a_lower_ranked_lot_first() -> None:
    entries = [*_granted(), _entry(3, EntryType.DEBIT, -3, {SECOND: -3})]
    _, _, problems = lots.replay_burns(entries)
    assert problems
    assert "burned" in problems[0]


def test_replay_flags_a_debit_that_left_a_lot_it_moved_past_unemptied() -> None:
    entries = [*_granted(), _entry(3, EntryType.DEBIT, -6, {FIRST: -4, SECOND: -2})]
    _, _, problems = lots.replay_burns(entries)
    assert problems
    assert "took" in problems[0]


def _config(shape: lots.Shape, gave_up: int) -> dict[str, Any]:
    return {
        "shape": shape.name,
        "label": shape.label,
        "lots": shape.lots,
        "debits_per_second": 50.0,
        "vs_single_lot": 0.5,
        "vs_baseline": 0.4,
        "latency": {"p50_ms": 10.0, "p99_ms": 90.0},
        "attempts_per_debit": 1.5,
        "reads_per_debit": 0.1,
        "write_units_per_debit": 4.5,
        "lots_emptied_per_run": 25.0,
        "debits_across_lots_per_run": 9.0,
        "gave_up": gave_up,
        "correct": True,
        "problems": [],
    }


def test_the_section_renders_sizes_sweep_and_rates() -> None:
    debits = {
        "debits_per_second": 100.0,
        "latency": {"p50_ms": 5.0, "p99_ms": 20.0},
        "attempts_per_debit": 1.0,
        "gave_up": 0,
        "correct": True,
    }
    level = {
        "lots": 30,
        "open_holds": 50,
        "amounts": "long",
        "account_item_bytes": 4200,
        "debit": {
            "write_units": 7.0,
            "account_write_units": 5.0,
            "local_reported_units": 7.0,
            "account_updates": 1,
        },
        "max_changes_per_second_one_account": 200.0,
    }
    step = {
        "by_operation": {"Query": 16},
        "read_units": 8.0,
        "write_units": 0.0,
        "account_updates": 0,
        "materializer": {"write_units_per_step": 0.0, "write_units_per_batch": 0.0},
    }
    cost = {
        "requests": 6.0,
        "read_units": 2.0,
        "write_units": 4.0,
        "materializer_write_units": 3.0,
        "account_updates": 1.0,
    }
    report: dict[str, Any] = {
        "lots": {
            "sizes": {
                "levels": [level],
                "max_lots_on_item": 30,
                "max_active_lots": 25,
                "refused_grant": {},
            },
            "sweep": {"sweeps": {"0": step}, "per_lot": {"24": cost}, "backdate_seconds": 600.0},
            "rate": {
                "one_account": [
                    {
                        "workers": 16,
                        "this_design": debits,
                        "powertools_idempotency": debits,
                        "configs": [_config(lots.SHAPES[2], gave_up=3)],
                    }
                ],
                "debit_credits": "3",
                "debits_per_run": 320,
                "funded_debits_when_run_out": 288,
                "repeats": 2,
            },
        }
    }
    text = "\n".join(lots_report.section(report))
    assert "## 9. Lots" in text
    assert "| 30 lots + 50 holds (15-digit amounts) | 4,200 |" in text
    assert "25 lots, lots run out" in text
    headline = " ".join(lots_report.headline(report))
    assert "**over** the budget of 4 KB" in headline
    assert "3 gave up" in headline
