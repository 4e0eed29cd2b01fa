"""`python -m bench [--quick] [--skip-build | --build] [--only SECTION,...]`

Starts DynamoDB Local, runs every benchmark in one process and writes
bench/results/<name>.json, <name>.md and latency_vs_concurrency.png (name: `latest` for
the full run, `quick` for `--quick`). Exits non-zero when a section fails or an accounting
check fails (never on a timing: figures are reported, not asserted).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    PROJECT_ROOT,
    baselines,
    coldstart,
    contention,
    holds,
    lag,
    lots,
    reads,
    report,
    writes,
)
from bench.env import Environment, quiet, say, unique
from bench.sizes import FULL, QUICK, Sizes
from devtools.dynamodb_local import DynamoDBLocal, find_jar

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
SECTIONS = (
    "costs",
    "overhead",
    "reads",
    "baselines",
    "contention",
    "holds",
    "lots",
    "lag",
    "cold_start",
)

NOTES = [
    "DynamoDB Local is not DynamoDB: absolute latencies and throughput are Local's on this "
    "machine, which runs the Java server and the Python workers on the same CPUs (shared "
    "with other work while the suite ran). Compare figures within one run (ratios, "
    "side-by-side rows); the per-partition ceiling comes from AWS's published limit "
    "(1,000 WCU/s), not from Local.",
    "Capacity units are computed from item sizes by AWS's published rules; DynamoDB Local's "
    "`ConsumedCapacity` is shown next to them. A debit's write units include the "
    "Materializer's writes (ledger entry, record finalize, and the usage item and ledger head "
    "once per account and stream batch, amortised over the batch measured).",
    "Contention workers are threads in one Python process, each with its own boto3 client and "
    "ledger (like separate Lambda instances); at 32 workers client-side CPU and the GIL "
    "compete with DynamoDB Local for the same cores, so part of the slowdown is the machine. "
    "This design and the baseline run at each worker count in alternating order; the stream "
    "is drained after each run of this design (not timed) before its ledger is checked.",
    "Handler timings run with Powertools tracing disabled (no X-Ray daemon locally); metrics "
    "and logs are serialised and written to /dev/null. Import timings run with the "
    "function's environment as deployed (Lambda variables set, tracing on).",
    "Before the first section the suite runs debits and reads on DynamoDB Local for "
    "`warmup_seconds` (15 s full, 3 s quick) so its JIT has settled; each timed loop also "
    "discards its first `warmup` calls.",
    "Seeded ledgers are written in the materializer's layout: `SEQ#<sequence>` entries with "
    "BatchWriteItem (the store's `to_item` and `keys`), daily usage items with their "
    "sequence range through the usage store, the ledger head, and the account item at the "
    "matching version.",
]


def _commit() -> str:
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - read-only
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
    except OSError:
        return "unknown"
    return completed.stdout.strip() or "unknown"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (CI)")
    build = parser.add_mutually_exclusive_group()
    build.add_argument("--skip-build", action="store_true", help="never run `sam build`")
    build.add_argument("--build", action="store_true", help="always run `sam build` first")
    parser.add_argument(
        "--only", default="", help=f"comma-separated sections to run ({','.join(SECTIONS)})"
    )
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--name", default=None, help="report file name (default: latest/quick)")
    parser.add_argument(
        "--render",
        type=Path,
        default=None,
        metavar="JSON",
        help="only re-render the Markdown and chart of an earlier run's JSON",
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    sizes: Sizes = QUICK if args.quick else FULL
    wanted = [s.strip() for s in args.only.split(",") if s.strip()] or list(SECTIONS)
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"unknown sections: {unknown}")
    started = time.perf_counter()
    result: dict[str, Any] = {
        "meta": {
            "mode": sizes.name,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "sizes": sizes.__dict__,
            "machine": {
                "cpus": os.cpu_count(),
                "platform": f"{platform.system()} {platform.machine()}",
                "python": platform.python_version(),
            },
            "dynamodb_local": find_jar().parent.name,
            "commit": _commit(),
            "section_seconds": {},
        },
        "notes": NOTES,
    }
    failures: list[str] = []
    with quiet(), DynamoDBLocal() as local:
        env = Environment(local.endpoint)
        say(f"[warm-up] {sizes.warmup_seconds:g} s of debits and reads on DynamoDB Local")
        writes.warm_up(env, sizes.warmup_seconds)
        steps: dict[str, Callable[[], Any]] = {
            "costs": lambda: writes.write_costs(env, sizes.op_samples, sizes.materializer_batch),
            "overhead": lambda: {"debit": writes.debit_overhead(env, sizes)},
            "reads": lambda: reads.reads(env, sizes),
            "baselines": lambda: baselines.baselines(
                env, sizes.samples, sizes.warmup, sizes.baseline_workers, sizes.baseline_debits
            ),
            "contention": lambda: contention.contention(
                env, sizes.concurrency, sizes.hot_account_debits, sizes.contention_repeats
            ),
            "holds": lambda: holds.holds(
                env, sizes.hold_workers, sizes.hold_pairs, sizes.contention_repeats
            ),
            "lots": lambda: lots.lots(env, sizes.lot_workers, sizes.lot_debits, sizes.lot_repeats),
            "lag": lambda: lag.lag(env, sizes.lag_workers, sizes.lag_debits),
            "cold_start": lambda: cold_start(env, sizes, args),
        }
        for name in SECTIONS:
            if name not in wanted:
                continue
            say(f"[{name}]")
            section_started = time.perf_counter()
            try:
                value = steps[name]()
            except Exception as exc:  # reported, and the exit code says so
                traceback.print_exc(file=sys.stderr)
                value = {"error": f"{type(exc).__name__}: {exc}"}
                failures.append(f"{name}: {value['error']}")
            if name == "overhead" or (name == "reads" and "overhead" in value):
                result.setdefault("overhead", {}).update(
                    value if name == "overhead" else value["overhead"]
                )
            if name != "overhead":
                result[name] = value
            elapsed = round(time.perf_counter() - section_started, 1)
            result["meta"]["section_seconds"][name] = elapsed
            say(f"  ({elapsed} s)")
    result["meta"]["duration_s"] = round(time.perf_counter() - started, 1)
    failures += _accounting_failures(result)
    result["meta"]["failures"] = failures
    return result, failures


def cold_start(env: Environment, sizes: Sizes, args: argparse.Namespace) -> dict[str, Any]:
    account_id = unique("cold")
    env.create_account(env.ledger(env.store()), account_id, 1_000)
    idempotency_table = baselines.create_idempotency_table(env)
    imports = coldstart.import_times(env, sizes.import_runs)
    # The ratios are the headline: more runs than the per-function table (taking turns).
    versus = coldstart.compare(
        env,
        2 * sizes.import_runs + 1,
        lambda key: writes.debit_event(account_id, key),
        idempotency_table,
    )
    return {
        "imports": imports,
        "debit_versus_baselines": versus,
        "artifacts": coldstart.artifacts(env, skip_build=args.skip_build, force_build=args.build),
    }


def _accounting_failures(result: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for row in result.get("contention", {}).get("one_account", []) or []:
        for name in (contention.DESIGN, contention.BASELINE):
            if not row[name]["correct"]:
                problems.append(f"contention {name} x{row['workers']}: {row[name]['problems']}")
    problems += holds.failures(result.get("holds", {}))
    problems += lots.failures(result.get("lots", {}))
    lag_section = result.get("lag", {})
    for run_ in [*(lag_section.get("runs") or []), *(lag_section.get("in_thread") or [])]:
        if run_["missing_after_deadline"] or run_["failures"]:
            problems.append(
                f"lag x{run_['workers']}: {run_['missing_after_deadline']} entries never "
                f"readable, failures {run_['failures']}"
            )
    for name in ("this_design", "bare_update", "powertools_idempotency"):
        peer = result.get("baselines", {}).get(name)
        if peer and not peer["concurrent"]["correct"]:
            problems.append(f"baseline {name} not exact: {peer['concurrent']}")
    reads_section = result.get("reads", {})
    if reads_section.get("skipped"):
        problems.append(f"reads: {reads_section['reason']}")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.render is not None:
        result = json.loads(args.render.read_text(encoding="utf-8"))
        name = args.name or args.render.stem
        failures = list(result["meta"].get("failures", []))
    else:
        name = args.name or ("quick" if args.quick else "latest")
        result, failures = run(args)
    output: Path = args.output_dir
    output.mkdir(parents=True, exist_ok=True)
    if args.render is None:
        report.write_json(result, output / f"{name}.json")
    chart_name = "latency_vs_concurrency.png" if name == "latest" else f"{name}_latency.png"
    drew = report.chart(result, output / chart_name)
    text = report.markdown(result)
    if chart_name != "latency_vs_concurrency.png":
        text = text.replace("latency_vs_concurrency.png", chart_name)
    (output / f"{name}.md").write_text(text + "\n", encoding="utf-8")
    say(f"wrote {output / name}.json, {name}.md" + (f", {chart_name}" if drew else ""))
    say(f"total {result['meta']['duration_s']} s")
    for line in report.headline(result):
        say(f"- {line}")
    if failures:
        say("FAILED:\n  " + "\n  ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
