"""Expirer function: every minute, releases the holds past their expiry (`ledger.holds`)
and takes what expired credit lots hold out of the balance (`ledger.lots`), each exactly
once (conditioned on the account item, under the expiry's own idempotency key)."""

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
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    ledger = wiring.ledger()
    holds = ledger.holds.sweep()
    metrics.add_metric(name="HoldsExpired", unit=MetricUnit.Count, value=holds.expired)
    metrics.add_metric(name="HoldExpiriesFailed", unit=MetricUnit.Count, value=holds.failed)
    if holds.due:
        logger.info("holds swept", extra=holds.as_dict())
    lots = ledger.lots.sweep()
    metrics.add_metric(name="LotsExpired", unit=MetricUnit.Count, value=lots.expired)
    metrics.add_metric(name="LotExpiriesFailed", unit=MetricUnit.Count, value=lots.failed)
    if lots.due:
        logger.info("lots swept", extra=lots.as_dict())
    return {**holds.as_dict(), "lots": lots.as_dict()}
