"""Materialization lag: the time from a debit's return to its ledger entry being readable.

A StreamPoller runs in a background thread, as the local stack runs it (it sleeps
`POLL_INTERVAL` after a pass that found nothing; Lambda's event source mapping polls each
shard about 4 times a second, so AWS adds up to ~250 ms at idle). Workers debit one account
back to back; an observer thread queries the account's ledger partition for entries past
the last one it saw (strongly consistent, a few ms per Query) and notes when each sequence
first became readable. lag = first readable - the debit's return. The observer polls until
every debit's entry is readable or a deadline passes (the missing ones are reported).
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from typing import Any

from bench.env import POLL_INTERVAL, Environment, run_together, say, unique
from bench.stats import latency
from serverless_credits.domain.commands import DebitCommand
from serverless_credits.domain.operations import sequence_of
from serverless_credits.ledger.operations import Ledger
from serverless_credits.storage import keys
from serverless_credits.storage.items import values

DEADLINE_SECONDS = 30.0
OBSERVER_PAUSE = 0.002


class Observer:
    """Notes the moment each ledger sequence of one account first becomes readable."""

    def __init__(self, env: Environment, account_id: str) -> None:
        self._client = env.store().client
        self._table = env.table
        self._account_id = account_id
        self.seen: dict[int, float] = {}
        self.queries = 0
        self._last = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-observer", daemon=True)

    def __enter__(self) -> Observer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            time.sleep(OBSERVER_PAUSE)

    def poll(self) -> None:
        response = self._client.query(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND sk > :after",
            ExpressionAttributeValues=values(
                pk=keys.ledger_pk(self._account_id), after=keys.entry_sk(self._last)
            ),
            ProjectionExpression="sk",
            ConsistentRead=True,
        )
        now = time.perf_counter()
        self.queries += 1
        for item in response.get("Items", []):
            sequence = keys.sequence_of_sk(item["sk"]["S"])
            self.seen.setdefault(sequence, now)
            self._last = max(self._last, sequence)

    def wait_for(self, sequences: list[int], deadline: float) -> list[int]:
        """Sequences still unreadable when everything was seen or the deadline passed."""
        while time.perf_counter() < deadline:
            missing = [s for s in sequences if s not in self.seen]
            if not missing:
                return []
            time.sleep(0.01)
        return [s for s in sequences if s not in self.seen]


def measure(env: Environment, workers: int, debits: int) -> dict[str, Any]:
    account_id = unique(f"lag{workers}")
    env.create_account(env.ledger(env.store()), account_id, debits * 2)
    env.drain()  # the background poller starts from a caught-up stream
    ledgers = [env.ledger(env.store()) for _ in range(workers)]
    returned: dict[int, float] = {}
    lock = threading.Lock()
    failures: list[str] = []

    def work(ledger: Ledger, index: int) -> None:
        command = DebitCommand(
            account_id=account_id,
            idempotency_key=f"lag-{index}",
            amount=Decimal(1),
            endpoint="/v1/echo",
        )
        try:
            result = ledger.debit(command)
        except Exception as exc:  # reported
            with lock:
                failures.append(type(exc).__name__)
            return
        now = time.perf_counter()
        sequence = sequence_of(result.transaction_id)
        with lock:
            if sequence is None:
                failures.append(f"unparsable {result.transaction_id}")
            else:
                returned[sequence] = now

    with env.materializing(), Observer(env, account_id) as observer:
        elapsed = run_together(ledgers, range(debits), work)
        missing = observer.wait_for(sorted(returned), time.perf_counter() + DEADLINE_SECONDS)
    lags = [observer.seen[s] - t for s, t in returned.items() if s in observer.seen]
    early = sum(1 for lag in lags if lag < 0)  # seen by the observer before the call returned
    result: dict[str, Any] = {
        "workers": workers,
        "debits": debits,
        "measured": len(lags),
        "debits_per_second": round(len(returned) / elapsed, 1) if elapsed else None,
        "lag": latency([max(0.0, lag) for lag in lags]),
        "readable_before_return": early,
        "missing_after_deadline": len(missing),
        "failures": failures[:10],
        "observer_queries": observer.queries,
        "poll_interval_ms": POLL_INTERVAL * 1000,
        "deadline_s": DEADLINE_SECONDS,
    }
    say(
        f"  {workers:>2} worker(s): lag p50 {result['lag'].get('p50_ms')} ms, p99 "
        f"{result['lag'].get('p99_ms')} ms over {len(lags)} debits "
        f"({result['debits_per_second']} debits/s), {len(missing)} missing"
    )
    return result


def lag(env: Environment, workers: tuple[int, ...], debits: int) -> dict[str, Any]:
    return {"runs": [measure(env, n, debits) for n in workers]}
