"""Exact credit amounts: `Decimal`, at most six decimal places, positive and bounded.

Every money field of every request goes through `strict_number` first (docs/http-api.md,
"Numbers and limits"): a JSON number (never a boolean, NaN or infinity) or a plain decimal
string (`-?[0-9]+(.[0-9]+)?`: ASCII digits only, no sign `+`, no `_`, no exponent, no
spaces), at most `MAX_NUMBER_CHARS` characters, with at most `MAX_INTEGER_DIGITS` digits
before the point. Python's `Decimal()` alone is far laxer: it reads `"1_0"` as 10, Arabic-
Indic digits, `"+5"`, `" 5 "` and `"1e-1000000000"` (whose normalisation then crashes)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, PlainSerializer

SCALE = 6
QUANTUM = Decimal(1).scaleb(-SCALE)  # 0.000001
MAX_AMOUNT = Decimal("1000000000")  # one billion credits per operation
MAX_QUANTITY = Decimal("1000000")
# Any figure a request may carry: far beyond every bound a field puts on it, far within
# DynamoDB's numbers (38 significant digits, magnitude up to 1e126), so the bounds below
# are checked on a small exact Decimal before any arithmetic.
MAX_INTEGER_DIGITS = 18
MAX_NUMBER_CHARS = 40
_PLAIN_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?", re.ASCII)


def strict_number(value: Any) -> Any:
    """A money field's input as an exact `Decimal`, or a ValueError naming why not.

    JSON numbers arrive as `int` (exact) or `float` (read as the shortest decimal that
    round-trips: `0.1` is 0.1, `1e-7` is 1E-7 and is then refused for its scale).
    Internal callers may pass a `Decimal` (from DynamoDB): it is held to the same bounds."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    if isinstance(value, int):
        if abs(value) >= 10**MAX_INTEGER_DIGITS:
            raise ValueError("number out of range")
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return _bounded(Decimal(repr(value)))
    if isinstance(value, str):
        if len(value) > MAX_NUMBER_CHARS or not _PLAIN_DECIMAL.fullmatch(value):
            raise ValueError(
                'must be a JSON number or a plain decimal string such as "12.5" '
                f"(ASCII digits, optional '-' and '.', at most {MAX_NUMBER_CHARS} characters)"
            )
        return _bounded(Decimal(value))
    if isinstance(value, Decimal):
        return _bounded(value)
    raise ValueError("must be a number")


