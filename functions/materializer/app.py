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
    response, report = streams.materialize(event, wiring.materializer())
    metrics.add_metric(name="AccountChangesRead", unit=MetricUnit.Count, value=report.read)
    if report.failed:
        metrics.add_metric(
            name="MaterializationFailures", unit=MetricUnit.Count, value=report.failed
        )
        logger.warning("account changes failed", extra={"failed": report.failed})
    if report.lag_ms is not None:
        # The age of the batch's oldest new version: how far the ledger trails the writes.
        metrics.add_metric(
            name="MaterializationLag", unit=MetricUnit.Milliseconds, value=report.lag_ms
        )
    return response
