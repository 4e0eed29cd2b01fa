"""Debit function: other Lambdas invoke it directly (IAM) to charge credits, or to void
their own failed call's charge."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from serverless_credits import wiring
from serverless_credits.transport import debit_api

logger = Logger()
# Traces the handler and every DynamoDB call; patching only botocore (not every library the
# X-Ray SDK supports, as `Tracer()` does) keeps sqlite3, http.client and requests out of
# the cold start.
tracer = Tracer(patch_modules=("botocore",))
metrics = Metrics()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response = debit_api.handle(event, wiring.ledger())
    _record_metrics(event, response)
    return response


# What a successful operation's `amount` is, as a metric: only debits and captures charge.
AMOUNT_METRICS = {
    "debit": "CreditsDebited",
    "capture": "CreditsDebited",
    "void": "CreditsVoided",
    "reserve": "CreditsReserved",
    "release": "CreditsReleased",
}


def _record_metrics(event: Any, response: dict[str, Any]) -> None:
    operation = event.get("operation", "debit") if isinstance(event, dict) else "debit"
    if "error" in response:
        metrics.add_metric(name="DebitsDeclined", unit=MetricUnit.Count, value=1)
        logger.info("request refused", extra={"code": response["error"]["code"]})
    elif response.get("replayed"):
        metrics.add_metric(name="IdempotentReplays", unit=MetricUnit.Count, value=1)
    else:
        name = AMOUNT_METRICS.get(operation, "CreditsDebited")
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=response["amount"])
