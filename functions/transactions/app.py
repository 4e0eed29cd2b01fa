"""Transactions function: GET /v1/credits/transactions (the ledger, most recent first)."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from serverless_credits import wiring
from serverless_credits.domain.models import EntryType
from serverless_credits.reads import cursor as cursors
from serverless_credits.reads import queries
from serverless_credits.transport import http_api

logger = Logger()
tracer = Tracer()
metrics = Metrics()
app = http_api.create_app(metrics)


@app.get(
    "/v1/credits/transactions",
    summary="Transaction history",
    description="Ledger entries, most recent first. Page with `cursor` (the previous page's "
    "`nextCursor`: one read per page, no gaps or repeats while new entries arrive) or, for "
    f"compatibility, `offset` (at most {queries.MAX_OFFSET:,}). Every page is bounded: it "
    f"examines at most {queries.MAX_SCANNED:,} ledger entries (plus the `offset` skipped) in "
    f"at most {queries.MAX_QUERIES} DynamoDB Queries. A `type` or time filter that matches "
    "fewer entries than that returns a **partial** page (`partial: true`, possibly empty, "
    "`hasMore: true`) whose `nextCursor` continues the search: keep following `nextCursor` "
    "until `hasMore` is false. An `offset` the bound cannot reach under a filter is a 400 "
    "VALIDATION_ERROR naming `offset` (page with `cursor`).",
    tags=["Credits"],
    responses=http_api.route_responses("A page of transactions"),
)
def list_transactions(
    *,
    account_id: http_api.CurrentAccount,
    limit: Annotated[
        int, Query(ge=1, le=queries.MAX_LIMIT, description="Entries per page (1-100)")
    ] = queries.DEFAULT_LIMIT,
    offset: Annotated[
        int,
        Query(
            ge=0,
            le=queries.MAX_OFFSET,
            description=f"Entries to skip (compatibility; 0-{queries.MAX_OFFSET:,})",
        ),
    ] = 0,
    cursor: Annotated[
        str | None,
        Query(min_length=1, max_length=cursors.MAX_CURSOR_LENGTH, description="nextCursor"),
    ] = None,
    entry_type: Annotated[
        EntryType | None, Query(alias="type", description="Only entries of this type")
    ] = None,
    start: Annotated[
        queries.DateOrTime | None,
        Query(alias="from", description="Entries at or after this day/moment (ISO 8601, UTC)"),
    ] = None,
    end: Annotated[
        queries.DateOrTime | None,
        Query(alias="to", description="Entries at or before this day/moment (ISO 8601, UTC)"),
    ] = None,
) -> queries.TransactionsPage:
    return queries.transactions(
        wiring.store(),
        account_id,
        wiring.cursor_signer(),
        limit=limit,
        offset=offset,
        cursor=cursor,
        entry_type=entry_type,
        start=start,
        end=end,
    )


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True
)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
