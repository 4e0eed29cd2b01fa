"""Helpers shared by test modules: a settable clock and the validation-error assertion."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from devtools.api_events import ApiResponse
from serverless_credits import wiring
from serverless_credits.ledger.operations import Ledger
from serverless_credits.storage.store import CreditsStore


class Clock:
    """A ledger clock the test sets by hand (`clock.now = ...`)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def materializing_ledger(
    store: CreditsStore, materialize: Callable[[], int], clock: Clock
) -> Ledger:
    """The process's ledger on a test's clock, except that waiting (for a fresh entry, a
    hold the ledger has not caught up with) runs the materializer over the stream."""

    def materialize_meanwhile(_: float) -> None:
        materialize()

    return wiring.build_ledger(store, wiring.prices(), clock=clock, sleep=materialize_meanwhile)


def assert_invalid(response: ApiResponse, field: str, status: int) -> None:
    """A VALIDATION_ERROR with `status` naming exactly `field` (also in the message of a 422)."""
    assert response.status == status, response.body
    error = response.body["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert [detail["field"] for detail in error["details"]["fields"]] == [field]
    assert field in error["message"] or status == 400
    assert response.body["requestId"]
