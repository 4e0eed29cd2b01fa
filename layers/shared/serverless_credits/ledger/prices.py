"""The price list: billable action -> credits per unit, cached briefly per function."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

from serverless_credits.domain.commands import DebitCommand
from serverless_credits.domain.errors import UnknownAction, ValidationFailed
from serverless_credits.domain.models import DEFAULT_PRICES, DEFAULT_WHOLE_UNITS, PriceList
from serverless_credits.domain.money import MAX_AMOUNT, quantize
from serverless_credits.ledger.ports import PriceLists


class PriceCatalog:
    def __init__(
        self,
        store: PriceLists,
        cache_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._cache_seconds = cache_seconds
        self._monotonic = monotonic
        self._cached: tuple[float, dict[str, Decimal], frozenset[str]] | None = None

    def _current(self) -> tuple[float, dict[str, Decimal], frozenset[str]]:
        now = self._monotonic()
        if self._cached is None or now - self._cached[0] > self._cache_seconds:
            stored = self._store.get_price_list()
            self._cached = (
                (now, dict(stored.prices), frozenset(stored.whole_units))
                if stored
                else (now, dict(DEFAULT_PRICES), DEFAULT_WHOLE_UNITS)
            )
        return self._cached

    def prices(self) -> dict[str, Decimal]:
        return self._current()[1]

    def credits_for(self, action: str, quantity: Decimal) -> Decimal:
        _, prices, whole_units = self._current()
        try:
            unit_price = prices[action]
        except KeyError:
            raise UnknownAction(action) from None
        if action in whole_units and quantity != quantity.to_integral_value():
            raise ValidationFailed(
                f"'{action}' is counted in whole units: quantity must be an integer",
                {"field": "quantity"},
            )
        amount = quantize(unit_price * quantity)
        if not 0 < amount <= MAX_AMOUNT:
            raise ValidationFailed("action x quantity is out of range", {"field": "quantity"})
        return amount

    def charge(self, command: DebitCommand) -> tuple[Decimal | None, Decimal]:
        """The quantity (None for a plain amount) and the credits a debit or reserve takes."""
        if command.action is not None:
            quantity = command.quantity or Decimal(1)
            return quantity, self.credits_for(command.action, quantity)
        if command.amount is None:  # pragma: no cover - the command's validator forbids it
            raise ValidationFailed("give exactly one of 'amount' or 'action'")
        return None, command.amount

    def publish(self, prices: PriceList) -> None:
        self._store.put_price_list(prices)
        self._cached = None
