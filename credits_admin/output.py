"""What the operator sees: readable tables by default, one JSON object with `--json`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, TextIO

# Columns of the list results, in order (others are left out of the table; --json has all).
COLUMNS: dict[str, tuple[str, ...]] = {
    "accounts": ("accountId", "name", "plan", "status", "balance", "available"),
    "keys": ("apiKeyId", "plan", "createdAt", "createdBy"),
    "entries": (
        "createdAt",
        "id",
        "type",
        "amount",
        "balanceAfter",
        "description",
        "actor",
    ),
    "holds": ("holdId", "amount", "createdAt", "expiresAt", "expired", "description"),
    "inconsistent": ("accountId", "balance", "ledgerSum", "unresolved", "chainBreaks"),
}
MAX_CELL = 60


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def json_text(document: Mapping[str, Any]) -> str:
    return json.dumps(_plain(document), indent=2, ensure_ascii=False)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
    elif isinstance(value, Mapping | list | tuple):
        text = json.dumps(_plain(value), separators=(",", ":"), ensure_ascii=False)
    else:
        text = str(value)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def key_values(document: Mapping[str, Any]) -> str:
    if not document:
        return "(nothing)"
    width = max(len(name) for name in document)
    return "\n".join(f"{name.ljust(width)}  {cell(value)}" for name, value in document.items())


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return "(none)"
    shown = [c for c in columns if any(c in row for row in rows)] or sorted(
        {name for row in rows for name in row}
    )
    cells = [[cell(row.get(c)) for c in shown] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(shown)]
    numeric = [
        all(isinstance(row.get(c), Decimal | int) or row.get(c) is None for row in rows)
        for c in shown
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if right else v.ljust(w)
            for v, w, right in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join(
        [line(shown), line(["-" * w for w in widths]), *(line(values) for values in cells)]
    )


def human(result: Any) -> str:
    """A result as tables: lists of objects as tables, an object as name/value lines."""
    if not isinstance(result, Mapping):
        return cell(result)
    blocks: list[str] = []
    scalars = {
        name: value
        for name, value in result.items()
        if not (isinstance(value, list) and value and isinstance(value[0], Mapping))
        and not isinstance(value, Mapping)
    }
    if scalars:
        blocks.append(key_values(scalars))
    for name, value in result.items():
        if isinstance(value, Mapping):
            blocks.append(key_values(value))
        elif isinstance(value, list) and value and isinstance(value[0], Mapping):
            title = f"{name}:" if scalars else ""
            rendered = table(value, COLUMNS.get(name, ()))
            blocks.append(f"{title}\n{rendered}" if title else rendered)
    return "\n\n".join(blocks)


class Printer:
    def __init__(self, *, as_json: bool, stdout: TextIO, stderr: TextIO) -> None:
        self.as_json = as_json
        self.stdout = stdout
        self.stderr = stderr

    def note(self, text: str) -> None:
        """Something for the operator (stderr, so stdout stays the result)."""
        print(text, file=self.stderr)

    def result(self, document: Mapping[str, Any]) -> None:
        print(json_text(document) if self.as_json else human(document), file=self.stdout)

    def refusal(self, error: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
        code, message = error.get("code", "ERROR"), error.get("message", "")
        print(f"error: {code}: {message}", file=self.stderr)
        details = error.get("details")
        if details:
            print(
                f"details: {cell(details) if not isinstance(details, list) else ''}".rstrip(),
                file=self.stderr,
            )
            if isinstance(details, list):
                for item in details:
                    if isinstance(item, Mapping) and item.get("field"):
                        print(f"  {item['field']}: {item.get('message', '')}", file=self.stderr)
                    else:
                        print(f"  {cell(item)}", file=self.stderr)
        if self.as_json:
            print(json_text({"error": dict(error), **extra}), file=self.stdout)
