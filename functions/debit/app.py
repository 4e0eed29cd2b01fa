"""Debit function: other Lambdas invoke it directly (IAM) to charge credits, or to void
their own failed call's charge."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from serverless_credits import wiring
from serverless_credits.domain import errors
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
    # Every line of this invocation carries the caller's `correlationId` (when it sent a
    # valid one) or else this invocation's request id (what the caller's Invoke response
    # names as its RequestId). Never the idempotency key: it is not logged at all.
    logger.set_correlation_id(debit_api.correlation_id_of(event) or context.aws_request_id)
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
# How many operations of each kind succeeded (replays not included: `IdempotentReplays`).
COUNT_METRICS = {
    "debit": "Debits",
    "capture": "HoldsCaptured",
    "void": "Voids",
    "reserve": "HoldsReserved",
    "release": "HoldsReleased",
}
# The one refusal metric: its total (the refusal-rate alarm's) and, under the same name, one
# series per error code. The codes are the domain's (`errors.error_for_code`): a bounded set,
# so a bounded number of custom metrics; anything else is counted as OTHER.
DECLINED = "DebitsDeclined"
OTHER_CODE = "OTHER"


def refusal_code(code: Any) -> str:
    """The `code` dimension of a refusal: a known error code, or OTHER."""
    if isinstance(code, str) and errors.error_for_code(code) is not errors.CreditsError:
        return code
    return OTHER_CODE


def _record_metrics(event: Any, response: dict[str, Any]) -> None:
    operation = event.get("operation", "debit") if isinstance(event, dict) else "debit"
    # A caller's unknown operation is refused; its text is not logged (nor any input).
    operation = (
        operation if isinstance(operation, str) and operation in AMOUNT_METRICS else "unknown"
    )
    if "error" in response:
        code = refusal_code(response["error"].get("code"))
        metrics.add_metric(name=DECLINED, unit=MetricUnit.Count, value=1)
        with single_metric(
            name=DECLINED,
            unit=MetricUnit.Count,
            value=1,
            default_dimensions=metrics.default_dimensions,
        ) as by_code:
            by_code.add_dimension(name="code", value=code)
        logger.info("request refused", extra={"code": code, "operation": operation})
    elif response.get("replayed"):
        metrics.add_metric(name="IdempotentReplays", unit=MetricUnit.Count, value=1)
    else:
        metrics.add_metric(name=COUNT_METRICS[operation], unit=MetricUnit.Count, value=1)
        metrics.add_metric(
            name=AMOUNT_METRICS[operation], unit=MetricUnit.Count, value=response["amount"]
        )
