"""Drive a stream consumer locally: read a table's DynamoDB stream (DynamoDB Local or moto)
and hand each batch to a handler in the event shape Lambda sends, honouring the handler's
partial batch response as Lambda does (resume from the first failed record).

The local stack runs `StreamPoller.run` in a thread on the Materializer function's filter;
tests call `drain()` to materialize synchronously."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

logger = logging.getLogger(__name__)

Deliver = Callable[[dict[str, Any]], Any]
DEFAULT_BATCH_SIZE = 100


@dataclass
class _Shard:
    iterator: str | None
    retry_from: str | None = None  # sequence number of a record the handler failed
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
        """One pass over every shard: the number of records delivered."""
        with self._lock:
            delivered = 0
            arn = self.stream_arn()
            description = self.streams.describe_stream(StreamArn=arn)["StreamDescription"]
            for shard in description.get("Shards", []):
                shard_id = shard["ShardId"]
                state = self._shards.get(shard_id)
                if state is None:
                    iterator = self.streams.get_shard_iterator(
                        StreamArn=arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                    )["ShardIterator"]
                    state = self._shards[shard_id] = _Shard(iterator)
                if not state.done:
                    delivered += self._read(arn, shard_id, state)
            return delivered

    def drain(self, max_passes: int = 1000) -> int:
        """Poll until a pass delivers nothing: everything written so far is consumed."""
        total = 0
        for _ in range(max_passes):
            delivered = self.poll()
            total += delivered
            if not delivered and not any(s.retry_from for s in self._shards.values()):
                return total
        raise RuntimeError("the stream consumer keeps failing the same records")

    def run(self, stop: threading.Event, interval: float = 0.05) -> None:
        """Poll until `stop` is set (the local stack's background thread)."""
        while not stop.is_set():
            try:
                if not self.poll():
                    stop.wait(interval)
            except Exception:  # the stack keeps serving; the next pass retries
                logger.exception("stream poll failed")
                stop.wait(1.0)

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
        next_iterator = response.get("NextShardIterator")
        wanted = [r for r in records if self._matches(r)]
        if wanted:
            failed = _failures(self.deliver({"Records": wanted}))
            if failed:
                state.retry_from = min(failed, key=int)
        state.iterator = next_iterator
        return len(wanted)

    def _matches(self, record: Mapping[str, Any]) -> bool:
        if self.key_prefix is None:
            return True
        pk = record["dynamodb"].get("Keys", {}).get("pk", {}).get("S", "")
        return str(pk).startswith(self.key_prefix)

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
