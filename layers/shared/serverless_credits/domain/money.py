"""Exact credit amounts: `Decimal`, at most six decimal places, positive and bounded."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import AfterValidator, Field, PlainSerializer

SCALE = 6
QUANTUM = Decimal(1).scaleb(-SCALE)  # 0.000001
MAX_AMOUNT = Decimal("1000000000")  # one billion credits per operation
MAX_QUANTITY = Decimal("1000000")


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
    """An exact amount as a JSON number: integers stay integers, and six decimal places
    round-trip exactly through a binary double for amounts within MAX_AMOUNT."""
    normalized = normalize(Decimal(value))
    if normalized == normalized.to_integral_value():
        return int(normalized)
    return float(normalized)


def jsonable(value: Any) -> Any:
    """A value with Decimals inside (as DynamoDB returns numbers) made JSON-ready."""
    if isinstance(value, Decimal):
        return json_number(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    return value


JsonDecimal = PlainSerializer(json_number, return_type=int | float, when_used="json")

Credits = Annotated[Decimal, AfterValidator(_exact), JsonDecimal]
"""Any exact credit figure (a balance may be negative within an overdraft)."""

PositiveAmount = Annotated[
    Decimal, Field(gt=0, le=MAX_AMOUNT, allow_inf_nan=False), AfterValidator(_exact), JsonDecimal
]
"""An amount an operation moves: positive, at most MAX_AMOUNT, at most six decimals."""

Quantity = Annotated[
    Decimal, Field(gt=0, le=MAX_QUANTITY, allow_inf_nan=False), AfterValidator(_exact), JsonDecimal
]


def format_cost(credits: Decimal, credit_price: Decimal, currency: str) -> str:
    """Money for a number of credits, as the Voxpria reference shows it ("$13.50")."""
    money = (credits * credit_price).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
    symbol = {"USD": "$", "EUR": "€", "GBP": "£"}.get(currency.upper())
    return f"{symbol}{money:,.2f}" if symbol else f"{money:,.2f} {currency.upper()}"
