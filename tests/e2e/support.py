"""What the end-to-end tests share besides fixtures."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests

from serverless_credits.storage.store import CreditsStore

T = TypeVar("T")

# Ledger entries and usage come from the table's stream (the stack's consumer polls it every
# 0.1 s): they appear shortly after a write. Tests wait for them up to this long.
MATERIALIZATION_DEADLINE = 15.0

# Template parameters for the test stack: a small free-plan quota, the default throttle.
FREE_PLAN = {"FreePlanRateLimit": "5", "FreePlanBurstLimit": "10", "FreePlanQuotaPerDay": "12"}


class Api:
    """The HTTP API over real HTTP, as a customer calls it."""

    def __init__(self, base_url: str, api_key: str | None) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        if api_key is not None:
            self.session.headers["X-API-Key"] = api_key

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.session.get(f"{self.base_url}{path}", params=params or None, timeout=10)

    def json(self, path: str, **params: Any) -> Any:
        response = self.get(path, **params)
        assert response.status_code == 200, response.text
        return response.json()


def eventually(
    probe: Callable[[], T | None],
    *,
    timeout: float = MATERIALIZATION_DEADLINE,
    interval: float = 0.05,
    what: str = "the condition",
) -> T:
    """Call `probe` until it returns something truthy (returned), failing after `timeout`
    seconds with the last value: how a test waits for materialization, never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:  # truthy, so not None
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s; last: {value!r}")
        time.sleep(interval)


def ledger_caught_up(store: CreditsStore, account_id: str) -> bool:
    """Every version of the account has its ledger entry (the materializer's head is there)."""
    account = store.accounts.get(account_id, consistent=True)
    assert account is not None, account_id
    return store.entries.head(account_id).version >= account.version


def wait_for_ledger(store: CreditsStore, account_id: str) -> None:
    eventually(
        lambda: ledger_caught_up(store, account_id),
        what=f"the ledger of {account_id} catching up with its balance",
    )
