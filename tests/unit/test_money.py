"""Exact credit amounts: normalisation, rounding of computed amounts, and cost formatting."""

from __future__ import annotations

from decimal import Decimal

import pytest

from serverless_credits.domain.money import MAX_AMOUNT, QUANTUM, format_cost, normalize, quantize


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
