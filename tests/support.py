"""Helpers shared by test modules: a settable clock and the validation-error assertion."""

from __future__ import annotations

from datetime import datetime

from devtools.api_events import ApiResponse


class Clock:
    """A ledger clock the test sets by hand (`clock.now = ...`)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def assert_invalid(response: ApiResponse, field: str, status: int) -> None:
    """A VALIDATION_ERROR with `status` naming exactly `field` (also in the message of a 422)."""
    assert response.status == status, response.body
    error = response.body["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert [detail["field"] for detail in error["details"]["fields"]] == [field]
    assert field in error["message"] or status == 400
    assert response.body["requestId"]
