"""Materialization lag: the time from a debit's return to its ledger entry being readable.

The headline runs the Materializer in its OWN PROCESS, as AWS runs it in its own Lambda
containers: a `spawn`ed child builds `devtools.streams.materializer_poller` on the
MaterializerFunction's environment (template.yaml) against the same DynamoDB Local table
and runs `StreamPoller.run` (it sleeps `POLL_INTERVAL` after a pass that found nothing;
Lambda's event source mapping polls each shard about 4 times a second, so AWS adds up to
~250 ms at idle). The child starts reading at the stream's LATEST position once the
benchmark has drained what came before (shards it discovers later are read from their
start), and one unmeasured debit warms it up.

The writers run in the benchmark process: each worker (a thread with its own client and
ledger, like one Lambda instance) debits one account, then polls its entry
LEDGER#<id>/SEQ#<n> by strongly consistent GetItem (the transaction id gives n) every
`ENTRY_POLL_PAUSE` until it is readable or `DEADLINE_SECONDS` pass, then debits again.
lag = readable - returned. A second, labelled figure runs the poller in a thread of the
benchmark process (as `devtools.local_stack` does): it shares the GIL with the writers, so
it measures the local tool more than the design.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from bench.env import POLL_INTERVAL, STREAM_PAGE, Environment, run_together, say, unique
from bench.stats import latency
from serverless_credits.domain.commands import DebitCommand
from serverless_credits.domain.operations import sequence_of
from serverless_credits.ledger.operations import Ledger
from serverless_credits.storage import keys

if TYPE_CHECKING:
    from multiprocessing.synchronize import Event as ProcessEvent

    from mypy_boto3_dynamodb.client import DynamoDBClient

Poller = Literal["own_process", "thread"]

DEADLINE_SECONDS = 10.0  # per entry, from its debit's return
ENTRY_POLL_PAUSE = 0.005  # between the observer's reads of the pending entries
OBSERVER_WINDOW = 16  # the lowest pending entries read at a time
START_SECONDS = 60.0  # for the child to import, connect and open its shard iterators
STOP_SECONDS = 10.0  # for the child to finish its pass before it is terminated
MATERIALIZER = "MaterializerFunction"


# ------------------------------------------------------------ the child process
def _poller_main(
    environment: dict[str, str],
    table: str,
    interval: float,
    *,
    stop: ProcessEvent,
    ready: ProcessEvent,
    parent: int,
) -> None:
    """The Materializer's own process: poll the table's stream until `stop` is set or the
    benchmark process is gone."""
    sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - the process's life
    os.environ.update(environment)
    from devtools.streams import materializer_poller  # noqa: PLC0415 - in the child
    from serverless_credits import wiring  # noqa: PLC0415

    poller = materializer_poller(wiring.store().client, table)
    # As the benchmark's own poller (bench/env.py): the transport skips non-account items as
    # the event source's filter would, and one GetRecords page holds ~100 account changes.
    poller.key_prefix = None
    poller.batch_size = STREAM_PAGE
    poller.starting_position = "LATEST"
    poller.poll()  # an iterator at the end of every shard open now
    poller.starting_position = "TRIM_HORIZON"  # shards opened later are read from the start
    ready.set()
    stopping = threading.Event()

    def watch() -> None:
        while not stop.wait(0.5):
            if os.getppid() != parent:
                break
        stopping.set()

    threading.Thread(target=watch, name="bench-stop", daemon=True).start()
    poller.run(stopping, interval)


@contextlib.contextmanager
def poller_process(env: Environment, interval: float = POLL_INTERVAL) -> Iterator[None]:
    """The Materializer's stream poller in its own process (`spawn`), stopped on exit:
    asked first, then terminated, then killed."""
    context = multiprocessing.get_context("spawn")
    stop, ready = context.Event(), context.Event()
    process = context.Process(
        target=_poller_main,
        args=(env.function_env(MATERIALIZER), env.table, interval),
        kwargs={"stop": stop, "ready": ready, "parent": os.getpid()},
        name="bench-materializer",
        daemon=True,
    )
    process.start()
    try:
        started = time.perf_counter()
        while not ready.wait(0.1):
            if not process.is_alive():
                raise RuntimeError(f"the poller process exited with {process.exitcode}")
            if time.perf_counter() - started > START_SECONDS:
                raise RuntimeError(f"the poller process was not ready in {START_SECONDS:g} s")
        yield
    finally:
        stop.set()
        process.join(STOP_SECONDS)
        if process.is_alive():
            process.terminate()
            process.join(STOP_SECONDS)
        if process.is_alive():
            process.kill()
            process.join(STOP_SECONDS)
        process.close()


# ------------------------------------------------------------ writers and observer
class Observer:
    """Notes when each debit's entry LEDGER#<account>/SEQ#<n> is first readable: one thread
    reads the `OBSERVER_WINDOW` lowest pending entries with one strongly consistent
    BatchGetItem, again at once when it found some, else after `ENTRY_POLL_PAUSE`. The
    materializer writes an account's entries in sequence order, so the lowest pending ones
    appear first; the observer's load on DynamoDB Local does not grow with the writers or
    the backlog (a GetItem loop per writer, or a read of every pending entry, did, and
    slowed the poller being measured)."""

    def __init__(self, env: Environment, account_id: str) -> None:
        self._client: DynamoDBClient = env.store().client
        self._table = env.table
        self._account_id = account_id
        self._pending: dict[int, float] = {}  # sequence -> perf_counter() at the return
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-observer", daemon=True)
        self.lags: list[float] = []
        self.missing: list[int] = []
        self.requests = 0
        self.first_returned: float | None = None
        self.last_readable: float | None = None

    def returned(self, sequence: int, at: float) -> None:
        with self._lock:
            self._pending[sequence] = at
            self.first_returned = min(at, self.first_returned or at)

    def __enter__(self) -> Observer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=DEADLINE_SECONDS + 10)

    def settle(self) -> None:
        """Wait until every entry was read or missed its deadline."""
        while self._thread.is_alive():
            with self._lock:
                if not self._pending:
                    return
            time.sleep(0.01)

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.poll():
                time.sleep(ENTRY_POLL_PAUSE)

    def poll(self) -> int:
        """Entries found readable by one read."""
        with self._lock:
            sequences = sorted(self._pending)[:OBSERVER_WINDOW]
        if not sequences:
            return 0
        pk = keys.ledger_pk(self._account_id)
        response = self._client.batch_get_item(
            RequestItems={
                self._table: {
                    "Keys": [{"pk": {"S": pk}, "sk": {"S": keys.entry_sk(s)}} for s in sequences],
                    "ConsistentRead": True,
                    "ProjectionExpression": "sk",
                }
            }
        )
        now = time.perf_counter()
        self.requests += 1
        found = {
            keys.sequence_of_sk(item["sk"]["S"])
            for item in response.get("Responses", {}).get(self._table, [])
        }
        with self._lock:
            for sequence in sequences:
                at = self._pending[sequence]
                if sequence in found:
                    self.lags.append(now - at)
                    self.last_readable = now
                elif now - at > DEADLINE_SECONDS:
                    self.missing.append(sequence)
                else:
                    continue
                del self._pending[sequence]
        return len(found)


def _debit(ledger: Ledger, account_id: str, key: str) -> int:
    result = ledger.debit(
        DebitCommand(
            account_id=account_id, idempotency_key=key, amount=Decimal(1), endpoint="/v1/echo"
        )
    )
    sequence = sequence_of(result.transaction_id)
    if sequence is None:
        raise ValueError(f"unparsable transaction id {result.transaction_id}")
    return sequence


def measure(env: Environment, workers: int, debits: int, poller: Poller) -> dict[str, Any]:
    account_id = unique(f"lag{workers}")
    env.create_account(env.ledger(env.store()), account_id, debits * 2)
    env.drain()  # the poller starts from a caught-up stream
    ledgers = [env.ledger(env.store()) for _ in range(workers)]
    failures: list[str] = []
    lock = threading.Lock()
    running = poller_process(env) if poller == "own_process" else env.materializing()
    with running:
        # Unmeasured: the poller's first batch pays its imports and connections.
        with Observer(env, account_id) as warm_up:
            warm_up.returned(_debit(ledgers[0], account_id, "warm"), time.perf_counter())
            warm_up.settle()
        if not warm_up.lags:
            raise RuntimeError("the warm-up debit's entry never became readable")
        with Observer(env, account_id) as observer:

            def work(ledger: Ledger, index: int) -> None:
                try:
                    sequence = _debit(ledger, account_id, f"lag-{index}")
                except Exception as exc:  # reported
                    with lock:
                        failures.append(f"{type(exc).__name__}: {exc}")
                    return
                observer.returned(sequence, time.perf_counter())

            elapsed = run_together(ledgers, range(debits), work)
            observer.settle()
    lags, missing = observer.lags, observer.missing
    result: dict[str, Any] = {
        "workers": workers,
        "poller": poller,
        "debits": debits,
        "measured": len(lags),
        "debits_per_second": round((len(lags) + len(missing)) / elapsed, 1) if elapsed else None,
        "lag": latency(lags),
        # Entries readable per second from the first debit's return to the last entry read:
        # below debits_per_second, the poller fell behind and the lag grew through the run.
        "materialized_per_second": _rate(len(lags), observer),
        "missing_after_deadline": len(missing),
        "failures": failures[:10],
        "observer_requests": observer.requests,
        "poll_interval_ms": POLL_INTERVAL * 1000,
        "entry_poll_pause_ms": ENTRY_POLL_PAUSE * 1000,
        "deadline_s": DEADLINE_SECONDS,
    }
    where = "own process" if poller == "own_process" else "thread (GIL shared)"
    say(
        f"  poller in {where}, {workers:>2} worker(s): lag p50 {result['lag'].get('p50_ms')} "
        f"ms, p99 {result['lag'].get('p99_ms')} ms over {len(lags)} debits "
        f"({result['debits_per_second']} debits/s, {result['materialized_per_second']} "
        f"materialized/s), {len(missing)} missing"
    )
    return result


def _rate(count: int, observer: Observer) -> float | None:
    if observer.first_returned is None or observer.last_readable is None:
        return None
    span = observer.last_readable - observer.first_returned
    return round(count / span, 1) if span > 0 else None


def lag(env: Environment, workers: tuple[int, ...], debits: int) -> dict[str, Any]:
    """`runs`: the poller in its own process (the headline); `in_thread`: in a thread of
    this process, at the highest worker count only (for comparison)."""
    return {
        "runs": [measure(env, n, debits, "own_process") for n in workers],
        "in_thread": [measure(env, max(workers), debits, "thread")],
    }
