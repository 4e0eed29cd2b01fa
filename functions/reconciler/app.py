"""Reconciler function: on a schedule (every account) or invoked with `{"accountId": ...}`,
fills ledger gaps from the idempotency records and proves balance == sum(ledger)."""

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
    reconciler = wiring.reconciler()
    account_id = event.get("accountId") if isinstance(event, dict) else None
    reports = [reconciler.account(account_id)] if account_id else reconciler.all()
    inconsistent = [report for report in reports if not report.consistent]
    filled = sum(len(report.filled) for report in reports)
    metrics.add_metric(name="AccountsReconciled", unit=MetricUnit.Count, value=len(reports))
    metrics.add_metric(name="LedgerEntriesFilled", unit=MetricUnit.Count, value=filled)
    metrics.add_metric(name="LedgerInconsistencies", unit=MetricUnit.Count, value=len(inconsistent))
    return {
        "accounts": len(reports),
        "filled": filled,
        "inconsistent": [report.as_dict() for report in inconsistent],
    }
