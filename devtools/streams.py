"""Drive a stream consumer locally: read a table's DynamoDB stream (DynamoDB Local or moto)
and hand each batch to a handler in the event shape Lambda sends, honouring the handler's
partial batch response as Lambda does (resume from the first failed record).

The local stack (`devtools.local_stack`) runs `StreamPoller.run` in a thread for each stream
event source in template.yaml (the MaterializerFunction's), with that event source's
FilterCriteria, batch size and retry limit, delivering to the function through the local
Lambda runtime; tests call `drain()` to materialize synchronously."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

logger = logging.getLogger(__name__)

Deliver = Callable[[dict[str, Any]], Any]
GiveUp = Callable[[list[dict[str, Any]]], Any]
DEFAULT_BATCH_SIZE = 100


@dataclass
class _Shard:
    iterator: str | None
    retry_from: str | None = None  # sequence number of a record the handler failed
    attempts: int = 0  # failed deliveries in a row
    done: bool = False


@dataclass
class StreamPoller:
    dynamodb: Any  # a boto3 DynamoDB client
    streams: Any  # a boto3 DynamoDB Streams client on the same endpoint
    table_name: str
    deliver: Deliver
    key_prefix: str | None = "ACCOUNT#"  # the event source mapping's filter on `pk`
    batch_size: int = DEFAULT_BATCH_SIZE
    region: str = "us-east-1"
    # Lambda's FilterCriteria patterns (template.yaml): a record is delivered when it
    # matches one of them (and `key_prefix`, unless that is None).
    filters: Sequence[Mapping[str, Any]] | None = None
    starting_position: str = "TRIM_HORIZON"
    # As the event source mapping's MaximumRetryAttempts: after that many failed deliveries
    # in a row the failed records are handed to `on_give_up` (Lambda's on-failure
    # destination) and skipped. None retries forever (what `drain()` in tests wants).
    max_retry_attempts: int | None = None
    on_give_up: GiveUp | None = None
    # Records read by the last pass, delivered or filtered out: a page of the shard may hold
    # only records the filter drops, and the records after it still need reading.
    last_pass_read: int = 0
    _shards: dict[str, _Shard] = field(default_factory=dict)
    _stream_arn: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def stream_arn(self) -> str:
        if self._stream_arn is None:
            table = self.dynamodb.describe_table(TableName=self.table_name)["Table"]
            arn = table.get("LatestStreamArn")
            if not arn:
                raise RuntimeError(f"table {self.table_name} has no stream")
            self._stream_arn = str(arn)
        return self._stream_arn

    def poll(self) -> int:
        """One pass over every shard: the number of records delivered (`last_pass_read`
        says how many were read, filtered out or not)."""
        with self._lock:
            delivered = 0
            self.last_pass_read = 0
            arn = self.stream_arn()
            description = self.streams.describe_stream(StreamArn=arn)["StreamDescription"]
            for shard in description.get("Shards", []):
                shard_id = shard["ShardId"]
                state = self._shards.get(shard_id)
                if state is None:
                    iterator = self.streams.get_shard_iterator(
                        StreamArn=arn, ShardId=shard_id, ShardIteratorType=self.starting_position
                    )["ShardIterator"]
                    state = self._shards[shard_id] = _Shard(iterator)
                if not state.done:
                    delivered += self._read(arn, shard_id, state)
            return delivered

    def drain(self, max_passes: int = 1000) -> int:
        """Poll until a pass delivers nothing: everything written so far is consumed."""
        total = 0
        for _ in range(max_passes):
            total += self.poll()
            if not self.last_pass_read and not self.retrying:
                return total
        raise RuntimeError("the stream consumer keeps failing the same records")

    @property
    def retrying(self) -> bool:
        """Some shard waits to deliver records the handler failed again."""
        return any(s.retry_from for s in self._shards.values())

    def run(self, stop: threading.Event, interval: float = 0.05, retry_delay: float = 0.5) -> None:
        """Poll until `stop` is set (the local stack's background thread): again at once
        while there are records, after `interval` when there are none, after `retry_delay`
        when the handler failed some (Lambda backs off too)."""
        while not stop.is_set():
            try:
                delivered = self.poll()
            except Exception as exc:  # the stack keeps serving; the next pass retries
                if stop.is_set():
                    return  # stopping: DynamoDB Local may already be gone (Ctrl-C reaches it)
                # Handler failures come back as batch failures; this is the stream itself.
                logger.warning("stream poll failed, retrying in 1 s: %s", exc)
                stop.wait(1.0)
                continue
            if self.retrying:
                stop.wait(retry_delay)
            elif not delivered and not self.last_pass_read:
                stop.wait(interval)

    def _read(self, arn: str, shard_id: str, state: _Shard) -> int:
        if state.retry_from is not None:
            state.iterator = self.streams.get_shard_iterator(
                StreamArn=arn,
                ShardId=shard_id,
                ShardIteratorType="AT_SEQUENCE_NUMBER",
                SequenceNumber=state.retry_from,
            )["ShardIterator"]
            state.retry_from = None
        if state.iterator is None:
            state.done = True
            return 0
        response = self.streams.get_records(ShardIterator=state.iterator, Limit=self.batch_size)
        records = [self._lambda_record(arn, r) for r in response.get("Records", [])]
        self.last_pass_read += len(records)
        next_iterator = response.get("NextShardIterator")
        wanted = [r for r in records if self._matches(r)]
        if wanted:
            failed = _failures(self.deliver({"Records": wanted}))
            if failed:
                first = min(failed, key=int)
                state.attempts += 1
                if self.max_retry_attempts is not None and state.attempts > self.max_retry_attempts:
                    self._give_up(shard_id, [r for r in wanted if _position(r) >= int(first)])
                    state.attempts = 0
                else:
                    state.retry_from = first
            else:
                state.attempts = 0
        state.iterator = next_iterator
        return len(wanted)

    def _give_up(self, shard_id: str, records: list[dict[str, Any]]) -> None:
        logger.error(
            "stream records given up after %s retries (shard %s, positions %s..%s): on AWS "
            "they go to the on-failure destination; reconcile the accounts to fill the gap",
            self.max_retry_attempts,
            shard_id,
            records[0]["dynamodb"].get("SequenceNumber") if records else "?",
            records[-1]["dynamodb"].get("SequenceNumber") if records else "?",
        )
        if self.on_give_up is not None:
            self.on_give_up(records)

    def _matches(self, record: Mapping[str, Any]) -> bool:
        if self.key_prefix is not None:
            pk = record["dynamodb"].get("Keys", {}).get("pk", {}).get("S", "")
            if not str(pk).startswith(self.key_prefix):
                return False
        if self.filters is None:
            return True
        return any(matches_pattern(pattern, record) for pattern in self.filters)

    def _lambda_record(self, arn: str, record: Mapping[str, Any]) -> dict[str, Any]:
        stream_record = dict(record["dynamodb"])
        created = stream_record.get("ApproximateCreationDateTime")
        if isinstance(created, datetime):
            stream_record["ApproximateCreationDateTime"] = created.timestamp()
        return {
            "eventID": record.get("eventID"),
            "eventName": record.get("eventName"),
            "eventVersion": record.get("eventVersion", "1.1"),
            "eventSource": "aws:dynamodb",
            "awsRegion": record.get("awsRegion", self.region),
            "dynamodb": stream_record,
            "eventSourceARN": arn,
        }


def _position(record: Mapping[str, Any]) -> int:
    return int(record["dynamodb"].get("SequenceNumber", 0))


def matches_pattern(pattern: Mapping[str, Any], document: Mapping[str, Any]) -> bool:
    """Lambda event filtering (the EventBridge pattern syntax) on one record: every key of
    the pattern must match; a list matches when one of its items does (a literal, or
    `{"prefix"}`, `{"suffix"}`, `{"exists"}`, `{"anything-but"}`). Other operators raise,
    so a filter the local stack cannot honour fails loudly instead of passing everything."""
    for name, expected in pattern.items():
        present = isinstance(document, Mapping) and name in document
        value = document.get(name) if present else None
        if isinstance(expected, Mapping):
            if (
                not present
                or not isinstance(value, Mapping)
                or not matches_pattern(expected, value)
            ):
                return False
        elif isinstance(expected, list):
            if not any(_matches_value(item, present, value) for item in expected):
                return False
        else:
            raise ValueError(f"a filter pattern's leaves are lists, got {expected!r}")
    return True


def _matches_value(item: Any, present: bool, value: Any) -> bool:
    if not isinstance(item, Mapping):
        return present and value == item
    if set(item) == {"exists"}:
        return present is bool(item["exists"])
    if not present:
        return False
    if set(item) == {"prefix"}:
        return isinstance(value, str) and value.startswith(str(item["prefix"]))
    if set(item) == {"suffix"}:
        return isinstance(value, str) and value.endswith(str(item["suffix"]))
    if set(item) == {"anything-but"}:
        excluded = item["anything-but"]
        return value not in (excluded if isinstance(excluded, list) else [excluded])
    raise ValueError(f"filter operator {item!r} is not supported by the local stream poller")


def _failures(response: Any) -> list[str]:
    if not isinstance(response, Mapping):
        return []
    return [str(item["itemIdentifier"]) for item in response.get("batchItemFailures", [])]


def streams_client_for(dynamodb: Any) -> Any:
    """A DynamoDB Streams client beside `dynamodb`: the same endpoint for DynamoDB Local,
    the regional streams endpoint otherwise (moto routes Streams calls by that host)."""
    import boto3  # noqa: PLC0415 - only the tools that poll need it

    endpoint = str(dynamodb.meta.endpoint_url)
    if endpoint.startswith("https://dynamodb."):
        endpoint = endpoint.replace("https://dynamodb.", "https://streams.dynamodb.", 1)
    return boto3.client(
        "dynamodbstreams", endpoint_url=endpoint, region_name=dynamodb.meta.region_name
    )


def materializer_poller(dynamodb: Any, table_name: str) -> StreamPoller:
    """A poller feeding the library's materializer, as the Materializer function does."""
    from serverless_credits import wiring  # noqa: PLC0415 - after the layer is importable
    from serverless_credits.transport import streams  # noqa: PLC0415

    return StreamPoller(
        dynamodb,
        streams_client_for(dynamodb),
        table_name,
        lambda event: streams.handle(event, wiring.materializer()),
    )
