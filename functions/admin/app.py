"""Admin function: operators invoke it directly (IAM; the `credits-admin` command line) to
run the business: accounts, API keys, top-ups, grants, adjustments, refunds, the ledger.
Never exposed on the customer API. Request and response: `transport.admin_api`."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from serverless_credits import wiring
from serverless_credits.transport import admin_api

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    operation = event.get("operation") if isinstance(event, dict) else None
    actor = event.get("actor") if isinstance(event, dict) else None
    logger.append_keys(operation=operation, actor=actor)
    response = admin_api.handle(event, wiring.admin())
    if "error" in response:
        metrics.add_metric(name="AdminRequestsRefused", unit=MetricUnit.Count, value=1)
        logger.info("admin request refused", extra={"code": response["error"]["code"]})
    else:
        metrics.add_metric(name="AdminOperations", unit=MetricUnit.Count, value=1)
    return response
