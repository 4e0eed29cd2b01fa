"""Stats function: GET /v1/credits/stats (usage from the daily aggregates)."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from serverless_credits import wiring
from serverless_credits.reads import queries
from serverless_credits.transport import http_api

logger = Logger()
tracer = Tracer()
metrics = Metrics()
app = http_api.create_app(metrics)


@app.get(
    "/v1/credits/stats",
    summary="Usage statistics",
    description="Credits used, calls and cost per day, month or year, by action and by "
    f"endpoint. Give `days` (1-{queries.MAX_DAYS}) or `from`/`to` (alias `startDate`/"
    f"`endDate`, at most {queries.MAX_RANGE_DAYS} days); default: the last "
    f"{queries.DEFAULT_DAYS} days. Days are UTC days.",
    tags=["Credits"],
    responses=http_api.route_responses("Usage statistics"),
)
def get_stats(
    *,
    account_id: http_api.CurrentAccount,
    days: Annotated[
        int | None, Query(ge=1, le=queries.MAX_DAYS, description="Lookback window in days")
    ] = None,
    start: Annotated[
        queries.DateOrTime | None, Query(alias="from", description="First day (ISO 8601)")
    ] = None,
    end: Annotated[
        queries.DateOrTime | None, Query(alias="to", description="Last day (ISO 8601)")
    ] = None,
    start_date: Annotated[
        queries.DateOrTime | None, Query(alias="startDate", description="Alias of `from`")
    ] = None,
    end_date: Annotated[
        queries.DateOrTime | None, Query(alias="endDate", description="Alias of `to`")
    ] = None,
    period: Annotated[
        queries.Period, Query(description="Row granularity of `usage`")
    ] = queries.Period.DAILY,
) -> queries.StatsView:
    return queries.stats(
        wiring.store(),
        account_id,
        days=days,
        start=start,
        end=end,
        start_date=start_date,
        end_date=end_date,
        period=period,
    )


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True
)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
