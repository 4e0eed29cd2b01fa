"""Declined calls in daily usage: a debit or reserve refused for funds or status is still a
call the customer made."""

from __future__ import annotations

import logging
from datetime import date
from decimal import Decimal

from serverless_credits.domain.commands import DebitCommand
from serverless_credits.domain.models import UsageIncrement
from serverless_credits.domain.operations import DEFAULT_TYPE
from serverless_credits.ledger.ports import Usage

logger = logging.getLogger(__name__)


def count_declined(usage: Usage, command: DebitCommand, day: date) -> None:
    """Count a declined call (a debit or reserve refused for funds or status) in the day's
    usage. Best effort: a failure to count must not turn a clean refusal into an error, so
    every failure is logged and swallowed (a storage error as much as an item that grew too
    large or a request botocore refused), never raised in place of the refusal."""
    endpoint = command.endpoint
    try:
        usage.add(
            command.account_id,
            UsageIncrement(
                day=day,
                calls=1,
                failed=1,
                by_type={command.action or DEFAULT_TYPE: Decimal(0)},
                by_endpoint={endpoint: 1} if endpoint else {},
            ),
        )
    except Exception:  # best effort by design (docstring)
        logger.warning("declined call not counted in usage", exc_info=True)
