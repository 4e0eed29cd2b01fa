"""Watch the running local stack work: `python -m devtools.local_demo` (after `make run`).

Reads `.local/stack.json`, charges the demo account a few billable calls through the Debit
function (the shared client over the local Lambda Invoke API, as another Lambda would), and
shows over the HTTP API the balance going down at once, then the ledger and today's stats
filling once the stack's stream consumer has run the MaterializerFunction (it waits for that,
with a deadline, and says how long it took).
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import requests
from botocore.config import Config

from devtools.dynamodb_local import LOCAL_CREDENTIALS
from devtools.local_lambda import mount_layers

mount_layers()

from devtools.local_stack import DEFAULT_STATE_FILE, running_stack  # noqa: E402
from serverless_credits.integrations.client import CreditsClient  # noqa: E402

LEDGER_DEADLINE = 15.0  # seconds to wait for the last charge's ledger entry
CALLS = (
    ("sms", 1, "/v1/sms/send"),
    ("voice_call_minute", 2, "/v1/calls"),
    ("api_call", 1, "/v1/lookup"),
)


def _get(stack: dict[str, Any], path: str, **params: Any) -> Any:
    response = requests.get(
        f"{stack['apiUrl']}{path}",
        params=params or None,
        headers={"X-API-Key": stack["apiKey"]},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


def client_for(stack: dict[str, Any]) -> CreditsClient:
    """The shared client, pointed at the stack's Invoke API (local credentials, any will do)."""
    lambda_client = boto3.client(
        "lambda",
        endpoint_url=stack["lambdaEndpoint"],
        region_name=stack.get("region", LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"]),
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"total_max_attempts": 1}),
    )
    return CreditsClient(function_name="DebitFunction", lambda_client=lambda_client)


def run(stack: dict[str, Any]) -> list[str]:
    """Charge the calls; return what a person would want to see."""
    lines = []
    account = stack["accountId"]
    before = _get(stack, "/v1/credits/balance")
    calls_before = _get(stack, "/v1/credits/stats", days=1)["totalCalls"]
    lines.append(f"Balance of {account}: {before['balance']} credits")
    credits = client_for(stack)
    last_charge = ""
    for action, quantity, endpoint in CALLS:
        charged = credits.debit(
            account_id=account,
            action=action,
            quantity=Decimal(quantity),
            endpoint=endpoint,
            idempotency_key=f"demo-{uuid.uuid4()}",
            description=f"local demo: {action}",
        )
        lines.append(
            f"  charged {action} x {quantity}: -{charged.amount} -> balance {charged.balance_after}"
            f"  ({charged.transaction_id})"
        )
        last_charge = charged.transaction_id
    charged_at = time.monotonic()
    after = _get(stack, "/v1/credits/balance")
    lines.append(f"Balance now: {after['balance']} credits (used {after['used']} in all)")
    latest = _wait_for_entry(stack, last_charge, charged_at + LEDGER_DEADLINE)
    lag = time.monotonic() - charged_at
    lines.append(
        f"Latest ledger entries (from the stream, {lag * 1000:.0f} ms after the last charge):"
    )
    for entry in latest:
        lines.append(
            f"  {entry['createdAt']}  {entry['type']:<7} {entry['amount']:>8}  "
            f"-> {entry['balanceAfter']}  {entry['description']}"
        )
    stats = _get(stack, "/v1/credits/stats", days=1)
    while (
        stats["totalCalls"] < calls_before + len(CALLS)
        and time.monotonic() < charged_at + LEDGER_DEADLINE
    ):
        time.sleep(0.05)  # usage is counted in the same materializer batch, just after
        stats = _get(stack, "/v1/credits/stats", days=1)
    lines.append(f"Today's calls: {calls_before} -> {stats['totalCalls']}")
    lines.append(f"Calls by endpoint over the last day: {stats['byEndpoint']}")
    return lines


def _wait_for_entry(stack: dict[str, Any], transaction_id: str, deadline: float) -> list[Any]:
    """The latest entries once `transaction_id`'s is among them (the materializer wrote it)."""
    while True:
        entries: list[Any] = _get(stack, "/v1/credits/transactions", limit=len(CALLS))["data"]
        if any(entry["id"] == transaction_id for entry in entries):
            return entries
        if time.monotonic() > deadline:
            raise SystemExit(
                f"{transaction_id} has no ledger entry after {LEDGER_DEADLINE} s: is the stack's "
                "stream consumer running (see the `make run` log)?"
            )
        time.sleep(0.05)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.local_demo", description=__doc__)
    parser.add_argument("--state-file", type=Path, default=DEFAULT_STATE_FILE)
    args = parser.parse_args(argv)
    print("\n".join(run(running_stack(args.state_file))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
