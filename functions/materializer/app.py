"""Materializer function: the account items' stream in, ledger entries and usage out."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from serverless_credits import wiring
from serverless_credits.transport import streams

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response = streams.handle(event, wiring.materializer())
    failed = len(response["batchItemFailures"])
    metrics.add_metric(
        name="AccountChangesRead", unit=MetricUnit.Count, value=len(event["Records"])
    )
    if failed:
        metrics.add_metric(name="MaterializationFailures", unit=MetricUnit.Count, value=failed)
    return response
