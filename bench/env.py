"""The benchmark's world: DynamoDB Local tables, function environments, handlers, accounts."""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from devtools import dynamodb_local, template
from devtools.streams import StreamPoller, streams_client_for
from serverless_credits import wiring
from serverless_credits.config import Settings
from serverless_credits.domain.commands import CreateAccountCommand
from serverless_credits.domain.models import Account, ApiKeyMapping, utc_now
from serverless_credits.domain.outcomes import LedgerHead
from serverless_credits.ledger.materializer import Materializer
from serverless_credits.ledger.operations import Ledger
from serverless_credits.ledger.prices import PriceCatalog
from serverless_credits.storage import keys
from serverless_credits.storage.items import from_item
from serverless_credits.storage.store import CreditsStore
from serverless_credits.transport import streams

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
Worker = TypeVar("Worker")
Task = TypeVar("Task")

# Local stand-ins for what Lambda and Secrets Manager provide in AWS.
CURSOR_SIGNING_KEY = "bench-cursor-signing-key-0123456789abcdef"
TRACING_OFF = {"POWERTOOLS_TRACE_DISABLED": "true"}
# How long the background poller sleeps after a pass that found nothing (StreamPoller.run's
# default, which the local stack uses). Lambda's event source mapping polls each shard
# about 4 times a second.
POLL_INTERVAL = 0.05
STREAM_PAGE = 500


def say(message: str) -> None:
    """Progress on the real stdout (Powertools' log and metric lines go to /dev/null)."""
    stream = sys.__stdout__ or sys.stderr
    stream.write(message + "\n")
    stream.flush()


class Parts:
    """The timed parts of a section: `with parts("name", "title"):` says the title and
    records the part's seconds in `parts.seconds`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str, title: str) -> Iterator[None]:
        say(f"  {title}")
        started = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - started, 2)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Send what handlers print (EMF metrics, JSON logs) to /dev/null, as Lambda ships it
    off to CloudWatch: serialising it is part of a handler's cost, reading it is not ours."""
    with contextlib.redirect_stdout(_devnull()):
        yield


@functools.cache
def _devnull() -> TextIO:
    """One sink for the whole process (opening it per call would be timed as overhead)."""
    return open(os.devnull, "w", encoding="utf-8")  # lives as long as the process


