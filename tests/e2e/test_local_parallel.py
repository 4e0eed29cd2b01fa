"""The local stack under parallel requests (issue 15, "Faults"): one route hammered from many
threads while other functions run alongside (debits through the Invoke API, the Materializer
on the table's stream, another route). Every answer is a 200 or the usage plan's 429, never a
5xx: each function keeps its own Powertools metrics (`devtools.local_lambda.isolate_metrics`)
and runs one invocation at a time, as in Lambda.

tests/unit/test_local_lambda.py forces the interleaving that gave the 502s deterministically;
this is the same property end to end, through real HTTP."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import TYPE_CHECKING

from devtools.local_seed import LocalAccount
from tests.e2e.support import Api

if TYPE_CHECKING:
    from mypy_boto3_lambda.client import LambdaClient

HAMMERS = 12
REQUESTS_EACH = 30
DEBITS = 40


def test_one_route_hammered_from_many_threads_never_answers_5xx(
    new_account: Callable[..., LocalAccount],
    api_for: Callable[[LocalAccount | None], Api],
    lambda_client: LambdaClient,
) -> None:
    account = new_account(balance=Decimal(1000))

    def hammer(path: str) -> list[int]:
        api = api_for(account)  # a session per thread
        return [api.get(path).status_code for _ in range(REQUESTS_EACH)]

    def debit(number: int) -> str:
        payload = {"accountId": account.account_id, "amount": 1, "idempotencyKey": f"p-{number}"}
        response = lambda_client.invoke(
            FunctionName="DebitFunction", Payload=json.dumps(payload).encode()
        )
        assert "FunctionError" not in response, response["Payload"].read()
        return "debited"

    with ThreadPoolExecutor(max_workers=HAMMERS + 3) as pool:
        balance = [pool.submit(hammer, "/v1/credits/balance") for _ in range(HAMMERS)]
        others = [pool.submit(hammer, "/v1/credits/transactions") for _ in range(2)]
        debits = list(pool.map(debit, range(DEBITS)))
        statuses = Counter(status for future in [*balance, *others] for status in future.result())

    assert debits == ["debited"] * DEBITS
    assert set(statuses) <= {200, 429}, statuses
    assert statuses[200] > 0, statuses
