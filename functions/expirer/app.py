"""Expirer function: every minute, releases the holds past their expiry (`ledger.holds`),
each exactly once (fenced on the account item, under the expiry's own idempotency key)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from serverless_credits import wiring

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    report = wiring.ledger().holds.sweep()
    metrics.add_metric(name="HoldsExpired", unit=MetricUnit.Count, value=report.expired)
    metrics.add_metric(name="HoldExpiriesFailed", unit=MetricUnit.Count, value=report.failed)
    if report.due:
        logger.info("holds swept", extra=report.as_dict())
    return report.as_dict()
