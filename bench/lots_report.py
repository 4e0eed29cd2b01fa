"""The lots section of the report (bench/lots.py): headline sentences and Markdown tables,
with the report's own formatting (bench/report.py imports this module where it renders)."""

from __future__ import annotations

from typing import Any

from bench import report as layout
from bench.stats import ratio

DESIGN = "this_design"
BASELINE = "powertools_idempotency"
BUDGET_UNITS = 4  # what MAX_ACTIVE_LOTS is sized for: 4 KB per change at the caps


def _level_label(level: dict[str, Any]) -> str:
    label = f"{level['lots']} lot{'s' if level['lots'] != 1 else ''} + {level['open_holds']} holds"
    if level.get("amounts") == "long":
        label += " (15-digit amounts)"
    return label


def headline(report: dict[str, Any]) -> list[str]:
    section = report.get("lots") or {}
    lines: list[str] = []
    levels = (section.get("sizes") or {}).get("levels") or []
    if levels:
        sizes = ", ".join(
            f"{_level_label(level)} {layout._fmt(level['account_item_bytes'])} B "
            f"({layout._fmt(level['debit']['account_write_units'])} WCU)"
            for level in levels
        )
        worst = max(levels, key=lambda level: level["debit"]["account_write_units"])
        units = worst["debit"]["account_write_units"]
        within = units <= BUDGET_UNITS
        lines.append(
            f"Lots on the account item, a debit's units on its partition: {sizes}. Largest: "
            f"{_level_label(worst)}, item {layout._fmt(worst['account_item_bytes'])} B before "
            f"the debit, {layout._fmt(units)} WCU per change: "
            f"{'within' if within else '**over**'} the budget of 4 KB ({BUDGET_UNITS} WCU)."
        )
    per_lot = (section.get("sweep") or {}).get("per_lot") or {}
    if per_lot:
        largest = max(per_lot, key=int)
        cost = per_lot[largest]
        lines.append(
            f"Expiry sweep, per lot expired ({largest} due on one account, beyond the empty "
            f"sweep's Queries): {layout._fmt(cost['requests'], 2)} requests, "
            f"{layout._fmt(cost['read_units'], 2)} RCU, {layout._fmt(cost['write_units'], 2)} WCU "
            f"in the function + {layout._fmt(cost['materializer_write_units'], 2)} materializing, "
            f"{layout._fmt(cost['account_updates'], 2)} account updates."
        )
    for row in (section.get("rate") or {}).get("one_account") or []:
        parts = "; ".join(
            f"{config['label']} {layout._fmt(config['debits_per_second'])}/s "
            f"({layout._fmt(config['vs_single_lot'], 2)}x, "
            f"{layout._fmt(config['attempts_per_debit'], 2)} "
            f"updates/debit, {config['gave_up']} gave up)"
            for config in row["configs"]
        )
        lines.append(
            f"Debits on one account with lots, {layout._workers(row['workers'])}: {parts}; "
            f"single lot {layout._fmt(row[DESIGN]['debits_per_second'])}/s, baseline "
            f"{layout._fmt(row[BASELINE]['debits_per_second'])}/s."
        )
    return lines


def section(report: dict[str, Any]) -> list[str]:
    out = ["## 9. Lots", ""]
    out += layout._section_error(report, "lots")
    data = report.get("lots") or {}
    sizes = data.get("sizes") or {}
    if sizes.get("levels"):
        out += _sizes(sizes)
    sweep = data.get("sweep") or {}
    if sweep.get("sweeps"):
        out += _sweep(sweep)
    rate = data.get("rate") or {}
    if rate.get("one_account"):
        out += _rate(rate)
    return out


def _sizes(sizes: dict[str, Any]) -> list[str]:
    out = [
        "Every active lot is an entry of the account item's `lots` map and every open hold "
        "one of its `holds` map, written with every change of the account. One debit of 1 "
        "credit through the Debit handler at each level; units by item size (1 KB per write "
        "unit, the larger of the images). Lots of 10,000 credits and holds of 1 credit, and "
        "at the caps also amounts of 15 significant digits (the longest `domain.money` "
        f"allows). {sizes['max_lots_on_item']} lots (`MAX_LOTS_ON_ITEM`) are reached as a "
        "refund reaches them: 25 granted, five emptied by one debit, five more granted, the "
        "debit refunded into the five it emptied.",
        "",
    ]
    rows = [
        [
            _level_label(level),
            level["account_item_bytes"],
            level["debit"]["write_units"],
            level["debit"]["account_write_units"],
            level["debit"]["local_reported_units"],
            level["debit"]["account_updates"],
            layout._fmt(level["max_changes_per_second_one_account"], 0),
        ]
        for level in sizes["levels"]
    ]
    out += layout._table(
        [
            "Account item",
            "Bytes",
            "Debit WCU",
            "Debit WCU on account",
            "Local reported",
            "Account updates",
            "Changes/s ceiling per account",
        ],
        rows,
    )
    refused = sizes.get("refused_grant") or {}
    if refused:
        out.append(
            f"Grant #{sizes['max_active_lots'] + 1} at {sizes['max_active_lots']} lots "
            f"(`MAX_ACTIVE_LOTS`): refused `{refused['refused']}` with "
            f"{' + '.join(f'{n} {k}' for k, n in refused['by_operation'].items())} "
            f"({layout._fmt(refused['write_units'])} WCU, {refused['account_updates']} account "
            "updates: the lease, the refusal from the cached image confirmed by one read, the "
            "lease released)."
        )
        out.append("")
    return out


