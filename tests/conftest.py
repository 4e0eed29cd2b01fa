"""Shared fixtures: a moto table for unit tests, DynamoDB Local for integration tests.

Both create the credits table from `template.yaml` (devtools.template), never from a copy.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from moto import mock_aws
from moto.dynamodb.models import DynamoDBBackend

from devtools import dynamodb_local
from devtools.dynamodb_local import DynamoDBLocal
from devtools.streams import materializer_poller
from serverless_credits import wiring
from serverless_credits.storage.store import CreditsStore

# Tests never reach AWS: fake credentials, a fixed region, tracing off.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "ServerlessCredits",
        "POWERTOOLS_SERVICE_NAME": "serverless-credits",
        "POWERTOOLS_DEV": "false",
        "TABLE_NAME": "credits-unit",
        "CURSOR_SIGNING_KEY": "test-signing-key-0123456789",
    }
)
os.environ.pop("AWS_PROFILE", None)

_table_numbers = itertools.count()


def _moto_writes_one_item_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB applies a conditional write atomically; moto 5 checks the condition, then
    applies the update, without a lock. The materializer writes a batch's versions in
    parallel, so on moto a hold's conditional open (checked before its close, applied
    after it) could reopen a closed HOLD item, which DynamoDB never does. moto's writes
    are serialized here, as DynamoDB serializes the writes of one item. (Concurrency and
    atomicity are still proven on DynamoDB Local only: tests/integration.)"""
    lock = threading.Lock()
    for name in ("put_item", "update_item", "delete_item"):
        original = getattr(DynamoDBBackend, name)

        def locked(self: DynamoDBBackend, *args: Any, _original: Any = original, **kw: Any) -> Any:
            with lock:
                return _original(self, *args, **kw)

        monkeypatch.setattr(DynamoDBBackend, name, locked)


@pytest.fixture
def moto_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[CreditsStore]:
    """A fresh credits table in moto, and the library's service wired to it."""
    monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    _moto_writes_one_item_at_a_time(monkeypatch)
    with mock_aws():
        wiring.reset()
        store = wiring.store()
        dynamodb_local.create_table(store.client, store.table_name)
        yield store
    wiring.reset()


@pytest.fixture
def materialize(moto_store: CreditsStore) -> Callable[[], int]:
    """Run the materializer over everything the table's stream holds so far (what the
    Materializer function does in AWS, shortly after each change)."""
    return materializer_poller(moto_store.client, moto_store.table_name).drain


@pytest.fixture(scope="session")
def dynamodb_local_endpoint() -> Iterator[str]:
    """One DynamoDB Local for the whole session, on a free loopback port."""
    with DynamoDBLocal() as local:
        yield local.endpoint


@pytest.fixture
def local_store(
    dynamodb_local_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[CreditsStore]:
    """A fresh table on DynamoDB Local (a new name per test), with the service wired to it."""
    table_name = f"credits-it-{next(_table_numbers)}"
    settings: dict[str, Any] = {
        **dynamodb_local.LOCAL_CREDENTIALS,
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_local_endpoint,
        "TABLE_NAME": table_name,
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    dynamodb_local.create_table(dynamodb_local.client_for(dynamodb_local_endpoint), table_name)
    wiring.reset()
    yield wiring.store()
    wiring.reset()
