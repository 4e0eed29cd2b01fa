"""What the ExpirerFunction's sweeps share: each due item (an account and a hold or lot id)
expired on its own, a few at once, its outcome named."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

PARALLEL_EXPIRIES = 8


def expire_each(due: Sequence[tuple[str, str]], expire_one: Callable[[str, str], str]) -> list[str]:
    """The outcome of `expire_one(account_id, item_id)` for each due item, in order."""
    if not due:
        return []
    with ThreadPoolExecutor(max_workers=min(PARALLEL_EXPIRIES, len(due))) as pool:
        return list(pool.map(lambda pair: expire_one(*pair), due))
