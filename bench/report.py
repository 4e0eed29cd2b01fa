"""The report: JSON (everything measured), Markdown (the tables) and a PNG chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OPERATION_LABELS = {
    "debit": "debit (warm function)",
    "debit_cold": "debit (cold function)",
    "topup": "top-up",
    "void": "void (a service gives back its own failed call)",
    "balance": "balance",
    "transactions_page": "transactions page (50)",
    "transactions_next_page": "next page (cursor)",
    "transactions_filtered": "filtered page (type=refund, none match)",
    "stats_7d": "stats 7 days",
    "stats_30d": "stats 30 days",
    "stats_90d": "stats 90 days",
    "summary": "account summary",
}


def write_json(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=2, sort_keys=False, default=str) + "\n")


def _page(page: dict[str, Any] | None) -> str:
    """What a transactions page returned, for the scale table ("-" for other reads)."""
    if not page:
        return "-"
    if page.get("partial"):
        return f"{page['entries']} (partial, cursor)"
    return f"{page['entries']}" + (" (more)" if page.get("has_more") else " (last page)")


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:,.{digits}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_fmt(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def _section_error(report: dict[str, Any], name: str) -> list[str]:
    section = report.get(name)
    if isinstance(section, dict) and "error" in section:
        return [f"Not measured: `{section['error']}`", ""]
    if isinstance(section, dict) and section.get("skipped"):
        return [f"Not measured: {section.get('reason')}", ""]
    return []


def headline(report: dict[str, Any]) -> list[str]:  # noqa: PLR0912 - one per figure
    """The figures worth quoting, as sentences (also copied into bench/README.md)."""
    lines: list[str] = []
    costs = report.get("costs", {})
    debit = costs.get("operations", {}).get("debit")
    partition = costs.get("balance_partition", {})
    units = costs.get("debit_write_units")
    if debit and units:
        lines.append(
            f"A debit is {debit['requests']} requests in the Debit function (lease PutItem, "
            f"account UpdateItem, completion UpdateItem) = {_fmt(units['writer'])} write units, "
            f"plus {_fmt(units['materializer_per_debit'], 2)} written by the Materializer "
            f"(entry, record finalize; usage and head once per batch of "
            f"{costs.get('materializer', {}).get('debits')}) = "
            f"**{_fmt(units['total_per_debit'], 2)} write units per debit** (target <= "
            f"{units['target']}: {'met' if units['meets_target'] else 'NOT met'}; "
            f"{_fmt(units['total_per_debit_lone'], 2)} for a debit alone in its batch), "
            f"**{_fmt(partition.get('write_units_per_debit'))} on the account's partition** "
            f"(account item {partition.get('account_item_bytes')} B): at most "
            f"{_fmt(partition.get('max_debits_per_second_one_account'), 0)} debits/s per account "
            f"by DynamoDB's 1,000 WCU/partition limit."
        )
    overhead = report.get("overhead", {})
    entry = overhead.get("debit")
    if isinstance(entry, dict) and "ratio_p50" in entry:
        lines.append(
            f"One worker: a debit through the handler takes {_fmt(entry['handler']['p50_ms'], 2)} "
            f"ms (p50) against {_fmt(entry['bare']['p50_ms'], 2)} ms for the bare account "
            f"UpdateItem it issues (**{_fmt(entry['ratio_p50'], 2)}x**: the price of "
            f"idempotency, 3 round trips) and {_fmt(entry['bare_requests']['p50_ms'], 2)} ms "
            f"for its 3 requests replayed bare ({_fmt(entry['ratio_p50_over_bare_requests'], 2)}x)."
        )
    parts = [
        f"{label} {_fmt(overhead[name]['ratio_p50'], 2)}x"
        for name, label in (("balance", "balance"), ("transactions_page", "transactions page"))
        if name in overhead and isinstance(overhead[name], dict) and "ratio_p50" in overhead[name]
    ]
    if parts:
        lines.append("Read handler time / bare DynamoDB call time (p50): " + ", ".join(parts) + ".")
    contention = report.get("contention", {})
    rows = contention.get("one_account") or []
    if rows:
        runs = "; ".join(
            f"{_workers(r['workers'])} {_fmt(r['this_design']['debits_per_second'])}/s vs "
            f"{_fmt(r['powertools_idempotency']['debits_per_second'])}/s "
            f"(**{_fmt(r['ratio'], 2)}x**, p50/p99 "
            f"{_fmt(r['this_design']['latency'].get('p50_ms'), 0)}/"
            f"{_fmt(r['this_design']['latency'].get('p99_ms'), 0)} ms)"
            for r in rows
        )
        design = [r["this_design"] for r in rows]
        gave_up = sum(d["gave_up"] for d in design)
        attempts = max(d["attempts_per_debit"] or 0 for d in design)
        exact = all(d["correct"] for d in design)
        lines.append(
            f"One hot account, this design vs Powertools idempotency + conditional update in "
            f"the same run: {runs}. Give-ups: {gave_up}; account UpdateItems per debit at most "
            f"{_fmt(attempts, 2)}; chain exact after draining the stream in every run: "
            f"{'yes' if exact else 'NO'}."
        )
        targets = contention.get("targets", {})
        if targets.get("measured"):
            lines.append(
                f"Targets at {targets['workers']} workers: rate >= {targets['min_ratio']}x the "
                f"baseline: {_fmt(targets['ratio'], 2)}x {_ok(targets['ratio_ok'])}; p99 <= "
                f"{_fmt(targets['max_p99_ms'], 0)} ms: {_fmt(targets['p99_ms'], 0)} ms "
                f"{_ok(targets['p99_ok'])}; zero give-ups: {targets['gave_up']} "
                f"{_ok(targets['gave_up_ok'])}; exact chain: {_ok(targets['exact'])}."
            )
    lines += _holds_headline(report)
    from bench import lots_report  # noqa: PLC0415 - it formats with this module's helpers

    lines += lots_report.headline(report)
    lag_runs = report.get("lag", {}).get("runs") or []
    if lag_runs:
        in_thread = report.get("lag", {}).get("in_thread") or []
        lines.append(
            "Materialization lag (debit returned -> ledger entry readable, the Materializer's "
            f"stream poller in its own process, {_fmt(lag_runs[0]['poll_interval_ms'], 0)} ms "
            "idle poll): "
            + "; ".join(
                f"{_workers(r['workers'])} p50 {_fmt(r['lag'].get('p50_ms'), 0)} ms, p99 "
                f"{_fmt(r['lag'].get('p99_ms'), 0)} ms"
                for r in lag_runs
            )
            + "".join(
                f" (poller in a thread of the benchmark process, sharing the GIL with "
                f"{_workers(r['workers'])}: p50 {_fmt(r['lag'].get('p50_ms'), 0)} ms, p99 "
                f"{_fmt(r['lag'].get('p99_ms'), 0)} ms)"
                for r in in_thread
            )
            + "."
        )
    scale = report.get("reads", {}).get("scale", {})
    if scale:
        parts = []
        for name in ("balance", "transactions_page", "transactions_filtered", "stats_90d"):
            if name in scale:
                row = scale[name]
                parts.append(
                    f"{OPERATION_LABELS[name]} {row['small']['requests']} → "
                    f"{row['large']['requests']} requests, {row['small']['items_read']} → "
                    f"{row['large']['items_read']} items"
                )
        small = scale[next(iter(scale))]["small"]["ledger_entries"]
        large = scale[next(iter(scale))]["large"]["ledger_entries"]
        lines.append(
            f"Reads do not grow with the ledger ({small:,} → {large:,} entries): "
            + "; ".join(parts)
            + "."
        )
    imports = report.get("cold_start", {}).get("imports", {})
    if imports:
        measured = {k: v for k, v in imports.items() if "import_ms" in v}
        if measured:
            low = min(v["import_ms"] for v in measured.values())
            high = max(v["import_ms"] for v in measured.values())
            extra = [v["compile_without_pyc_ms"] for v in measured.values()]
            tops = [next(iter(v["heaviest_packages_ms"]), "") for v in measured.values()]
            top = max(set(tops), key=tops.count)
            layer = report.get("cold_start", {}).get("artifacts", {}).get("sizes", {})
            ships_pyc = layer.get("SharedLayer", {}).get("pyc_313_files", 0) > 0
            as_built = (
                "the build ships Python 3.13 bytecode, so Lambda skips this"
                if ships_pyc
                else "as built: no CPython 3.13 was at hand to compile it"
            )
            lines.append(
                f"Cold-start imports: {_fmt(low, 0)} to {_fmt(high, 0)} ms per function with "
                f"bytecode cached, plus {_fmt(min(extra), 0)} to {_fmt(max(extra), 0)} ms of "
                f"compiling when an artifact ships no .pyc ({as_built}); the heaviest package is "
                f"`{top}` in {tops.count(top)} of {len(tops)} functions."
            )
        versus = report.get("cold_start", {}).get("debit_versus_baselines")
        if versus:
            lines.append(_cold_versus(versus))
    peers = report.get("baselines", {})
    if peers.get("naive_get_put"):
        naive = peers["naive_get_put"]["concurrent"]
        lines.append(
            f"Naive GetItem + PutItem with {naive['workers']} workers: {naive['accepted']} "
            f"debits accepted for {naive['funded']} funded credits, "
            f"{naive['lost_updates']} lost updates."
        )
    return lines


def _cold_versus(versus: dict[str, Any]) -> str:
    targets, ratios = versus["targets"], versus["ratios"]
    debit, function = targets["debit_function"], targets["powertools_function"]
    literal = targets["powertools_pydantic_import"]
    return (
        f"Cold start, Debit function against the same debit written with Powertools + "
        f"pydantic alone: import + first call {_fmt(debit['import_and_first_call_ms'], 0)} "
        f"ms vs {_fmt(function['import_and_first_call_ms'], 0)} ms = "
        f"**{_fmt(ratios['import_and_first_call_vs_powertools_function'], 2)}x** (target <= "
        f"{versus['target']}; CPU "
        f"{_fmt(ratios['cpu_import_and_first_call_vs_powertools_function'], 2)}x), import "
        f"alone {_fmt(ratios['import_vs_powertools_function'], 2)}x; against the literal "
        f"`import aws_lambda_powertools, pydantic` ({_fmt(literal['import_ms'], 0)} ms): "
        f"{_fmt(ratios['import_vs_literal_import'], 2)}x import, "
        f"{_fmt(ratios['import_and_first_call_vs_literal_import'], 2)}x with the first call."
    )


def _cold_table(versus: dict[str, Any]) -> list[str]:
    targets, ratios = versus["targets"], versus["ratios"]
    labels = {
        "debit_function": "Debit function (`functions.debit.app`)",
        "powertools_function": "Powertools + pydantic function (`bench/powertools_function.py`)",
        "powertools_pydantic_import": "`import aws_lambda_powertools, pydantic`",
    }
    rows = [
        [
            labels.get(name, name),
            entry["import_ms"],
            entry.get("first_call_ms", "-"),
            entry.get("import_and_first_call_ms", "-"),
            entry["import_cpu_ms"],
            entry.get("import_and_first_call_cpu_ms", "-"),
            entry.get("modules_after_first_call", entry["modules_after_import"]),
        ]
        for name, entry in targets.items()
    ]
    target = versus["target"]

    def judged(name: str) -> str:
        value = ratios.get(name)
        if value is None:
            return "-"
        return f"{value}x ({'met' if value <= target else 'not met'})"

    runs = next(iter(targets.values()))["runs"]
    lines = [
        "The Debit function against the same debit written with Powertools and pydantic alone "
        "(`bench/powertools_function.py`: Logger, Tracer and Metrics decorators, a pydantic "
        "request model, a boto3 client and the idempotency utility with "
        "`DynamoDBPersistenceLayer` around one conditional `UpdateItem`; both trace botocore "
        "only) and the literal `import aws_lambda_powertools, pydantic` (lazy: it imports "
        "almost nothing, so it is no function). Fresh interpreters taking turns, the "
        "function's environment with a sampled trace header, bytecode cached; time from "
        "the first import to the end of the first invocation (a 1-credit debit on DynamoDB "
        "Local with a fresh key: the Debit function creates its client and reads the price "
        "list on this call, 4 requests; the Powertools function created its client while "
        f"importing, 3 requests), medians of {runs} runs.",
        "",
    ]
    lines += _table(
        [
            "Target",
            "Import ms",
            "First call ms",
            "Import + first call ms",
            "Import CPU ms",
            "Import + first call CPU ms",
            "Modules loaded",
        ],
        rows,
    )
    lines += [
        f"Debit function / Powertools function (target <= {target}x): import + first call "
        f"{judged('import_and_first_call_vs_powertools_function')}, CPU "
        f"{judged('cpu_import_and_first_call_vs_powertools_function')}; import alone "
        f"{judged('import_vs_powertools_function')}. Debit function / literal import: "
        f"import {judged('import_vs_literal_import')}, import + first call "
        f"{judged('import_and_first_call_vs_literal_import')}.",
        "",
    ]
    return lines


def markdown(report: dict[str, Any]) -> str:  # noqa: PLR0912 - one block per section
    meta = report["meta"]
    out: list[str] = [
        "# Benchmark report",
        "",
        f"Mode **{meta['mode']}**, {meta['started_at']}, {meta['duration_s']} s on "
        f"{meta['machine']['cpus']} CPUs ({meta['machine']['platform']}, Python "
        f"{meta['machine']['python']}), DynamoDB Local {meta['dynamodb_local']}, commit "
        f"`{meta['commit']}`. Generated by `python -m bench"
        f"{' --quick' if meta['mode'] == 'quick' else ''}`; all figures come from this one run.",
        "",
        "## Headline",
        "",
        *[f"- {line}" for line in headline(report)],
        "",
    ]

    # ------------------------------------------------------------ cost
    out += ["## 1. Requests and capacity per operation", ""]
    out += _section_error(report, "costs")
    costs = report.get("costs", {})
    operations = dict(costs.get("operations", {}))
    operations.update(report.get("reads", {}).get("costs", {}))
    if operations:
        out.append(
            "Capacity computed from the actual item sizes by AWS's rules (1 KB per write unit, "
            "4 KB per read unit, x2 transactional, eventually consistent reads half); "
            "DynamoDB Local's own `ConsumedCapacity` for comparison (it undercounts "
            "transactions). Warm function unless noted; *cold* = first call of a fresh "
            "function instance (price list / API-key mapping / account state not cached). "
            "p50 = median time of the whole operation through its entry point (the handler; "
            "top-up: `Ledger.top_up`) on a warm function."
        )
        out.append("")
        rows = []
        for name, label in OPERATION_LABELS.items():
            op = operations.get(name)
            if not op:
                continue
            rows.append(
                [
                    label,
                    " + ".join(f"{n} {k}" for k, n in op["by_operation"].items()),
                    op.get("cold_requests", "-"),
                    op["items_returned"],
                    op["read_bytes"],
                    op["read_units"],
                    op["write_units"],
                    op["write_units_by_pk_prefix"].get("ACCOUNT", 0.0),
                    op["local_reported_units"],
                    op.get("latency", {}).get("p50_ms"),
                ]
            )
        out += _table(
            [
                "Operation",
                "Requests",
                "Requests cold",
                "Items read",
                "Bytes read",
                "RCU",
                "WCU",
                "WCU on account partition",
                "Local reported",
                "p50 ms",
            ],
            rows,
        )
        units = costs.get("debit_write_units")
        if units:
            out.append(
                "Write units of one debit, item by item (sizes as written; the Materializer's "
                f"writes amortised over a stream batch of "
                f"{costs.get('materializer', {}).get('debits')} debits of one account):"
            )
            out.append("")
            out += _table(
                ["Item written", "Bytes", "WCU per debit"],
                [[row["item"], row["bytes"], f"{row['units']:.2f}"] for row in units["items"]]
                + [["**total**", "", f"**{units['total_per_debit']:.2f}**"]],
            )
            out.append(
                f"Total **{_fmt(units['total_per_debit'], 2)} WCU per debit** (target <= "
                f"{units['target']}: {'met' if units['meets_target'] else '**not met**'}); "
                f"{_fmt(units['total_per_debit_lone'], 2)} when a debit is alone in its batch. "
                f"The Materializer also reads "
                f"{_fmt(costs.get('materializer', {}).get('read_units_per_debit'), 2)} RCU per "
                "debit (the records, strongly consistent, and the head)."
            )
            out.append("")
        partition = costs.get("balance_partition")
        if partition:
            out.append(
                f"Account partition: {_fmt(partition['write_units_per_debit'])} WCU per debit "
                f"({partition['items_per_debit_on_account_key']} item on `ACCOUNT#<id>`, "
                f"{partition['account_item_bytes']} B) → ceiling "
                f"**{_fmt(partition['max_debits_per_second_one_account'], 0)} debits/s per "
                "account** (1,000 WCU/s per partition). Past it: split the balance into N "
                "sub-balances (docs/design-notes.md)."
            )
            out.append("")

    # ------------------------------------------------------------ overhead
    out += ["## 2. Handler overhead", ""]
    overhead = report.get("overhead", {})
    rows = []
    for name, label in (
        ("debit", "debit (Debit handler, direct invoke event)"),
        ("balance", "balance (GET /v1/credits/balance)"),
        ("transactions_page", "transactions page (GET /v1/credits/transactions)"),
    ):
        entry = overhead.get(name)
        if isinstance(entry, dict) and "handler" in entry:
            rows.append(
                [
                    label,
                    entry["bare_call"].split(" (")[0],
                    entry["handler"]["p50_ms"],
                    entry["bare"]["p50_ms"],
                    entry["added_p50_ms"],
                    f"{entry['ratio_p50']}x",
                ]
            )
            if name == "debit" and "bare_requests" in entry:
                rows.append(
                    [
                        "debit, against its 3 requests replayed bare",
                        "PutItem + UpdateItem + UpdateItem",
                        entry["handler"]["p50_ms"],
                        entry["bare_requests"]["p50_ms"],
                        round(entry["handler"]["p50_ms"] - entry["bare_requests"]["p50_ms"], 3),
                        f"{entry['ratio_p50_over_bare_requests']}x",
                    ]
                )
        elif isinstance(entry, dict) and "error" in entry:
            rows.append([label, "not measured", entry["error"], "", "", ""])
    if rows:
        out.append(
            "Median time of the full handler (event in, response out, Powertools logger/"
            "metrics/tracer decorators, tracing disabled) / median time of the bare DynamoDB "
            "call(s) it issued, replayed with identical parameters (writes on a mirror table "
            "holding the same account state), interleaved call by call on the same DynamoDB "
            "Local."
        )
        out.append("")
        out += _table(
            ["Operation", "Bare call", "Handler p50 ms", "Bare p50 ms", "Added ms", "Ratio"],
            rows,
        )

    # ------------------------------------------------------------ contention
    out += ["## 3. Contention on one account", ""]
    out += _section_error(report, "contention")
    contention = report.get("contention", {})
    if contention.get("one_account"):
        out.append(
            "Concurrent workers (threads, each its own client, store and ledger: one Lambda "
            "instance each) debiting 1 credit from ONE account, this design and the baseline "
            "(Powertools `idempotent_function` + `DynamoDBPersistenceLayer` around a plain "
            "conditional `UpdateItem`) at each worker count in alternating order, "
            f"{contention.get('repeats')} run(s) each of {contention.get('debits_per_run')} "
            f"debits on an account funded for {contention.get('funded_per_run')}. Debits/s = "
            "median over the runs; p50/p99 over every successful debit. *Gave up* = "
            "`ServiceBusy` (503) or `OperationInProgress` (409). *Updates/debit* = account "
            "`UpdateItem`s per debit requested (declined ones included; 1 = no retry). "
            "*Exact* = successes equal the funded debits, and after the stream is drained the "
            "ledger holds one entry per success with sequences 1..n, a `balanceAfter` chain "
            "that adds up to the balance, and the head at the account's version (the baseline: "
            "the balance moved by exactly the accepted debits)."
        )
        out.append("")
        rows = []
        for row in contention["one_account"]:
            design, base = row["this_design"], row["powertools_idempotency"]
            rows.append(
                [
                    row["workers"],
                    design["debits_per_second"],
                    base["debits_per_second"],
                    f"{row['ratio']}x",
                    design["latency"].get("p50_ms"),
                    design["latency"].get("p99_ms"),
                    base["latency"].get("p50_ms"),
                    base["latency"].get("p99_ms"),
                    design["gave_up"],
                    design["attempts_per_debit"],
                    design["updates_per_success"],
                    "yes" if design["correct"] else "**NO**: " + "; ".join(design["problems"]),
                    "yes" if base["correct"] else "**NO**: " + "; ".join(base["problems"]),
                ]
            )
        out += _table(
            [
                "Workers",
                "Debits/s",
                "Baseline debits/s",
                "Ratio",
                "p50 ms",
                "p99 ms",
                "Baseline p50 ms",
                "Baseline p99 ms",
                "Gave up",
                "Updates/debit",
                "Updates/success",
                "Exact",
                "Baseline exact",
            ],
            rows,
        )
        targets = contention.get("targets", {})
        if targets.get("measured"):
            out.append(
                f"Targets at {targets['workers']} workers: >= {targets['min_ratio']}x the "
                f"baseline's rate: {targets['ratio']}x {_ok(targets['ratio_ok'])}; p99 <= "
                f"{_fmt(targets['max_p99_ms'], 0)} ms: {targets['p99_ms']} ms "
                f"{_ok(targets['p99_ok'])}; zero give-ups: {targets['gave_up']} "
                f"{_ok(targets['gave_up_ok'])}; exact chain: {_ok(targets['exact'])}."
            )
            out.append("")
        out.append("![Latency and throughput vs concurrency](latency_vs_concurrency.png)")
        out.append("")

    # ------------------------------------------------------------ lag
    out += ["## 4. Materialization lag", ""]
    out += _section_error(report, "lag")
    lag_runs = report.get("lag", {}).get("runs") or []
    if lag_runs:
        out.append(
            "Time from a debit's return to its ledger entry being readable. The headline runs "
            "the Materializer's `StreamPoller` (`devtools.streams.materializer_poller`, the "
            "MaterializerFunction's environment) in its own process against the same table, as "
            "AWS runs it in its own Lambda containers; it sleeps "
            f"{_fmt(lag_runs[0]['poll_interval_ms'], 0)} ms after an empty pass (Lambda's "
            "event source mapping polls a shard about 4 times a second, so AWS adds up to "
            "~250 ms at idle). Workers (threads of the benchmark process) debit one account "
            "back to back; an observer thread reads the 16 lowest pending entries "
            "`LEDGER#<id>/SEQ#<n>` (n from the transaction id) with one strongly consistent "
            "BatchGetItem, again at once when it found some, else after "
            f"{_fmt(lag_runs[0].get('entry_poll_pause_ms'), 0)} ms, with a "
            f"{_fmt(lag_runs[0]['deadline_s'], 0)} s deadline per entry. Materialized/s: "
            "entries readable per second from the first debit's return to the last entry read "
            "(below debits/s, the poller fell behind and the lag grew through the run)."
        )
        in_thread = report.get("lag", {}).get("in_thread") or []
        if in_thread:
            out[-1] += (
                " The `thread` row runs the poller in a thread of the benchmark process instead "
                "(as `devtools.local_stack` does): it shares the GIL with the writers, which "
                "measures the local tool more than the design."
            )
        out.append("")
        out += _table(
            [
                "Poller",
                "Workers",
                "Debits",
                "Debits/s",
                "Materialized/s",
                "Lag p50 ms",
                "Lag p90 ms",
                "Lag p99 ms",
                "Missing",
            ],
            [
                [
                    "own process"
                    if r.get("poller", "own_process") == "own_process"
                    else "thread (GIL shared)",
                    r["workers"],
                    r["measured"],
                    r["debits_per_second"],
                    r.get("materialized_per_second"),
                    r["lag"].get("p50_ms"),
                    r["lag"].get("p90_ms"),
                    r["lag"].get("p99_ms"),
                    r["missing_after_deadline"],
                ]
                for r in [*lag_runs, *in_thread]
            ],
        )

    # ------------------------------------------------------------ scale
    out += ["## 5. Reads at scale", ""]
    out += _section_error(report, "reads")
    scale = report.get("reads", {}).get("scale", {})
    if scale:
        rows = []
        for name, row in scale.items():
            for label in ("small", "large"):
                cell = row[label]
                rows.append(
                    [
                        OPERATION_LABELS.get(name, name),
                        cell["ledger_entries"],
                        cell["requests"],
                        cell["items_read"],
                        _page(cell.get("page")),
                        cell["latency"]["p50_ms"],
                        cell["latency"]["p99_ms"],
                    ]
                )
        out.append(
            "The same handler calls on an account with a small and a large ledger (entries "
            "over the last 90 days, with matching daily usage rows). Items read = items "
            "DynamoDB evaluated (ScannedCount; a GetItem counts 1). The filtered page asks for "
            "a type no entry has (`type=refund`, limit 50), the worst case of a sparse "
            "filter: it examines at most 1,000 entries in at most 4 Queries and, when that "
            "is spent, returns a partial page with a cursor that continues the search "
            '(docs/http-api.md, "Every page is bounded").'
        )
        out.append("")
        out += _table(
            ["Read", "Ledger entries", "Requests", "Items read", "Returned", "p50 ms", "p99 ms"],
            rows,
        )

    # ------------------------------------------------------------ cold start
    out += ["## 6. Cold start", ""]
    out += _section_error(report, "cold_start")
    cold = report.get("cold_start", {})
    imports = cold.get("imports", {})
    sizes = cold.get("artifacts", {}).get("sizes", {})
    if imports:
        out.append(
            "Import of each function's module in a fresh interpreter (`python -X importtime`, "
            "median of several runs; `PYTHONPATH=layers/shared:.`, the function's environment "
            "from template.yaml, `AWS_LAMBDA_FUNCTION_NAME` set so Powertools' Tracer patches "
            "as in Lambda). *No .pyc* = the time to compile the layer's and function's "
            "sources that the import loads, which every cold start pays when the artifact "
            "ships no bytecode (Lambda's code directories are read-only; `make build` compiles "
            "the artifacts for Python 3.13 when one is installed). boto3/botocore come from "
            "the Lambda runtime but are imported all the same. Local machine: x86_64, Python "
            f"{report['meta']['machine']['python']}; Lambda: arm64, Python 3.13."
        )
        out.append("")
        rows = []
        for name, entry in imports.items():
            size = sizes.get(name, {})
            if entry.get("missing"):
                rows.append([name, "code missing", "", "", "", "", ""])
                continue
            rows.append(
                [
                    name,
                    entry["import_ms"],
                    entry["import_cpu_ms"],
                    entry["compile_without_pyc_ms"],
                    entry["boto3_botocore_ms"],
                    ", ".join(
                        f"{p} {v}" for p, v in list(entry["heaviest_packages_ms"].items())[:4]
                    ),
                    _kb(size),
                ]
            )
        layer = sizes.get("SharedLayer", {})
        if layer:
            rows.append(
                ["SharedLayer", "", "", "", "", f"{layer.get('files', 0):,} files", _kb(layer)]
            )
        out += _table(
            [
                "Function",
                "Import ms",
                "CPU ms over bare interpreter",
                "+ No .pyc ms",
                "boto3/botocore ms",
                "Heaviest packages (self ms)",
                "Artifact zipped / unzipped",
            ],
            rows,
        )
        versus = cold.get("debit_versus_baselines")
        if versus:
            out += _cold_table(versus)
        build = cold.get("artifacts", {}).get("build", {})
        if build.get("ran"):
            out.append(
                f"`sam build` ran in this benchmark ({build.get('seconds')} s, "
                f"{'ok' if build.get('ok') else 'FAILED'})."
            )
        elif build.get("reason"):
            out.append(f"`sam build` not run: {build['reason']}.")
        else:
            out.append("Sizes from the existing `.aws-sam/build` (use `--build` to rebuild).")
        out.append("")

    # ------------------------------------------------------------ baselines
    out += ["## 7. Against the alternatives", ""]
    out += _section_error(report, "baselines")
    peers = report.get("baselines", {})
    if peers and "error" not in peers:
        out.append(
            "The same 1-credit debit done three ways on the same DynamoDB Local: latency with "
            "one warm worker (timed in turn), cost by AWS's rules, and a run of concurrent "
            "workers on one account funded for half the debits."
        )
        out.append("")
        rows = []
        for name, peer in peers.items():
            hot = peer["concurrent"]
            rows.append(
                [
                    name,
                    peer["latency"]["p50_ms"],
                    peer["latency"]["p99_ms"],
                    " + ".join(f"{n} {k}" for k, n in peer["cost"]["by_operation"].items()),
                    peer["cost"]["write_units"],
                    peer["cost"]["read_units"],
                    f"{hot['accepted']}/{hot['funded']}",
                    hot["lost_updates"],
                    hot["overspent_credits"],
                    hot.get("gave_up", 0),
                    hot["accepted_per_second"],
                    "yes" if hot["correct"] else "**NO**",
                ]
            )
        workers = next(iter(peers.values()))["concurrent"]["workers"]
        out += _table(
            [
                "Approach",
                "p50 ms",
                "p99 ms",
                "Requests",
                "WCU",
                "RCU",
                f"Accepted/funded ({workers} workers)",
                "Lost updates",
                "Overspent",
                "Gave up (503)",
                "Accepted/s",
                "Correct",
            ],
            rows,
        )
        for name, peer in peers.items():
            out.append(f"- `{name}`: {peer['description']}.")
        out.append("")

    out += _holds_section(report)
    from bench import lots_report  # noqa: PLC0415 - it formats with this module's helpers

    out += lots_report.section(report)

    out += ["## Method and caveats", ""]
    out += [f"- {note}" for note in report.get("notes", [])]
    out.append("")
    return "\n".join(out)


# ------------------------------------------------------------ holds
HOLD_STEPS = ("debit", "reserve", "capture", "release", "expiry")
HOLD_ITEMS = (
    "lease (PutItem)",
    "account (UpdateItem)",
    "record complete (UpdateItem)",
    "ledger entry (PutItem)",
    "HOLD item (UpdateItem)",
    "record finalize (UpdateItem)",
    "daily usage (UpdateItem)",
    "ledger head (UpdateItem)",
)


def _holds_headline(report: dict[str, Any]) -> list[str]:
    section = report.get("holds") or {}
    lines: list[str] = []
    costs = section.get("costs") or {}
    levels = (section.get("cap") or {}).get("levels") or []
    if costs and levels:
        steps = ", ".join(
            f"{name} {costs[name]['requests']} requests / "
            f"{_fmt(costs[name]['total_write_units_in_a_batch'])} WCU"
            for name in HOLD_STEPS
            if name in costs
        )
        top = levels[-1]
        lines.append(
            f"Holds, each step with the Materializer's writes (usage and head once per batch "
            f"aside): {steps}. At the cap ({top['open_holds']} open holds) the account item "
            f"is {_fmt(top['account_item_bytes'])} B: a debit writes "
            f"**{_fmt(top['debit']['account_write_units'])} units on the account's "
            f"partition** (ceiling {_fmt(top['max_debits_per_second_one_account'], 0)} "
            f"debits/s per account; {_fmt(levels[0]['debit']['account_write_units'])} with no "
            f"hold); reserve #{top['open_holds'] + 1} refused with "
            f"`{top['reserve']['refused']}`."
        )
    rows = (section.get("rate") or {}).get("one_account") or []
    if rows:
        runs = "; ".join(
            f"{_workers(r['workers'])} {_fmt(r['reserve_capture']['pairs_per_second'])} "
            f"pairs/s vs {_fmt(r['this_design']['debits_per_second'])} debits/s "
            f"(**{_fmt(r['pairs_vs_debits'], 2)}x**) and "
            f"{_fmt(r['powertools_idempotency']['debits_per_second'])}/s for the baseline "
            f"({_fmt(r['pairs_vs_baseline'], 2)}x)"
            for r in rows
        )
        exact = all(r["reserve_capture"]["correct"] for r in rows)
        lines.append(
            f"Reserve + capture pairs on one hot account, beside debits in the same run: "
            f"{runs}. Exact after draining the stream (reserved 0, balance = funded - "
            f"captured, chain and HOLD items): {'yes' if exact else 'NO'}."
        )
    return lines


def _holds_section(report: dict[str, Any]) -> list[str]:
    out = ["## 8. Holds", ""]
    out += _section_error(report, "holds")
    section = report.get("holds") or {}
    costs = section.get("costs") or {}
    if costs:
        out += _holds_costs(costs)
    levels = (section.get("cap") or {}).get("levels") or []
    if levels:
        out += _holds_cap(levels)
    rate = section.get("rate") or {}
    if rate.get("one_account"):
        out += _holds_rate(rate)
    return out


def _holds_costs(costs: dict[str, Any]) -> list[str]:
    out = [
        "Each step once through its real entry point (the Debit handler's `reserve`, "
        "`capture` of all of the hold, `release`; the Expirer handler's sweep finding one due "
        "hold), beside a debit through the same handler in the same run, each then "
        "materialized alone in its stream batch with a probe on the Materializer's client. "
        "Units by AWS's rules from the item sizes; *Local* = DynamoDB Local's "
        "`ConsumedCapacity` for the function's requests. *In a batch* = the function's "
        "units + the Materializer's per step (ledger entry, record finalize, HOLD item); "
        "*alone* adds the day's usage item and the ledger head, written once per account and "
        "stream batch.",
        "",
    ]
    rows = []
    for name in HOLD_STEPS:
        step = costs.get(name)
        if not step:
            continue
        materializer = step["materializer"]
        rows.append(
            [
                name,
                " + ".join(f"{n} {k}" for k, n in step["by_operation"].items()),
                step["read_units"],
                step["write_units"],
                step["account_write_units"],
                step["local_reported_units"],
                materializer["write_units_per_step"],
                materializer["write_units_per_batch"],
                f"**{_fmt(step['total_write_units_in_a_batch'])}**",
                step["total_write_units_alone"],
                f"{step['write_units_vs_debit']}x",
            ]
        )
    out += _table(
        [
            "Step",
            "Requests",
            "RCU",
            "WCU in the function",
            "WCU on account partition",
            "Local reported",
            "Materializer WCU per step",
            "+ per batch",
            "WCU in a batch",
            "WCU alone",
            "vs debit",
        ],
        rows,
    )
    names = [n for n in HOLD_STEPS if n in costs]
    written: dict[str, dict[str, str]] = {}
    for name in names:
        step = costs[name]
        for row in [*step["writer_items"], *step["materializer"]["items"]]:
            written.setdefault(row["item"], {})[name] = f"{_fmt(row['units'])} ({row['bytes']} B)"
    order = [i for i in HOLD_ITEMS if i in written] + [i for i in written if i not in HOLD_ITEMS]
    out.append("Items written per step: write units (item size as billed, the larger image):")
    out.append("")
    out += _table(
        ["Item written", *names],
        [
            [
                f"{item}{' (per batch)' if item in HOLD_ITEMS[-2:] else ''}",
                *(written[item].get(n, "-") for n in names),
            ]
            for item in order
        ],
    )
    reads = []
    for name in names:
        rows_read = costs[name].get("reads") or []
        if rows_read:
            counted: dict[str, list[dict[str, Any]]] = {}
            for row in rows_read:
                counted.setdefault(row["read"], []).append(row)
            parts = [
                f"{len(same)} x {read} {_fmt(sum(r['units'] for r in same))} RCU "
                f"({'consistent' if same[0]['consistent'] else 'eventually consistent'}, "
                f"{_fmt(sum(r['items'] for r in same))} item(s), "
                f"{_fmt(max(r['bytes'] for r in same))} B)"
                for read, same in counted.items()
            ]
            reads.append(f"{name}: " + "; ".join(parts))
    if reads:
        out.append("Reads in the function: " + ". ".join(reads) + ".")
        out.append("")
    return out


def _holds_cap(levels: list[dict[str, Any]]) -> list[str]:
    out = [
        "Write units as open holds pile up on one account (each open hold is an entry of the "
        "account item's `holds` map, written with every change of the account): a debit and "
        "a reserve through the Debit handler with 0, 1, 10 and 50 (`MAX_OPEN_HOLDS`) open "
        "holds. At the cap the reserve is the 51st and must be refused (the section fails "
        "otherwise). A refused conditional update is billed like a write of the item (AWS: "
        "the larger of the existing and the new item); DynamoDB Local reports none for it.",
        "",
    ]
    rows = [
        [
            level["open_holds"],
            level["account_item_bytes"],
            level["debit"]["write_units"],
            level["debit"]["account_write_units"],
            _fmt(level["max_debits_per_second_one_account"], 0),
            level["reserve"]["write_units"],
            level["reserve"]["account_write_units"],
            level["reserve"]["local_reported_units"],
            " + ".join(f"{n} {k}" for k, n in level["reserve"]["by_operation"].items()),
            f"refused `{level['reserve']['refused']}`" if level["reserve"]["refused"] else "opened",
        ]
        for level in levels
    ]
    out += _table(
        [
            "Open holds",
            "Account item bytes",
            "Debit WCU",
            "Debit WCU on account",
            "Debits/s ceiling per account",
            "Reserve WCU",
            "Reserve WCU on account",
            "Reserve Local reported",
            "Reserve requests",
            "Reserve",
        ],
        rows,
    )
    return out


def _holds_rate(rate: dict[str, Any]) -> list[str]:
    out = [
        "Workers (threads, each its own client, store and ledger, as in section 3) each "
        "reserving 1 credit and capturing all of it, on ONE account funded for "
        f"{rate.get('funded_per_run')} of {rate.get('pairs_per_run')} pairs; beside them at "
        "the same worker count and in rotating order, the same number of debits of this "
        "design and of the Powertools baseline, "
        f"{rate.get('repeats')} run(s) each. Pairs/s = captured pairs per second (median "
        "run); an operation is a reserve or a capture. The stream is not drained during a "
        "run, so a capture's read of its HOLD item finds none (as one within the stream's "
        "lag does). *Exact* = after draining the stream: reserved 0 and no open hold, "
        "balance = funded - captured, captured = funded, one `hold` and one `capture` entry "
        "per pair with sequences 1..n, `balanceAfter`/`availableAfter` chains that add up "
        "(held sums to reserved), the head at the account's version, every HOLD item "
        "`captured`.",
        "",
    ]
    rows = []
    for row in rate["one_account"]:
        held = row["reserve_capture"]
        design, base = row["this_design"], row["powertools_idempotency"]
        rows.append(
            [
                row["workers"],
                held["pairs_per_second"],
                held["operations_per_second"],
                design["debits_per_second"],
                base["debits_per_second"],
                f"{row['pairs_vs_debits']}x",
                f"{row['operations_vs_debits']}x",
                f"{row['pairs_vs_baseline']}x",
                f"{_fmt(held['latency'].get('p50_ms'), 0)} / "
                f"{_fmt(held['latency'].get('p99_ms'), 0)}",
                _fmt(held["reserve_latency"].get("p50_ms"), 0),
                _fmt(held["capture_latency"].get("p50_ms"), 0),
                held["gave_up"],
                held["updates_per_pair"],
                "yes" if held["correct"] else "**NO**: " + "; ".join(held["problems"]),
                "yes" if design["correct"] and base["correct"] else "**NO**",
            ]
        )
    out += _table(
        [
            "Workers",
            "Pairs/s",
            "Operations/s",
            "Debits/s",
            "Baseline debits/s",
            "Pairs / debits",
            "Operations / debits",
            "Pairs / baseline",
            "Pair p50 / p99 ms",
            "Reserve p50 ms",
            "Capture p50 ms",
            "Gave up",
            "Account updates/pair",
            "Exact",
            "Debits exact",
        ],
        rows,
    )
    return out


def _ok(flag: Any) -> str:
    return "(met)" if flag else "(**NOT met**)"


def _workers(count: int) -> str:
    return f"{count} worker{'s' if count != 1 else ''}"


def _reasons(failed: dict[str, int]) -> str:
    names = {"ConditionalCheckFailed": "condition", "TransactionConflict": "conflict"}
    return ", ".join(f"{names.get(k, k)} {v:,}" for k, v in failed.items()) or "0"


def _kb(size: dict[str, Any]) -> str:
    if not size or size.get("missing"):
        return "not built"
    return f"{size['zipped_bytes'] / 1024:,.1f} KB / {size['unzipped_bytes'] / 1024:,.1f} KB"


def chart(report: dict[str, Any], path: Path) -> bool:
    """Latency (p50, p99) and throughput against workers on one account: this design and
    the Powertools baseline."""
    contention = report.get("contention", {})
    if not contention.get("one_account"):
        return False
    import matplotlib as mpl  # noqa: PLC0415 - only when a chart is drawn

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    rows = contention["one_account"]
    workers = [r["workers"] for r in rows]
    series = (
        ("this_design", "this design", "tab:red"),
        ("powertools_idempotency", "Powertools idempotency baseline", "tab:blue"),
    )
    for name, label, color in series:
        runs = [r[name] for r in rows]
        left.plot(
            workers,
            [r["latency"].get("p50_ms") for r in runs],
            "o-",
            color=color,
            label=f"{label} p50",
        )
        left.plot(
            workers,
            [r["latency"].get("p99_ms") for r in runs],
            "s--",
            color=color,
            alpha=0.6,
            label=f"{label} p99",
        )
        right.plot(workers, [r["debits_per_second"] for r in runs], "o-", color=color, label=label)
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        axis.set_xticks(workers)
        axis.get_xaxis().set_major_formatter(mpl.ticker.ScalarFormatter())
        axis.set_xlabel("concurrent workers on one account")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    left.set_yscale("log")
    left.set_ylabel("debit latency (ms, log)")
    left.set_title("Latency vs concurrency")
    right.set_ylabel("successful debits / s")
    right.set_title("Throughput vs concurrency")
    meta = report["meta"]
    figure.suptitle(
        f"Serverless Credits debits on DynamoDB Local ({meta['mode']} run, "
        f"{meta['machine']['cpus']} CPUs)",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return True
