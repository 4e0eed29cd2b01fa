"""Process-wide wiring: one store, price catalog and ledger per Lambda execution
environment, created on first use (nothing happens at import time)."""

from __future__ import annotations

import functools

from serverless_credits.config import get_settings
from serverless_credits.ledger.operations import Ledger
from serverless_credits.ledger.prices import PriceCatalog
from serverless_credits.storage.store import CreditsStore


@functools.cache
def store() -> CreditsStore:
    return CreditsStore.connect(get_settings().table_name)


@functools.cache
def prices() -> PriceCatalog:
    return PriceCatalog(store(), get_settings().cache_seconds)


@functools.cache
def ledger() -> Ledger:
    return Ledger(store(), prices(), get_settings())


def reset() -> None:
    """Forget settings, clients and caches (tests change the environment between cases)."""
    for cached in (get_settings, store, prices, ledger):
        cached.cache_clear()