def _sweep(sweep: dict[str, Any]) -> list[str]:
    out = [
        "The ExpirerFunction's scheduled sweep through its handler (holds, then lots: one "
        "Query of each `ExpiryIndex` shard of each kind) with 0, 1 and 24 due lots on one "
        "account (+ 1 live lot: 25, the cap), each then materialized alone in its stream "
        "batch. The lots were granted by a ledger whose clock ran "
        f"{layout._fmt(sweep['backdate_seconds'] / 60, 0)} min behind, so they are due by the "
        "real clock. Every sweep must report each due lot expired and the account keep only "
        "its live lot, with one `expiry` entry per lot (the section fails otherwise).",
        "",
    ]
    rows = []
    for due, step in sweep["sweeps"].items():
        rows.append(
            [
                due,
                " + ".join(f"{n} {k}" for k, n in step["by_operation"].items()),
                step["read_units"],
                step["write_units"],
                step["account_updates"],
                step["materializer"]["write_units_per_step"],
                step["materializer"]["write_units_per_batch"],
            ]
        )
    out += layout._table(
        [
            "Due lots",
            "Requests",
            "RCU",
            "WCU in the function",
            "Account updates",
            "Materializer WCU per step",
            "+ per batch",
        ],
        rows,
    )
    rows = [
        [
            due,
            cost["requests"],
            cost["read_units"],
            cost["write_units"],
            cost["materializer_write_units"],
            cost["account_updates"],
        ]
        for due, cost in sweep["per_lot"].items()
    ]
    out.append("Per lot expired (the sweep less the empty sweep, divided by the lots):")
    out.append("")
    out += layout._table(
        [
            "Due lots",
            "Requests",
            "RCU",
            "WCU in the function",
            "Materializer WCU",
            "Account updates",
        ],
        rows,
    )
    return out


def _rate(rate: dict[str, Any]) -> list[str]:
    out = [
        "Workers (threads, each its own client, store and ledger, as in section 3) each "
        f"debiting {rate['debit_credits']} credits from ONE account, "
        f"{rate['debits_per_run']} debits per run. *Lots run out*: the account is funded "
        f"for {rate['funded_debits_when_run_out']} debits, spread over the lots in sizes that "
        "are no multiple of a debit, so lots are emptied throughout the run and many debits "
        "span two lots. *None runs out*: the top-ranked lot covers every debit. Lots are "
        "ranked by mixed priorities and expiries. Beside them, at the same worker count and "
        f"in rotating order, {rate['repeats']} run(s) each: section 3's debit of 1 credit on "
        "a one-lot account (*single lot*) and the Powertools baseline. *Updates/debit* = "
        "account `UpdateItem` attempts per debit attempted (a refused one is a replan from "
        "the image that refused it, or a decline); *WCU/debit* = the function's units of a "
        "debit at that many lots (table above) + one account write per refused update, per "
        "successful debit. *Exact* = after draining the stream: the lots sum to the balance, "
        "none negative, the chain adds up, the head at the account's version, and replaying "
        "the entries' allocations every debit took from the live lots in burn order.",
        "",
    ]
    rows = []
    for row in rate["one_account"]:
        design, base = row[DESIGN], row[BASELINE]
        rows.append(
            [
                row["workers"],
                "single lot (section 3)",
                design["debits_per_second"],
                "1.0x",
                f"{layout._fmt(ratio(design['debits_per_second'], base['debits_per_second']), 2)}x",
                f"{layout._fmt(design['latency'].get('p50_ms'), 0)} / "
                f"{layout._fmt(design['latency'].get('p99_ms'), 0)}",
                layout._fmt(design["attempts_per_debit"], 2),
                "-",
                "-",
                "-",
                "-",
                design["gave_up"],
                "yes" if design["correct"] else "**NO**",
            ]
        )
        for config in row["configs"]:
            rows.append(
                [
                    row["workers"],
                    config["label"],
                    config["debits_per_second"],
                    f"{layout._fmt(config['vs_single_lot'], 2)}x",
                    f"{layout._fmt(config['vs_baseline'], 2)}x",
                    f"{layout._fmt(config['latency'].get('p50_ms'), 0)} / "
                    f"{layout._fmt(config['latency'].get('p99_ms'), 0)}",
                    layout._fmt(config["attempts_per_debit"], 2),
                    layout._fmt(config["reads_per_debit"], 2),
                    config.get("write_units_per_debit"),
                    config["lots_emptied_per_run"],
                    config["debits_across_lots_per_run"],
                    config["gave_up"],
                    "yes" if config["correct"] else "**NO**: " + "; ".join(config["problems"]),
                ]
            )
        rows.append(
            [
                row["workers"],
                "Powertools baseline",
                base["debits_per_second"],
                "-",
                "1.0x",
                f"{layout._fmt(base['latency'].get('p50_ms'), 0)} / "
                f"{layout._fmt(base['latency'].get('p99_ms'), 0)}",
                layout._fmt(base["attempts_per_debit"], 2),
                "-",
                "-",
                "-",
                "-",
                base["gave_up"],
                "yes" if base["correct"] else "**NO**",
            ]
        )
    out += layout._table(
        [
            "Workers",
            "Account",
            "Debits/s",
            "vs single lot",
            "vs baseline",
            "p50 / p99 ms",
            "Updates/debit",
            "Account reads/debit",
            "WCU/debit",
            "Lots emptied/run",
            "Debits across lots/run",
            "Gave up",
            "Exact",
        ],
        rows,
    )
    return out
