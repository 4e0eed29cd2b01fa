"""The benchmark suite's own arithmetic and report, without DynamoDB (milliseconds).

The suite itself runs in CI as `make bench-quick`; these tests pin what its figures rest
on: AWS's item-size and capacity rules, the import-time parser, and that a report renders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import capacity, coldstart, contention, report, stats


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 1),
        ("1", 2),
        ("12", 2),
        ("123", 3),
        ("1000000", 2),  # trailing zeros are trimmed
        ("0.000001", 2),  # and leading ones
        ("-5", 3),
        ("123456.789", 6),
    ],
)
def test_number_sizes_follow_awss_rule(value: str, expected: int) -> None:
    assert capacity.number_size(value) == expected


def test_item_size_sums_names_and_values() -> None:
    item: dict[str, Any] = {
        "pk": {"S": "ACCOUNT#a1"},  # 2 + 10
        "n": {"N": "42"},  # 1 + 2
        "ok": {"BOOL": True},  # 2 + 1
        "m": {"M": {"k": {"S": "v"}}},  # 1 + 3 + (1 + 1 + 1)
        "l": {"L": [{"S": "ab"}, {"NULL": True}]},  # 1 + 3 + (1 + 2) + (1 + 1)
        "é": {"S": "é"},  # 2 + 2 (UTF-8)
    }
    assert capacity.item_size(item) == 12 + 3 + 3 + 7 + 9 + 4


def test_capacity_units_round_up_and_scale() -> None:
    assert capacity.write_units(1) == 1
    assert capacity.write_units(1024) == 1
    assert capacity.write_units(1025) == 2
    assert capacity.write_units(300, transactional=True) == 2
    assert capacity.read_units(0, consistent=False) == 0.5  # a miss still costs the minimum
    assert capacity.read_units(4096, consistent=True) == 1
    assert capacity.read_units(15_000, consistent=False) == 2  # 4 units, halved
    assert capacity.read_units(100, consistent=True, transactional=True) == 2


def test_tally_summarises_units_per_partition_key_prefix() -> None:
    tally = capacity.Tally(
        [
            capacity.Call(
                "UpdateItem",
                write_units=2.0,
                write_units_by_pk={"ACCOUNT#a": 1.0, "LEDGER#a": 1.0},
                local_reported_units=2.0,
            ),
            capacity.Call("GetItem", read_units=0.5, items_returned=1, items_scanned=1),
        ]
    )
    summary = tally.summary()
    assert summary["requests"] == 2
    assert summary["by_operation"] == {"UpdateItem": 1, "GetItem": 1}
    assert summary["write_units_by_pk_prefix"] == {"ACCOUNT": 1.0, "LEDGER": 1.0}
    assert summary["local_reported_units"] == 2.0


def test_importtime_lines_parse_with_depth() -> None:
    stderr = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:       120 |        120 |   _io",
            "import time:       300 |       1500 | functions.debit.app",
            "import time:        80 |         80 |     serverless_credits.storage.keys",
            "some other line",
        ]
    )
    rows = coldstart._parse_importtime(stderr)
    assert rows == [
        (1, 120, 120, "_io"),
        (0, 300, 1500, "functions.debit.app"),
        (2, 80, 80, "serverless_credits.storage.keys"),
    ]


def test_latency_percentiles() -> None:
    samples = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    summary = stats.latency(samples)
    assert summary["n"] == 100
    assert summary["p50_ms"] == pytest.approx(50.5)
    assert summary["p99_ms"] == pytest.approx(99.0)
    assert stats.latency([]) == {"n": 0}


def _design_run(workers: int, rate: float, p99: float) -> dict[str, Any]:
    return {
        "workers": workers,
        "debits_per_second": rate,
        "latency": {"p50_ms": 30.0, "p99_ms": p99},
        "gave_up": 0,
        "attempts_per_debit": 1.0,
        "updates_per_success": 1.1,
        "correct": True,
        "problems": [],
    }


def _minimal_report() -> dict[str, Any]:
    debit = capacity.Tally(
        [
            capacity.Call(
                "PutItem",
                write_units=1.0,
                write_units_by_pk={"IDEMPOTENCY#a#k": 1.0},
                write_items=[{"action": "Put", "pk": "IDEMPOTENCY#a#k", "bytes": 400, "units": 1}],
            ),
            capacity.Call(
                "UpdateItem",
                write_units=1.0,
                write_units_by_pk={"ACCOUNT#a": 1.0},
                write_items=[{"action": "Update", "pk": "ACCOUNT#a", "bytes": 439, "units": 1}],
            ),
        ]
    ).summary()
    rows = [
        {
            "workers": workers,
            "this_design": _design_run(workers, 100.0, 180.0),
            "powertools_idempotency": _design_run(workers, 125.0, 200.0),
            "ratio": 0.8,
        }
        for workers in (1, 16)
    ]
    return {
        "meta": {
            "mode": "quick",
            "started_at": "2026-01-01T00:00:00+00:00",
            "duration_s": 1.0,
            "machine": {"cpus": 2, "platform": "Linux x86_64", "python": "3.11"},
            "dynamodb_local": "local",
            "commit": "abc",
        },
        "costs": {
            "operations": {"debit": debit},
            "materializer": {"debits": 100, "read_units_per_debit": 1.0},
            "debit_write_units": {
                "writer": 3.0,
                "materializer_per_debit": 2.02,
                "total_per_debit": 5.02,
                "total_per_debit_lone": 7.0,
                "target": 5,
                "meets_target": False,
                "items": [{"item": "account (UpdateItem)", "bytes": 439, "units": 1.0}],
            },
            "balance_partition": {
                "write_units_per_debit": 1.0,
                "items_per_debit_on_account_key": 1,
                "account_item_bytes": 439,
                "max_debits_per_second_one_account": 1000.0,
            },
        },
        "contention": {
            "one_account": rows,
            "debits_per_run": 100,
            "funded_per_run": 90,
            "repeats": 1,
            "targets": contention.verdict(rows),
        },
        "lag": {
            "runs": [
                {
                    "workers": 1,
                    "measured": 10,
                    "debits_per_second": 50.0,
                    "lag": {"p50_ms": 80.0, "p90_ms": 120.0, "p99_ms": 150.0},
                    "missing_after_deadline": 0,
                    "poll_interval_ms": 50.0,
                    "deadline_s": 30.0,
                }
            ]
        },
        "reads": {"skipped": True, "reason": "handler code missing"},
        "notes": ["a caveat"],
    }


def test_targets_are_judged_at_16_workers() -> None:
    targets = _minimal_report()["contention"]["targets"]
    assert targets["measured"]
    assert targets["ratio_ok"]
    assert targets["p99_ok"]
    assert targets["all_met"]


def test_report_renders_markdown_json_and_chart(tmp_path: Path) -> None:
    data = _minimal_report()
    text = report.markdown(data)
    assert "ceiling **1,000 debits/s per account**" in text
    assert "| debit (warm function) | 1 PutItem + 1 UpdateItem |" in text
    assert "Not measured: handler code missing" in text
    assert "| 16 | 100 | 125 | 0.8x |" in text
    assert "Materialization lag" in text
    assert any("5.02 write units per debit" in line for line in report.headline(data))
    report.write_json(data, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["meta"]["mode"] == "quick"
    assert report.chart(data, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
