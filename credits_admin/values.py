"""Argument value parsers: exact amounts, durations, timestamps, switches.

Each raises `argparse.ArgumentTypeError`, so a malformed value is a usage error (exit 2)
naming the option; what the AdminFunction judges (bounds, settings that go together) comes
back as a refusal (exit 1)."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

# The ledger keeps six decimal places: more would be rounded on the way (JSON numbers are
# doubles in Lambda's runtime), so the CLI refuses them instead of sending something else.
SCALE = 6
_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_SWITCH = {"on": True, "off": False}


def amount(text: str) -> Decimal:
    """An exact decimal amount (sign allowed: `credits adjust` takes negatives)."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value.is_finite():
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -SCALE:
        raise argparse.ArgumentTypeError(f"at most {SCALE} decimal places: {text!r}")
    return value


def json_number(value: Decimal) -> int | float:
    """An exact amount as a JSON number: integers stay integers, and six decimal places
    round-trip exactly through a double (as `serverless_credits.domain.money` sends them)."""
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def duration(text: str) -> timedelta:
    """`30d`, `12h`, `90m`, `45s`, `2w`."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (a number and s, m, h, d or w: 30d, 12h)"
        )
    count, unit = match.groups()
    if int(count) <= 0:
        raise argparse.ArgumentTypeError(f"the duration must be positive: {text!r}")
    return timedelta(**{_UNITS[unit]: int(count)})


def timestamp(text: str) -> datetime:
    """ISO 8601; a date or time without an offset is taken as UTC."""
    raw = text.strip()
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 time: {text!r} (e.g. 2026-01-31 or 2026-01-31T12:00:00Z)"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def switch(text: str) -> bool:
    try:
        return _SWITCH[text.strip().lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"use on or off, not {text!r}") from None


def priority(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be 0..100, not {value}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value