def _bounded(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("must be a finite number")
    if value and not value.adjusted() < MAX_INTEGER_DIGITS:
        raise ValueError("number out of range")
    if value and value.adjusted() < -(SCALE + 1):
        # Smaller than any non-zero figure the ledger keeps, whatever its written scale.
        raise ValueError(f"at most {SCALE} decimal places")
    if len(value.as_tuple().digits) > MAX_NUMBER_CHARS:
        raise ValueError("too many digits")
    return value


def _exact(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("must be a finite number")
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -SCALE:
        raise ValueError(f"at most {SCALE} decimal places")
    return value


def normalize(value: Decimal) -> Decimal:
    """Canonical form for storage and JSON: no trailing zeros, no exponent for integers."""
    if value == 0:
        return Decimal(0)
    normalized = value.normalize()
    exponent = normalized.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0:
        return normalized.quantize(Decimal(1))
    return normalized


def quantize(value: Decimal) -> Decimal:
    """Round a computed value (price x quantity) to the ledger's precision."""
    try:
        return value.quantize(QUANTUM, rounding=ROUND_HALF_EVEN)
    except InvalidOperation as exc:
        raise ValueError("amount out of range") from exc


def json_number(value: Decimal | int) -> int | float:
    """An amount as a plain JSON number for `json.dumps` (requests, events, pydantic's JSON
    mode): integers stay integers; any other figure of at most 15 significant digits (every
    amount within MAX_AMOUNT at six decimal places) round-trips exactly through a binary
    double. What leaves an API goes through `exact_number` instead (no digit limit)."""
    normalized = normalize(Decimal(value))
    if normalized == normalized.to_integral_value():
        return int(normalized)
    return float(normalized)


def exact_number(value: Decimal | int) -> int | Decimal:
    """An amount as the API writes it: integers as `int`, anything else as its normalised
    `Decimal`, for `dumps` (or the Lambda runtime, which writes a Decimal as its literal)
    to write as an exact JSON number whatever its number of digits."""
    normalized = normalize(Decimal(value))
    if normalized == normalized.to_integral_value():
        return int(normalized)
    return normalized


def jsonable(value: Any) -> Any:
    """A value with Decimals inside (as DynamoDB returns numbers) made JSON-ready for
    `dumps`: each Decimal kept exact (`exact_number`)."""
    if isinstance(value, Decimal):
        return exact_number(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    return value


# ---------------------------------------------------------------- exact JSON out
# Pydantic's JSON mode can only turn a Decimal into a float (`JsonDecimal`: exact up to 15
# significant digits) or a string; balances and lifetime figures may have more digits. So
# what leaves an API is the JSON-mode dump (dates, enums and aliases as pydantic writes
# them) with every Decimal of the Python-mode dump put back (`exact_json`), written by
# `dumps` (HTTP) or by the Lambda runtime (direct invokes: awslambdaric writes a Decimal as
# `str(value)`, an exact JSON number).


def exact_json(python: Any, json_ready: Any) -> Any:
    """`json_ready` (a JSON-mode dump) with each value that is a Decimal at the same place
    in `python` (the Python-mode dump of the same object) replaced by `exact_number`."""
    if isinstance(python, Decimal) and python.is_finite():
        return exact_number(python)
    if isinstance(python, Mapping) and isinstance(json_ready, dict):
        if len(python) != len(json_ready):
            return json_ready
        return {
            key: exact_json(inner, value)
            for inner, (key, value) in zip(python.values(), json_ready.items(), strict=True)
        }
    if isinstance(python, list | tuple) and isinstance(json_ready, list):
        if len(python) != len(json_ready):
            return json_ready
        return [exact_json(inner, value) for inner, value in zip(python, json_ready, strict=True)]
    return json_ready


def exact_dump(model: BaseModel, *, by_alias: bool = True) -> dict[str, Any]:
    """A model as JSON-ready data whose money is exact (`exact_json`)."""
    return exact_json(  # type: ignore[no-any-return]  # a model dumps as a dict
        model.model_dump(mode="python", by_alias=by_alias),
        model.model_dump(mode="json", by_alias=by_alias),
    )


def dumps(value: Any) -> str:
    """Compact JSON for JSON-ready data in which a Decimal is written as its exact literal
    (`format(normalize(d), "f")`: no exponent, no trailing zeros), never through a float.
    Everything else is written as `json.dumps` writes it; NaN and infinities are refused."""
    parts: list[str] = []
    _encode(value, parts)
    return "".join(parts)


def _encode(value: Any, parts: list[str]) -> None:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"Out of range JSON value: {value}")
        parts.append(format(normalize(value), "f"))
    elif value is None or isinstance(value, str | int | float):  # bool is an int
        parts.append(json.dumps(value, allow_nan=False))
    elif isinstance(value, Mapping):
        parts.append("{")
        for index, (key, inner) in enumerate(value.items()):
            if not isinstance(key, str):
                raise TypeError(f"keys must be str, not {type(key).__name__}")
            parts.append("," if index else "")
            parts.append(json.dumps(key))
            parts.append(":")
            _encode(inner, parts)
        parts.append("}")
    elif isinstance(value, list | tuple):
        parts.append("[")
        for index, inner in enumerate(value):
            parts.append("," if index else "")
            _encode(inner, parts)
        parts.append("]")
    else:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


JsonDecimal = PlainSerializer(json_number, return_type=int | float, when_used="json")

Strict = BeforeValidator(strict_number)

Credits = Annotated[Decimal, Strict, AfterValidator(_exact), JsonDecimal]
"""Any exact credit figure (a balance may be negative within an overdraft)."""

PositiveAmount = Annotated[
    Decimal,
    Strict,
    Field(gt=0, le=MAX_AMOUNT, allow_inf_nan=False),
    AfterValidator(_exact),
    JsonDecimal,
]
"""An amount an operation moves: positive, at most MAX_AMOUNT, at most six decimals."""

Quantity = Annotated[
    Decimal,
    Strict,
    Field(gt=0, le=MAX_QUANTITY, allow_inf_nan=False),
    AfterValidator(_exact),
    JsonDecimal,
]


def format_cost(credits: Decimal, credit_price: Decimal, currency: str) -> str:
    """Money for a number of credits, as the Voxpria reference shows it ("$13.50")."""
    money = (credits * credit_price).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
    symbol = {"USD": "$", "EUR": "€", "GBP": "£"}.get(currency.upper())
    return f"{symbol}{money:,.2f}" if symbol else f"{money:,.2f} {currency.upper()}"
