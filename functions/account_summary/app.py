"""Account summary function: GET /v1/account/summary."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
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
    "/v1/account/summary",
    summary="Account summary",
    description="Balance, subscription, this month's usage (UTC month to date), lifetime "
    "requests and the account's creation time.",
    tags=["Account"],
    responses=http_api.route_responses("The account's summary"),
)
def get_summary(account_id: http_api.CurrentAccount) -> queries.SummaryView:
    return queries.summary(wiring.store(), account_id)


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True
)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
