"""GET /v1/credits/holds on DynamoDB Local: at the cap of open holds, every page costs one
strongly consistent GetItem of the account item and one BatchGetItem of the page's HOLD
items, and the cursor walks every open hold exactly once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from devtools.api_events import api_event, invoke
from functions.balance.app import lambda_handler
from serverless_credits import wiring
from serverless_credits.domain.commands import CreateAccountCommand, ReserveCommand
from serverless_credits.domain.holds import MAX_OPEN_HOLDS
from serverless_credits.domain.models import ApiKeyMapping, utc_now
from serverless_credits.storage.store import CreditsStore

pytestmark = pytest.mark.integration

KEY = "key-acct_cap"


@dataclass
class RequestLog:
    """Each DynamoDB request: its operation, whether it was strongly consistent, and how
    many items it returned."""

    calls: list[tuple[str, bool, int]] = field(default_factory=list)

    @staticmethod
    def before(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        tables = params.get("RequestItems", {}).values()
        context["consistent"] = bool(params.get("ConsistentRead")) or any(
            table.get("ConsistentRead") for table in tables
        )

    def after(self, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        found = parsed.get("Responses", {}).values()
        items = (1 if parsed.get("Item") else 0) + sum(len(items) for items in found)
        self.calls.append((model.name, bool(context.get("consistent")), items))


@pytest.fixture
def capped(local_store: CreditsStore) -> Iterator[tuple[list[str], RequestLog]]:
    """An account at the cap of open holds (descriptions not yet materialized), and a log
    of the requests made after it was set up."""
    ledger = wiring.ledger()
    ledger.create_account(CreateAccountCommand(account_id="acct_cap", opening_balance=Decimal(500)))
    local_store.catalog.put_api_key_mapping(
        ApiKeyMapping(api_key_id=KEY, account_id="acct_cap", plan="pro", created_at=utc_now())
    )
    made = []
    for number in range(MAX_OPEN_HOLDS):
        result = ledger.holds.reserve(
            ReserveCommand(
                account_id="acct_cap",
                idempotency_key=f"r{number}",
                amount=Decimal(1),
                description=f"hold {number}",
            )
        )
        assert result.hold_id is not None
        made.append(result.hold_id)
    invoke(lambda_handler, api_event("/v1/credits/balance", api_key_id=KEY))  # warm the key cache
    log = RequestLog()
    events = local_store.client.meta.events
    events.register("before-parameter-build.dynamodb.*", log.before)
    events.register("after-call.dynamodb.*", log.after)
    yield made, log
    events.unregister("before-parameter-build.dynamodb.*", log.before)
    events.unregister("after-call.dynamodb.*", log.after)


def walk(log: RequestLog, limit: int) -> tuple[list[dict[str, Any]], list[list[Any]]]:
    """Every hold, following the cursor, and the requests of each page."""
    holds: list[dict[str, Any]] = []
    costs: list[list[Any]] = []
    query = {"limit": str(limit)}
    while True:
        log.calls.clear()
        response = invoke(lambda_handler, api_event("/v1/credits/holds", query, api_key_id=KEY))
        assert response.status == 200, response.body
        costs.append(list(log.calls))
        holds.extend(response.body["data"])
        if not response.body["hasMore"]:
            return holds, costs
        query = {"limit": str(limit), "cursor": response.body["nextCursor"]}


def test_each_page_is_one_consistent_get_and_one_batch_get(
    capped: tuple[list[str], RequestLog], local_materialize: Callable[[], int]
) -> None:
    made, log = capped
    local_materialize()

    holds, costs = walk(log, 20)

    assert sorted(hold["holdId"] for hold in holds) == sorted(made)
    assert len({hold["holdId"] for hold in holds}) == MAX_OPEN_HOLDS
    assert {hold["description"] for hold in holds} == {f"hold {n}" for n in range(MAX_OPEN_HOLDS)}
    assert costs == [
        [("GetItem", True, 1), ("BatchGetItem", False, 20)],
        [("GetItem", True, 1), ("BatchGetItem", False, 20)],
        [("GetItem", True, 1), ("BatchGetItem", False, 10)],
    ]


def test_holds_whose_items_are_not_written_yet_cost_the_same_and_are_listed(
    capped: tuple[list[str], RequestLog],
) -> None:
    """Before the stream is materialized no HOLD item exists: every hold is still listed,
    from the account item, undescribed."""
    made, log = capped

    holds, costs = walk(log, 50)

    assert sorted(hold["holdId"] for hold in holds) == sorted(made)
    assert {hold["description"] for hold in holds} == {""}
    assert costs == [[("GetItem", True, 1), ("BatchGetItem", False, 0)]]