@dataclass
class Environment:
    endpoint: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    table: str = ""
    mirror: str = ""

    def __post_init__(self) -> None:
        self.table = self.table or f"credits-bench-{self.run_id}"
        self.mirror = self.mirror or f"credits-bench-mirror-{self.run_id}"
        self.admin: DynamoDBClient = dynamodb_local.client_for(self.endpoint)
        self.specs = template.functions({"CreditsTable": self.table})
        for name in (self.table, self.mirror):
            dynamodb_local.create_table(self.admin, name)
        self.local_env = {
            **dynamodb_local.LOCAL_CREDENTIALS,
            "AWS_ENDPOINT_URL_DYNAMODB": self.endpoint,
            "TABLE_NAME": self.table,
        }
        self.settings = Settings.model_validate({**self.function_env("DebitFunction")})
        # The Materializer function's work, on its own client (as its own Lambda would be):
        # the stream read from TRIM_HORIZON in Lambda's event shape, through the same
        # transport and use case as functions/materializer/app.py.
        self.materializer_store = self.store()
        self.materializer = Materializer(
            self.materializer_store.idempotency,
            self.materializer_store.entries,
            self.materializer_store.usage,
            self.settings,
            holds=self.materializer_store.holds,
            lots=self.materializer_store.lots,
        )
        self.poller = StreamPoller(
            self.materializer_store.client,
            streams_client_for(self.materializer_store.client),
            self.table,
            lambda event: streams.handle(event, self.materializer),
            # Every record is handed over and the transport skips non-account items, as the
            # event source's filter would: with the poller's own filter, a page holding only
            # other items (a materialized batch writes 2 per version) counts as "nothing
            # read", so drain() stops early and run() sleeps with records still unread.
            key_prefix=None,
            # Lambda filters before it batches (BatchSize 100 account changes); the poller
            # batches per GetRecords page, and a debit leaves ~5 records in the stream
            # (lease, account, completion, entry, finalize): 500 records ~ 100 changes.
            batch_size=STREAM_PAGE,
        )

    # ------------------------------------------------------------ the stream
    def drain(self) -> int:
        """Materialize everything written so far (synchronously): stream records read."""
        # A pass reads one page per shard: after a seeded ledger of 100,000 entries the
        # backlog takes more passes than StreamPoller's default bound.
        return self.poller.drain(max_passes=10_000)

    @contextlib.contextmanager
    def materializing(self, interval: float = POLL_INTERVAL) -> Iterator[None]:
        """A StreamPoller running in a background thread, as the local stack runs it."""
        stop = threading.Event()
        thread = threading.Thread(
            target=self.poller.run, args=(stop, interval), name="bench-stream", daemon=True
        )
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=30)

    # ------------------------------------------------------------ functions
    def function_env(self, logical_id: str) -> dict[str, str]:
        """The function's environment from template.yaml, pointed at DynamoDB Local."""
        environment = dict(self.specs[logical_id].environment)
        if "CURSOR_SIGNING_KEY" in environment:  # no Secrets Manager here: a local key
            environment["CURSOR_SIGNING_KEY"] = CURSOR_SIGNING_KEY
            environment["CURSOR_SIGNING_SECRET_ARN"] = ""
        return {**environment, **self.local_env, **TRACING_OFF}

    @contextlib.contextmanager
    def in_function(self, logical_id: str) -> Iterator[None]:
        """The process looks like the function's execution environment (fresh caches)."""
        values = self.function_env(logical_id)
        saved = {name: os.environ.get(name) for name in values}
        os.environ.update(values)
        wiring.reset()
        try:
            yield
        finally:
            wiring.reset()
            for name, previous in saved.items():
                if previous is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = previous

    def has_function_code(self, logical_id: str) -> bool:
        spec = self.specs[logical_id]
        module_file = spec.handler.rsplit(".", 1)[0] + ".py"
        return (spec.code_dir / module_file).is_file()

    def handler(self, logical_id: str) -> Handler:
        """Import the function's handler as Lambda would (`functions.<dir>.<module>`)."""
        spec = self.specs[logical_id]
        module_name, attribute = spec.handler.rsplit(".", 1)
        with quiet():
            module = importlib.import_module(f"functions.{spec.code_dir.name}.{module_name}")
        found: Handler = getattr(module, attribute)
        return found

    # ------------------------------------------------------------ data
    def store(self, table: str | None = None) -> CreditsStore:
        """A store on its own client, configured as the functions' (CreditsStore.connect)."""
        saved = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
        os.environ.update(self.local_env)
        try:
            return CreditsStore.connect(table or self.table)
        finally:
            if saved is None:
                os.environ.pop("AWS_ENDPOINT_URL_DYNAMODB", None)

    def ledger(self, store: CreditsStore) -> Ledger:
        """A ledger as one function instance holds it (its own account cache)."""
        return wiring.build_ledger(
            store, PriceCatalog(store.catalog, self.settings.cache_seconds), self.settings
        )

    def create_account(
        self, ledger: Ledger, account_id: str, balance: Decimal | int, *, mirror: bool = False
    ) -> Account:
        account = ledger.create_account(
            CreateAccountCommand(account_id=account_id, opening_balance=Decimal(balance))
        )
        if mirror:
            self.copy_to_mirror(keys.account_pk(account_id), keys.ACCOUNT_SK)
        return account

    def balance(self, account_id: str) -> Decimal:
        """The account's balance, read consistently on the admin client."""
        item = self.admin.get_item(
            TableName=self.table, Key=account_key(account_id), ConsistentRead=True
        )["Item"]
        return Decimal(str(from_item(item)["balance"]))

    def ledger_rows(self, account_id: str) -> list[tuple[int, Decimal, Decimal]]:
        """(sequence, amount, balanceAfter) of every materialized entry, oldest first."""
        return [
            (sequence, Decimal(str(amount)), Decimal(str(after)))
            for sequence, amount, after in self.materializer_store.entries.sequences(account_id)
        ]

    def head(self, account_id: str) -> LedgerHead:
        return self.materializer_store.entries.head(account_id)

    def version(self, account_id: str) -> int:
        item = self.admin.get_item(
            TableName=self.table, Key=account_key(account_id), ConsistentRead=True
        )["Item"]
        return int(from_item(item)["version"])

    def copy_to_mirror(self, pk: str, sk: str) -> None:
        key = {"pk": {"S": pk}, "sk": {"S": sk}}
        item = self.admin.get_item(TableName=self.table, Key=key, ConsistentRead=True)["Item"]
        self.admin.put_item(TableName=self.mirror, Item=item)

    def map_api_key(self, store: CreditsStore, api_key_id: str, account_id: str) -> None:
        store.catalog.put_api_key_mapping(
            ApiKeyMapping(
                api_key_id=api_key_id, account_id=account_id, plan="free", created_at=utc_now()
            )
        )


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def account_key(account_id: str) -> dict[str, Any]:
    """The account item's key in the low-level client's attribute-value format."""
    return {"pk": {"S": keys.account_pk(account_id)}, "sk": {"S": keys.ACCOUNT_SK}}


def run_together(
    workers: Sequence[Worker], tasks: Iterable[Task], work: Callable[[Worker, Task], None]
) -> float:
    """One thread per worker, all released at once, each taking the next task (never None)
    and running `work(worker, task)` until none remain; the seconds from the release until
    the last worker finished. `work` runs concurrently: it guards what it shares."""
    remaining = iter(tasks)
    lock = threading.Lock()
    barrier = threading.Barrier(len(workers) + 1)

    def run(worker: Worker) -> None:
        barrier.wait()
        while True:
            with lock:
                task = next(remaining, None)
            if task is None:
                return
            work(worker, task)

    threads = [threading.Thread(target=run, args=(w,), daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started
