"""Balance function: GET /v1/credits/balance, /v1/credits/balances and /v1/credits/holds."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from serverless_credits import wiring
from serverless_credits.reads import cursor as cursors
from serverless_credits.reads import holds, lots, queries
from serverless_credits.transport import http_api

logger = Logger()
tracer = Tracer()
metrics = Metrics()
app = http_api.create_app(metrics)


@app.get(
    "/v1/credits/balance",
    summary="Credit balance",
    description="Balance, reserved and available credits, lifetime usage, account flags. "
    "One consistent read; consumes no credits.",
    tags=["Credits"],
    responses=http_api.route_responses("The account's balance"),
)
def get_balance(account_id: http_api.CurrentAccount) -> queries.BalanceView:
    return queries.balance(wiring.store(), account_id)


@app.get(
    "/v1/credits/balances",
    summary="Balances per credit lot",
    description="The account's credit lots (Deepgram's `balanceId`, `amount`, `units`, "
    "`purchaseOrderId`, plus `priority`, `expiresAt`, `grantedAt`, `initialAmount`, `status`, "
    "`source`). By default the lots holding credit, in the order debits spend them (highest "
    "priority, then soonest expiry, then oldest), the account's debt last as the negative "
    "`overdraft` lot: their amounts add up to exactly the balance route's `balance` "
    "(`total`). One consistent read and one batch read. `status=all` pages through every "
    "lot ever granted (`active`, `exhausted` or `expired`; one read and one Query per page): "
    "page with `limit` and `cursor` (the previous page's `nextCursor`), which only "
    "`status=all` takes.",
    tags=["Credits"],
    responses=http_api.route_responses("The account's credit lots"),
)
def get_balances(
    *,
    account_id: http_api.CurrentAccount,
    status: Annotated[
        lots.LotListing,
        Query(description="`active`: the lots holding credit; `all`: every lot ever granted"),
    ] = lots.LotListing.ACTIVE,
    limit: Annotated[
        int | None,
        Query(
            ge=1,
            le=queries.MAX_LIMIT,
            description=f"Lots per page with status=all (1-100, default {queries.DEFAULT_LIMIT})",
        ),
    ] = None,
    cursor: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=cursors.MAX_CURSOR_LENGTH,
            description="nextCursor (status=all)",
        ),
    ] = None,
) -> lots.BalancesView:
    return lots.balances(
        wiring.store(),
        account_id,
        wiring.cursor_signer,
        status=status,
        limit=limit,
        cursor=cursor,
    )


@app.get(
    "/v1/credits/holds",
    summary="Open holds",
    description="Credits set aside by reservations not yet captured or released (their sum is "
    "`reserved`), newest first. A hold past `expiresAt` that the expiry sweep has not released "
    "yet is listed with `expired: true`. Page with `cursor` (the previous page's `nextCursor`).",
    tags=["Credits"],
    responses=http_api.route_responses("A page of open holds"),
)
def list_holds(
    *,
    account_id: http_api.CurrentAccount,
    limit: Annotated[
        int, Query(ge=1, le=queries.MAX_LIMIT, description="Holds per page (1-100)")
    ] = queries.DEFAULT_LIMIT,
    cursor: Annotated[
        str | None,
        Query(min_length=1, max_length=cursors.MAX_CURSOR_LENGTH, description="nextCursor"),
    ] = None,
) -> holds.HoldsPage:
    return holds.holds(
        wiring.store(), account_id, wiring.cursor_signer(), limit=limit, cursor=cursor
    )


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True
)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
