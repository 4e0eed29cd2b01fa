"""One local stack for the end-to-end tests: `devtools.local_stack.LocalStack` in this process,
on free loopback ports, on the session's DynamoDB Local with a table of its own.

Template parameters are overridden as `sam local --parameter-overrides` would: a small free-plan
quota so "429 over quota" needs a dozen requests, not a thousand.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.config import Config

from devtools import dynamodb_local
from devtools.local_seed import LocalAccount
from devtools.local_stack import LocalStack, StackSettings
from serverless_credits.integrations.client import CreditsClient
from serverless_credits.storage.store import CreditsStore
from tests.e2e.support import FREE_PLAN, Api, wait_for_ledger

if TYPE_CHECKING:
    from mypy_boto3_lambda.client import LambdaClient

_accounts = itertools.count()


@pytest.fixture(scope="package")
def stack(
    dynamodb_local_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    settings = StackSettings(
        api_port=0,
        lambda_port=0,
        dynamodb_endpoint=dynamodb_local_endpoint,
        table_name=f"credits-e2e-{uuid.uuid4().hex[:8]}",
        parameter_overrides=FREE_PLAN,
        state_file=tmp_path_factory.mktemp("stack") / "stack.json",
        # No scheduled runs in the shared stack: a test that expires holds by hand must not
        # race the ExpirerFunction (tests/e2e/test_local_schedules.py runs the schedules).
        schedule_scale=0,
    )
    with LocalStack(settings) as running:
        yield running


@pytest.fixture(scope="package")
def demo(stack: LocalStack) -> LocalAccount:
    assert stack.demo is not None
    return stack.demo


@pytest.fixture
def new_account(stack: LocalStack) -> Callable[..., LocalAccount]:
    """A fresh account with its own key (so quotas and balances don't leak between tests)."""

    def create(plan: str = "pro", balance: Decimal = Decimal(100)) -> LocalAccount:
        account_id = f"acct_e2e_{next(_accounts)}_{uuid.uuid4().hex[:6]}"
        return stack.add_account(account_id, plan=plan, opening_balance=balance)

    return create


@pytest.fixture
def api_for(stack: LocalStack) -> Callable[[LocalAccount | None], Api]:
    def make(account: LocalAccount | None) -> Api:
        return Api(stack.api_url, account.api_key if account else None)

    return make


@pytest.fixture
def demo_api(
    api_for: Callable[[LocalAccount | None], Api], demo: LocalAccount, store: CreditsStore
) -> Api:
    """The demo account's API, once its ledger has caught up with earlier tests' writes
    (entries come from the stream: a test reading "before" figures must not race them)."""
    wait_for_ledger(store, demo.account_id)
    return api_for(demo)


@pytest.fixture(scope="package")
def lambda_client(stack: LocalStack) -> LambdaClient:
    return boto3.client(
        "lambda",
        endpoint_url=stack.lambda_endpoint,
        region_name=dynamodb_local.LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"],
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"total_max_attempts": 1}, read_timeout=30),
    )


@pytest.fixture(scope="package")
def credits_client(lambda_client: LambdaClient) -> CreditsClient:
    return CreditsClient(function_name="DebitFunction", lambda_client=lambda_client)


@pytest.fixture(scope="package")
def store(stack: LocalStack) -> CreditsStore:
    """The table, read directly (to check what the API says against what is stored)."""
    return CreditsStore(dynamodb_local.client_for(stack.dynamodb_endpoint), stack.table_name)
