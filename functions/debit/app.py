"""Debit function: other Lambdas invoke it directly (IAM) to charge or refund credits."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from serverless_credits import debit_api, service

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response = debit_api.handle(event, service.ledger())
    if "error" in response:
        code = response["error"]["code"]
        metrics.add_metric(name="DebitsDeclined", unit=MetricUnit.Count, value=1)
        logger.info("debit refused", extra={"code": code})
    elif response.get("replayed"):
        metrics.add_metric(name="IdempotentReplays", unit=MetricUnit.Count, value=1)
    else:
        metrics.add_metric(name="CreditsDebited", unit=MetricUnit.Count, value=response["amount"])
    return response
