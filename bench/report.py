"""The report: JSON (everything measured), Markdown (the tables) and a PNG chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OPERATION_LABELS = {
    "debit": "debit (warm function)",
    "debit_cold": "debit (cold function)",
    "topup": "top-up",
    "refund": "refund",
    "balance": "balance",
    "transactions_page": "transactions page (50)",
    "transactions_next_page": "next page (cursor)",
    "stats_7d": "stats 7 days",
    "stats_30d": "stats 30 days",
    "stats_90d": "stats 90 days",
    "summary": "account summary",
}


def write_json(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=2, sort_keys=False, default=str) + "\n")


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


def headline(report: dict[str, Any]) -> list[str]:
    """The figures worth quoting, as sentences (also copied into bench/README.md)."""
    lines: list[str] = []
    costs = report.get("costs", {})
    debit = costs.get("operations", {}).get("debit")
    partition = costs.get("balance_partition", {})
    if debit:
        lines.append(
            f"A debit is {debit['requests']} request (TransactWriteItems of "
            f"{len(debit['calls'][-1]['write_items'])} items) = {_fmt(debit['write_units'])} "
            f"write units, {_fmt(partition.get('write_units_per_debit'))} of them on the "
            f"balance's partition: at most "
            f"{_fmt(partition.get('max_debits_per_second_one_account'), 0)} debits/s per account "
            f"by DynamoDB's 1,000 WCU/partition limit (DynamoDB Local reported "
            f"{_fmt(debit['local_reported_units'])} units for the same call)."
        )
    overhead = report.get("overhead", {})
    parts = [
        f"{label} {_fmt(overhead[name]['ratio_p50'], 2)}x"
        for name, label in (
            ("debit", "debit"),
            ("balance", "balance"),
            ("transactions_page", "transactions page"),
        )
        if name in overhead and isinstance(overhead[name], dict) and "ratio_p50" in overhead[name]
    ]
    if parts:
        lines.append("Handler time / bare DynamoDB call time (p50): " + ", ".join(parts) + ".")
    contention = report.get("contention", {})
    one = contention.get("one_account") or []
    spread = contention.get("spread") or []
    if one:
        runs = ", ".join(
            f"{_workers(r['workers'])} {_fmt(r['debits_per_second'])}/s "
            f"({_fmt(r['attempts_per_debit'], 2)} attempts/debit)"
            for r in one
        )
        ok = all(r["correct"] for r in one + spread)
        lines.append(
            f"One hot account on DynamoDB Local: {runs}; spread over "
            f"{contention.get('spread_accounts')} accounts: "
            + ", ".join(
                f"{_workers(r['workers'])} {_fmt(r['debits_per_second'])}/s" for r in spread
            )
            + f". Accounting exact in every run: {'yes' if ok else 'NO'}."
        )
    busy = [r for r in one if r["gave_up"]]
    if busy:
        lines.append(
            "Retry starvation on one hot account: "
            + ", ".join(
                f"{r['gave_up']} of {r['debits_attempted']} debits with {_workers(r['workers'])}"
                for r in busy
            )
            + " gave up with ServiceBusy (503) after the ledger's maximum attempts, although "
            "the account had funds (accounting stayed exact)."
        )
    scale = report.get("reads", {}).get("scale", {})
    if scale:
        parts = []
        for name in ("balance", "transactions_page", "stats_90d"):
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
            cpu = [v["import_cpu_ms"] for v in measured.values()]
            layer = report.get("cold_start", {}).get("artifacts", {}).get("sizes", {})
            ships_pyc = layer.get("SharedLayer", {}).get("pyc_313_files", 0) > 0
            as_built = (
                "the build ships Python 3.13 bytecode, so Lambda skips this"
                if ships_pyc
                else "as built: no CPython 3.13 was at hand to compile it"
            )
            lines.append(
                f"Cold-start imports: {_fmt(low, 0)} to {_fmt(high, 0)} ms per function "
                f"(process CPU {_fmt(min(cpu), 0)} to {_fmt(max(cpu), 0)} ms) with "
                f"bytecode cached, plus {_fmt(min(extra), 0)} to {_fmt(max(extra), 0)} ms of "
                f"compiling when an artifact ships no .pyc ({as_built}); the heaviest package is "
                f"`{top}` in {tops.count(top)} of {len(tops)} functions."
            )
    peers = report.get("baselines", {})
    if peers.get("naive_get_put"):
        naive = peers["naive_get_put"]["concurrent"]
        lines.append(
            f"Naive GetItem + PutItem with {naive['workers']} workers: {naive['accepted']} "
            f"debits accepted for {naive['funded']} funded credits, "
            f"{naive['lost_updates']} lost updates."
        )
    if peers.get("powertools_idempotency"):
        pt = peers["powertools_idempotency"]
        ours = peers.get("this_design", {}).get("concurrent", {})
        lines.append(
            f"Powertools idempotency around a conditional update: {pt['cost']['requests']} "
            f"requests and {_fmt(pt['cost']['write_units'])} write units per debit, no ledger "
            f"entry; this design: 1 request, {_fmt(debit['write_units']) if debit else '?'} "
            f"write units with ledger entry, idempotency record and usage in one transaction. "
            f"With {pt['concurrent']['workers']} workers on one account the plain condition "
            f"never conflicts: {_fmt(pt['concurrent']['accepted_per_second'])} debits/s against "
            f"{_fmt(ours.get('accepted_per_second'))}/s for the version-pinned exact chain."
        )
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
                "WCU on balance partition",
                "Local reported",
                "p50 ms",
            ],
            rows,
        )
        debit = operations.get("debit")
        if debit:
            items = debit["calls"][-1]["write_items"]
            out.append(
                "Items in one debit transaction: "
                + ", ".join(
                    f"{i['action']} `{i['pk'].split('#')[0]}#…` {i['bytes']} B = "
                    f"{_fmt(i['units'])} WCU"
                    for i in items
                )
                + "."
            )
            out.append("")
        partition = costs.get("balance_partition")
        if partition:
            out.append(
                f"Balance partition: {_fmt(partition['write_units_per_debit'])} WCU per debit "
                f"({partition['items_per_debit_on_balance_key']} item on `ACCOUNT#<id>`) → "
                f"ceiling **{_fmt(partition['max_debits_per_second_one_account'], 0)} debits/s "
                "per account** (1,000 WCU/s per partition). Past it: split the balance into N "
                "sub-balances (DESIGN-NOTES.md)."
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
    out += ["## 3. Contention", ""]
    out += _section_error(report, "contention")
    contention = report.get("contention", {})
    if contention.get("one_account"):
        out.append(
            "Concurrent workers (threads, each its own client, store and ledger: one Lambda "
            "instance each) debiting 1 credit. Every account is funded for all but about a "
            "tenth of the debits aimed at it; *correct* = successes equal the funded debits "
            "exactly (no overspend, none refused early), ledger entries = successes with "
            "gapless sequences and a consistent balanceAfter chain, balance = opening - "
            "successes. Attempts = TransactWriteItems per debit requested; failed attempts by "
            "cancellation reason (*condition* = the balance's version or funds condition: "
            "replanned from ALL_OLD without a read; *conflict* = TransactionConflict: retried "
            "with backoff). Gave up = `ServiceBusy` (503) after the ledger's "
            "`MAX_WRITE_ATTEMPTS`."
        )
        out.append("")
        rows = []
        for kind, label in (("one_account", "1"), ("spread", str(contention["spread_accounts"]))):
            for run in contention.get(kind, []):
                rows.append(
                    [
                        run["workers"],
                        label,
                        run["debits_per_second"],
                        run["latency"].get("p50_ms"),
                        run["latency"].get("p99_ms"),
                        run["attempts_per_debit"],
                        _reasons(run.get("failed_attempts", {})),
                        f"{run['successes']}/{run['funded_per_account'] * run['accounts']}",
                        run["declined"],
                        run["gave_up"],
                        "yes"
                        if run["correct"]
                        else "**NO**: " + "; ".join(run["checks"]["problems"]),
                    ]
                )
        out += _table(
            [
                "Workers",
                "Accounts",
                "Debits/s",
                "p50 ms",
                "p99 ms",
                "Attempts/debit",
                "Failed attempts",
                "Successes/funded",
                "Declined (402)",
                "Gave up",
                "Correct",
            ],
            rows,
        )
        out.append("![Latency and throughput vs concurrency](latency_vs_concurrency.png)")
        out.append("")

    # ------------------------------------------------------------ scale
    out += ["## 4. Reads at scale", ""]
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
                        cell["latency"]["p50_ms"],
                        cell["latency"]["p99_ms"],
                    ]
                )
        out.append(
            "The same handler calls on an account with a small and a large ledger (entries "
            "over the last 90 days, with matching daily usage rows). Items read = items "
            "DynamoDB evaluated (ScannedCount; a GetItem counts 1)."
        )
        out.append("")
        out += _table(
            ["Read", "Ledger entries", "Requests", "Items read", "p50 ms", "p99 ms"], rows
        )

    # ------------------------------------------------------------ cold start
    out += ["## 5. Cold start", ""]
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
    out += ["## 6. Against the alternatives", ""]
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

    out += ["## Method and caveats", ""]
    out += [f"- {note}" for note in report.get("notes", [])]
    out.append("")
    return "\n".join(out)


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
    """Latency (p50, p99) and throughput against workers, one account vs spread."""
    contention = report.get("contention", {})
    if not contention.get("one_account"):
        return False
    import matplotlib as mpl  # noqa: PLC0415 - only when a chart is drawn

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    series = (
        ("one_account", "1 account", "tab:red"),
        ("spread", f"{contention['spread_accounts']} accounts", "tab:blue"),
    )
    for kind, label, color in series:
        runs = contention.get(kind, [])
        workers = [r["workers"] for r in runs]
        left.plot(
            workers, [r["latency"]["p50_ms"] for r in runs], "o-", color=color, label=f"{label} p50"
        )
        left.plot(
            workers,
            [r["latency"]["p99_ms"] for r in runs],
            "s--",
            color=color,
            alpha=0.6,
            label=f"{label} p99",
        )
        right.plot(workers, [r["debits_per_second"] for r in runs], "o-", color=color, label=label)
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        axis.set_xticks([r["workers"] for r in contention["one_account"]])
        axis.get_xaxis().set_major_formatter(mpl.ticker.ScalarFormatter())
        axis.set_xlabel("concurrent workers")
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
