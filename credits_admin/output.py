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
    "lots": (
        "lotId",
        "status",
        "remaining",
        "initialAmount",
        "priority",
        "expiresAt",
        "grantedAt",
        "source",
        "reference",
    ),
    "expiries": ("lotId", "remaining", "expired", "transactionId"),
    "inconsistent": ("accountId", "balance", "ledgerSum", "unresolved", "chainBreaks"),
}
MAX_CELL = 60


def _exact(value: Any, indent: str | None = "") -> str:
    """JSON text of `value` (indented by two spaces a level; on one line when `indent` is
    None), each Decimal written as its exact literal (the AdminFunction's answer is read
    with `parse_float=Decimal`)."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value else "0"
    inner = None if indent is None else indent + "  "
    opening, separator, closing = (
        ("", ",", "") if indent is None else ("\n" + str(inner), ",\n" + str(inner), "\n" + indent)
    )
    if isinstance(value, Mapping) and value:
        members = (
            f"{json.dumps(str(k), ensure_ascii=False)}: {_exact(v, inner)}"
            for k, v in value.items()
        )
        return "{" + opening + separator.join(members) + closing + "}"
    if isinstance(value, list | tuple) and value:
        return "[" + opening + separator.join(_exact(v, inner) for v in value) + closing + "]"
    return json.dumps(value, ensure_ascii=False)


def json_text(document: Mapping[str, Any]) -> str:
    """The result as JSON, its money exactly as the AdminFunction sent it, never a float."""
    return _exact(document)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
    elif isinstance(value, Mapping | list | tuple):
        text = _exact(value, None)
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
        # A validation error names its fields under `details.fields` (the one shape).
        fields: Any = None
        if isinstance(details, Mapping):
            fields = details.get("fields")
            details = {name: value for name, value in details.items() if name != "fields"}
        if details or isinstance(fields, list):
            print(f"details: {cell(details) if details else ''}".rstrip(), file=self.stderr)
        if isinstance(fields, list):
            for item in fields:
                if isinstance(item, Mapping) and item.get("field"):
                    print(f"  {item['field']}: {item.get('message', '')}", file=self.stderr)
                else:
                    print(f"  {cell(item)}", file=self.stderr)
        if self.as_json:
            print(json_text({"error": dict(error), **extra}), file=self.stdout)
