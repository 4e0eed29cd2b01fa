"""Exact credit amounts: normalisation, rounding of computed amounts, cost formatting, strict
parsing of money input and exact JSON output."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict

from serverless_credits.domain.money import (
    MAX_AMOUNT,
    QUANTUM,
    SCALE,
    Credits,
    dumps,
    exact_dump,
    exact_number,
    format_cost,
    json_number,
    normalize,
    quantize,
    strict_number,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("10.500000"), "10.5"),
        (Decimal("1E+3"), "1000"),
        (Decimal("0.000"), "0"),
        (Decimal("-0"), "0"),
        (Decimal("-2.50"), "-2.5"),
        (Decimal("0.000001"), "0.000001"),
        (MAX_AMOUNT, "1000000000"),
    ],
)
def test_normalize_gives_the_canonical_form_without_exponent_or_trailing_zeros(
    value: Decimal, expected: str
) -> None:
    assert str(normalize(value)) == expected


def test_quantize_rounds_to_six_places_half_even() -> None:
    assert Decimal("0.000001") == QUANTUM
    assert quantize(Decimal("0.1666665")) == Decimal("0.166666")  # tie -> even
    assert quantize(Decimal("0.1666675")) == Decimal("0.166668")  # tie -> even
    assert quantize(Decimal("0.16666651")) == Decimal("0.166667")
    assert quantize(Decimal(3) * Decimal("2.5")) == Decimal("7.500000")


def test_quantize_refuses_a_value_too_large_to_hold_six_places() -> None:
    with pytest.raises(ValueError, match="out of range"):
        quantize(Decimal("1E+40"))


@pytest.mark.parametrize(
    ("credits", "price", "currency", "expected"),
    [
        (Decimal(135), Decimal("0.1"), "USD", "$13.50"),
        (Decimal("1234567"), Decimal("0.01"), "usd", "$12,345.67"),
        (Decimal(10), Decimal("0.5"), "EUR", "€5.00"),
        (Decimal(10), Decimal("0.5"), "GBP", "£5.00"),
        (Decimal(10), Decimal("0.5"), "JPY", "5.00 JPY"),
        (Decimal("0.125"), Decimal(1), "USD", "$0.12"),  # half-even at the cent
    ],
)
def test_format_cost_shows_money_for_credits(
    credits: Decimal, price: Decimal, currency: str, expected: str
) -> None:
    assert format_cost(credits, price, currency) == expected


# ---------------------------------------------------------------- strict parsing, exact output
figures = st.decimals(
    min_value=Decimal("-999999999.999999"),
    max_value=Decimal("999999999.999999"),
    places=SCALE,
    allow_nan=False,
    allow_infinity=False,
)


@settings(max_examples=500)
@given(figure=figures)
def test_every_figure_below_a_billion_round_trips_exactly_through_json(figure: Decimal) -> None:
    """Money leaves the API as JSON numbers (docs/http-api.md, "Money in responses"): every
    figure of at most 15 significant digits - every amount, every balance below a billion -
    is read back by a JSON parser as exactly the Decimal the ledger holds."""
    written = json.dumps({"amount": json_number(figure)})

    assert json.loads(written, parse_float=Decimal)["amount"] == figure
    assert Decimal(repr(json.loads(written)["amount"])) == figure  # through a double too


@given(figure=figures)
def test_a_figure_written_as_a_plain_decimal_string_parses_to_itself(figure: Decimal) -> None:
    assert strict_number(format(figure, "f")) == figure
    assert strict_number(json.loads(json.dumps(json_number(figure)))) == figure


@given(number=st.integers(min_value=-(10**17), max_value=10**17))
def test_integers_are_exact_at_any_allowed_size(number: int) -> None:
    assert json.loads(json.dumps(json_number(Decimal(number)))) == number
    assert strict_number(number) == number
    assert strict_number(str(number)) == number


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        None,
        "1_0",
        "+5",
        "\u0665",
        "\uff15",
        " 5",
        "5 ",
        "5\n",
        "5.",
        ".5",
        "1e2",
        "1E-1000000000",
        "0x10",
        "NaN",
        "Infinity",
        "",
        "1" * 41,
        10**18,
        -(10**18),
        float("nan"),
        float("inf"),
        1e300,
        Decimal("1E-1000000000"),
        Decimal("NaN"),
        [1],
        {"value": 1},
    ],
)
def test_strict_number_refuses_everything_but_plain_numbers(value: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each refusal has its own message
        strict_number(value)


# ---------------------------------------------------------------- exact JSON out (dumps)
ledger_figures = st.decimals(
    min_value=Decimal("-999999999999999999.999999"),
    max_value=Decimal("999999999999999999.999999"),
    places=SCALE,
    allow_nan=False,
    allow_infinity=False,
)
"""Every figure the ledger may hold: six decimals, up to 1e18 (24 significant digits, far
beyond the 15 a binary double keeps)."""

json_scalars = st.none() | st.booleans() | st.integers() | st.text() | ledger_figures
json_trees = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500)
@given(figure=ledger_figures)
def test_dumps_writes_every_ledger_figure_exactly(figure: Decimal) -> None:
    """What leaves an API (docs/http-api.md, "Numbers and limits"): a JSON number that a
    parser reading numbers as Decimal gets back exactly, whatever its number of digits."""
    written = dumps({"balance": figure, "list": [exact_number(figure)]})

    parsed = json.loads(written, parse_float=Decimal)
    assert parsed["balance"] == figure
    assert parsed["list"] == [figure]
    assert json.loads(written)["balance"] == float(figure)  # still a number to any parser


@given(tree=json_trees)
def test_dumps_reads_back_as_the_same_tree(tree: object) -> None:
    """Any nesting, any strings (quotes, backslashes, digits that look like numbers, text
    that looks like JSON): read back with numbers as Decimal, the same value."""
    written = dumps(tree)

    assert json.loads(written, parse_float=Decimal) == tree
    if not _has_decimal(tree):
        assert written == json.dumps(tree, separators=(",", ":"))  # as json.dumps writes it


def _has_decimal(value: object) -> bool:
    if isinstance(value, Decimal):
        return True
    if isinstance(value, dict):
        return any(_has_decimal(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_decimal(v) for v in value)
    return False


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("123456789012.345678"), "123456789012.345678"),
        (Decimal("1E+3"), "1000"),  # an integer, never an exponent
        (Decimal("10.500000"), "10.5"),
        (Decimal("-0.000001"), "-0.000001"),
        (Decimal("-0"), "0"),
        ({"s": '1.5", "x": 2', "n": Decimal("2.50")}, '{"s":"1.5\\", \\"x\\": 2","n":2.5}'),
    ],
)
def test_dumps_writes_decimal_literals(value: object, expected: str) -> None:
    assert dumps(value) == expected


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("Infinity"), float("nan")])
def test_dumps_refuses_what_is_not_a_json_number(value: object) -> None:
    with pytest.raises(ValueError, match="Out of range"):
        dumps({"x": value})


def test_dumps_refuses_what_json_cannot_hold() -> None:
    with pytest.raises(TypeError):
        dumps({"when": object()})
    with pytest.raises(TypeError):
        dumps({1: "a key must be a string"})


def test_exact_number_keeps_integers_int_and_the_rest_exact() -> None:
    assert exact_number(Decimal("100.000")) == 100
    assert type(exact_number(Decimal("100.000"))) is int
    assert exact_number(Decimal("123456789012.3456780")) == Decimal("123456789012.345678")
    assert str(exact_number(Decimal("123456789012.3456780"))) == "123456789012.345678"


class _Figures(BaseModel):
    model_config = ConfigDict(alias_generator=str.upper, populate_by_name=True)

    balance: Credits
    at: datetime
    rows: list[Credits]
    extra: dict[str, Any]


def test_exact_dump_is_the_json_dump_with_each_decimal_exact() -> None:
    """Dates, aliases and nesting as pydantic's JSON mode writes them; money exact where
    that mode would have written a float rounded to 15-17 digits."""
    model = _Figures(
        balance=Decimal("123456789012.345678"),
        at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        rows=[Decimal("1.50"), Decimal(7)],
        extra={"n": Decimal("0.000001"), "s": "123456789012.345678"},
    )

    dumped = exact_dump(model)

    assert dumped == {
        "BALANCE": Decimal("123456789012.345678"),
        "AT": "2025-01-02T03:04:05Z",
        "ROWS": [Decimal("1.5"), 7],
        "EXTRA": {"n": Decimal("0.000001"), "s": "123456789012.345678"},
    }
    assert dumps(dumped) == (
        '{"BALANCE":123456789012.345678,"AT":"2025-01-02T03:04:05Z","ROWS":[1.5,7],'
        '"EXTRA":{"n":0.000001,"s":"123456789012.345678"}}'
    )
    assert model.model_dump(mode="json", by_alias=True)["BALANCE"] != dumped["BALANCE"]
