"""Event publisher function: the account items' stream in, balance events to EventBridge out
(`Balance Low`, `Balance Depleted`, `Auto Reload Requested`, `Account Status Changed`,
`Hold Expired`, `Credits Expired`)."""

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
    response, report = streams.publish(event, wiring.event_publisher())
    for published in report.events:
        logger.info(
            "event published",
            extra={"eventId": published.id, "detailType": published.detail_type},
        )
    metrics.add_metric(name="EventsPublished", unit=MetricUnit.Count, value=report.published)
    # Entries the bus refused after the retries (kept in the replay queue), and changes
    # whose events could not be kept anywhere (Lambda retries them): the alarm's metric.
    failures = report.replayable + len(response["batchItemFailures"])
    metrics.add_metric(name="EventPublishFailures", unit=MetricUnit.Count, value=failures)
    if report.retried:
        metrics.add_metric(name="EventPublishRetries", unit=MetricUnit.Count, value=report.retried)
    return response
