"""The library behind the HTTP routes, called directly: its own guards, independent of the
handlers' parameter validation."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from aws_lambda_powertools.event_handler.exceptions import BadRequestError, ServiceError
from pydantic import TypeAdapter, ValidationError

from devtools.api_events import LambdaContextStub, api_event, open_account
from serverless_credits.domain.errors import ValidationFailed
from serverless_credits.reads import queries
from serverless_credits.reads.cursor import CursorSigner
from serverless_credits.storage.store import CreditsStore
from serverless_credits.transport import http_api

SIGNER = CursorSigner(b"s" * 32)
TODAY = date(2025, 2, 9)


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"offset": -1}, "offset"),
        ({"offset": 1_001}, "offset"),
    ],
)
def test_transactions_guards_its_bounds(
    moto_store: CreditsStore, arguments: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        queries.transactions(moto_store, "acct", SIGNER, **arguments)
    assert refused.value.details == {"field": field}


@pytest.mark.parametrize("days", [0, 91])
def test_stats_range_guards_days(days: int) -> None:
    with pytest.raises(ValidationFailed) as refused:
        queries.stats_range(days=days, start=None, end=None, today=TODAY)
    assert refused.value.details == {"field": "days"}


def test_stats_range_defaults() -> None:
    assert queries.stats_range(days=None, start=None, end=None, today=TODAY) == (
        date(2025, 1, 11),
        TODAY,
    )
    assert queries.stats_range(days=None, start=None, end=date(2025, 1, 31), today=TODAY) == (
        date(2025, 1, 2),
        date(2025, 1, 31),
    )
    moment = datetime(2025, 2, 1, 23, 30, tzinfo=UTC)
    assert queries.stats_range(days=None, start=moment, end=None, today=TODAY)[0] == date(
        2025, 2, 1
    )


def test_date_or_time_parameters() -> None:
    adapter: TypeAdapter[date | datetime] = TypeAdapter(queries.DateOrTime)
    assert adapter.validate_python("2025-02-01") == date(2025, 2, 1)
    assert adapter.validate_python("2025-02-01T00:00:00Z") == datetime(2025, 2, 1, tzinfo=UTC)
    assert adapter.validate_python("2025-02-01 10:00") == datetime(2025, 2, 1, 10, tzinfo=UTC)
    assert adapter.validate_python("2025-02-01t10:00:00+0100") == datetime(
        2025, 2, 1, 9, tzinfo=UTC
    )
    assert adapter.validate_python(date(2025, 1, 1)) == date(2025, 1, 1)
    for bad in (20250201, "20250201", "2025-W05", "1969-12-31", "9999-01-01", "2025-02-01T10"):
        with pytest.raises(ValidationError):
            adapter.validate_python(bad)


def test_the_period_buckets_cover_the_range_most_recent_first() -> None:
    assert list(queries._buckets(date(2024, 12, 30), date(2025, 1, 2), queries.Period.DAILY)) == [
        "2025-01-02",
        "2025-01-01",
        "2024-12-31",
        "2024-12-30",
    ]
    assert list(queries._buckets(date(2024, 11, 30), date(2025, 2, 1), queries.Period.MONTHLY)) == [
        "2025-02",
        "2025-01",
        "2024-12",
        "2024-11",
    ]
    assert list(queries._buckets(date(2023, 12, 31), date(2025, 1, 1), queries.Period.YEARLY)) == [
        "2025",
        "2024",
        "2023",
    ]


# ---------------------------------------------------------------- the resolver
def call(app: http_api.CreditsApiResolver, api_key_id: str, path: str = "/boom") -> dict[str, Any]:
    context: Any = LambdaContextStub()
    return app.resolve(api_event(path, api_key_id=api_key_id, request_id="rid"), context)


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (BadRequestError("bad thing /secret"), 400, "BAD_REQUEST"),
        (ServiceError(418, "teapot"), 418, "IM_A_TEAPOT"),
        (ServiceError(502, "upstream /secret"), 500, "INTERNAL_ERROR"),
        (ServiceError(299, "odd"), 500, "INTERNAL_ERROR"),
        (ServiceError(999, "odder"), 500, "INTERNAL_ERROR"),
    ],
)
def test_powertools_http_errors_use_the_error_shape(
    moto_store: CreditsStore, error: ServiceError, status: int, code: str
) -> None:
    owner = open_account("acct_lib")
    app = http_api.create_app()  # no metrics: nothing to count

    @app.get("/boom")
    def boom() -> None:
        raise error

    response = call(app, owner.api_key_id)

    assert response["statusCode"] == status
    assert f'"code":"{code}"' in response["body"]
    assert "secret" not in response["body"]
    assert response["multiValueHeaders"]["X-Request-Id"] == ["rid"]


def test_current_account_reads_the_resolved_account(moto_store: CreditsStore) -> None:
    owner = open_account("acct_lib")
    app = http_api.create_app()

    @app.get("/whoami")
    def whoami(account_id: http_api.CurrentAccount) -> dict[str, str]:
        return {"accountId": account_id}

    response = call(app, owner.api_key_id, "/whoami")
    assert response["body"] == '{"accountId":"acct_lib"}'
    assert app.context == {}  # nothing leaks into the next invocation


def test_a_malformed_event_is_a_500_not_a_crash(moto_store: CreditsStore) -> None:
    owner = open_account("acct_lib")
    app = http_api.create_app()
    event = api_event("/x", api_key_id=owner.api_key_id, request_id="rid")
    del event["httpMethod"]
    context: Any = LambdaContextStub()

    response = app.resolve(event, context)

    assert response["statusCode"] == 500
    assert response["multiValueHeaders"]["X-Request-Id"] == ["rid"]
    assert app.context == {}
