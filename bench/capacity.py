"""DynamoDB requests and capacity units of an operation, counted on the client itself.

`Probe` registers handlers on a boto3 client's event system: every API call the code under
test makes is recorded with its HTTP attempts, the items it returned and the capacity it
costs. Capacity is computed from item sizes by AWS's published rules, because DynamoDB
Local's own `ConsumedCapacity` undercounts transactions (it reports 2.0 for a two-item
transaction that AWS bills 4); Local's figure is kept alongside for comparison.

AWS's rules (developer guide, "DynamoDB item sizes and formats" and "read/write capacity"):
- item size = sum over attributes of (UTF-8 length of the name + size of the value); a string is
  its UTF-8 length, a number about 1 byte per two significant digits + 1, binary its raw
  length, null/boolean 1 byte, a list or map 3 bytes + 1 byte per element + its elements;
- a write costs 1 unit per started KB (the larger of the item before and after), a read 1 unit
  per started 4 KB (a Query sums the sizes of the items it reads before rounding);
- eventually consistent reads cost half; transactional reads and writes cost double.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096
PARTITION_WRITE_UNITS_PER_SECOND = 1000

_CAPACITY_OPERATIONS = frozenset(
    {
        "GetItem",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "Query",
        "Scan",
        "BatchGetItem",
        "BatchWriteItem",
        "TransactWriteItems",
        "TransactGetItems",
    }
)


# ---------------------------------------------------------------- item sizes
def number_size(text: str) -> int:
    """Bytes of a DynamoDB number: 1 per two significant digits, +1 (+1 when negative)."""
    value = Decimal(text)
    digits = value.normalize().as_tuple().digits if value != 0 else ()
    significant = len(digits)
    return math.ceil(significant / 2) + 1 + (1 if value < 0 else 0)


def value_size(value: Mapping[str, Any]) -> int:  # noqa: PLR0911 - one return per type
    (kind, data), *_ = value.items()
    if kind == "S":
        return len(str(data).encode())
    if kind == "N":
        return number_size(str(data))
    if kind == "B":
        return len(data)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(v).encode()) for v in data)
    if kind == "NS":
        return sum(number_size(str(v)) for v in data)
    if kind == "BS":
        return sum(len(v) for v in data)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in data)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in data.items())
    raise ValueError(f"unknown attribute type {kind!r}")


def item_size(item: Mapping[str, Mapping[str, Any]] | None) -> int:
    """The size AWS bills for an item in wire format (`{"name": {"S": "..."}}`)."""
    if not item:
        return 0
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def write_units(size: int, *, transactional: bool = False) -> float:
    units = max(1, math.ceil(size / WRITE_UNIT_BYTES))
    return float(units * (2 if transactional else 1))


def read_units(size: int, *, consistent: bool, transactional: bool = False) -> float:
    units = max(1, math.ceil(size / READ_UNIT_BYTES))
    if transactional:
        return float(units * 2)
    return float(units) if consistent else units / 2


# ---------------------------------------------------------------- recorded calls
@dataclass
class Call:
    """One API call: what it cost by AWS's rules and what DynamoDB Local reported."""

    operation: str
    seconds: float = 0.0
    http_attempts: int = 0
    error: str | None = None
    items_returned: int = 0
    items_scanned: int = 0
    consistent: bool = False
    read_bytes: int = 0
    read_units: float = 0.0
    write_units: float = 0.0
    # write units per partition key written (a debit must put only 2 on ACCOUNT#<id>)
    write_units_by_pk: dict[str, float] = field(default_factory=dict)
    write_items: list[dict[str, Any]] = field(default_factory=list)
    local_reported_units: float | None = None


@dataclass
class Tally:
    calls: list[Call] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.calls)

    def summary(self) -> dict[str, Any]:
        by_operation: dict[str, int] = defaultdict(int)
        by_pk_prefix: dict[str, float] = defaultdict(float)
        for call in self.calls:
            by_operation[call.operation] += 1
            for pk, units in call.write_units_by_pk.items():
                by_pk_prefix[pk.split("#", 1)[0]] += units
        reported = [
            c.local_reported_units for c in self.calls if c.local_reported_units is not None
        ]
        return {
            "requests": self.requests,
            "http_attempts": sum(c.http_attempts for c in self.calls),
            "by_operation": dict(by_operation),
            "errors": [c.error for c in self.calls if c.error],
            "items_returned": sum(c.items_returned for c in self.calls),
            "items_scanned": sum(c.items_scanned for c in self.calls),
            "read_bytes": sum(c.read_bytes for c in self.calls),
            "read_units": sum(c.read_units for c in self.calls),
            "write_units": sum(c.write_units for c in self.calls),
            "write_units_by_pk_prefix": dict(by_pk_prefix),
            "local_reported_units": sum(reported) if reported else None,
            "calls": [asdict(c) for c in self.calls],
        }


class Probe:
    """Records every DynamoDB call made through `client` while `recording()` is active.

    With `capacity=True` it also asks DynamoDB Local for `ConsumedCapacity` and reads the
    before/after image of each written item through `side_client` (a client without hooks,
    so those reads are not counted) to price writes by the larger image, as AWS does.
    Capture mode keeps a deep copy of each call's parameters for replaying it bare.
    By default only the thread that called `recording()` is recorded; `every_thread=True`
    records every thread's calls on the client (the Materializer writes a batch's entries
    in a thread pool, the Expirer's sweep expires holds in one).
    """

    def __init__(
        self,
        client: DynamoDBClient,
        *,
        side_client: DynamoDBClient | None = None,
        capacity: bool = False,
        capture: bool = False,
        every_thread: bool = False,
    ) -> None:
        self.client = client
        self.side_client = side_client
        self.capacity = capacity and side_client is not None
        self.capture = capture
        self.every_thread = every_thread
        self._everywhere = False
        self.tally = Tally()
        self.captured: list[tuple[str, dict[str, Any]]] = []
        self._active = threading.local()
        self._registered = False

    # ------------------------------------------------------------ lifecycle
    def _register(self) -> None:
        events = self.client.meta.events
        events.register(
            "provide-client-params.dynamodb",
            cast("Callable[..., None]", self._on_params),  # returns replacement params
            unique_id=self._id("p"),
        )
        events.register("before-send.dynamodb", self._on_send, unique_id=self._id("s"))
        events.register("after-call.dynamodb", self._on_after, unique_id=self._id("a"))
        self._registered = True

    def _id(self, suffix: str) -> str:
        return f"bench-probe-{id(self)}-{suffix}"

    def close(self) -> None:
        if not self._registered:
            return
        events = self.client.meta.events
        events.unregister("provide-client-params.dynamodb", unique_id=self._id("p"))
        events.unregister("before-send.dynamodb", unique_id=self._id("s"))
        events.unregister("after-call.dynamodb", unique_id=self._id("a"))
        self._registered = False

    @contextmanager
    def recording(self) -> Iterator[Tally]:
        if not self._registered:
            self._register()
        self.tally = Tally()
        self.captured = []
        self._active.on = True
        self._everywhere = self.every_thread
        try:
            yield self.tally
        finally:
            self._active.on = False
            self._everywhere = False

    def _on(self) -> bool:
        return self._everywhere or bool(getattr(self._active, "on", False))

    # ------------------------------------------------------------ event handlers
    def _on_params(
        self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any
    ) -> dict[str, Any] | None:
        if not self._on():
            return None
        operation = model.name
        call = Call(operation=operation)
        context["bench_call"] = call
        context["bench_start"] = time.perf_counter()
        if self.capture:
            self.captured.append((operation, copy.deepcopy(params)))
        if not self.capacity:
            return None
        context["bench_params"] = copy.deepcopy(params)
        context["bench_before"] = self._images(operation, params)
        if operation in _CAPACITY_OPERATIONS and "ReturnConsumedCapacity" not in params:
            return {**params, "ReturnConsumedCapacity": "TOTAL"}
        return None

    def _on_send(self, context: dict[str, Any] | None = None, **_: Any) -> None:
        call = (context or {}).get("bench_call")
        if isinstance(call, Call):
            call.http_attempts += 1

    def _on_after(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        call = context.get("bench_call")
        if not isinstance(call, Call):
            return
        call.seconds = time.perf_counter() - context.get("bench_start", time.perf_counter())
        error = parsed.get("Error", {}).get("Code")
        call.error = str(error) if error else None
        call.items_returned = len(parsed.get("Items", [])) + (1 if parsed.get("Item") else 0)
        call.items_scanned = int(parsed.get("ScannedCount", call.items_returned))
        if self.capacity:
            self._price(call, context, parsed)
        self.tally.calls.append(call)

    # ------------------------------------------------------------ pricing
    def _price(self, call: Call, context: dict[str, Any], parsed: dict[str, Any]) -> None:
        params: dict[str, Any] = context.get("bench_params", {})
        call.local_reported_units = _reported(parsed.get("ConsumedCapacity"))
        if call.operation == "GetItem":
            call.consistent = bool(params.get("ConsistentRead"))
            call.read_bytes = item_size(parsed.get("Item"))
            call.read_units = read_units(call.read_bytes, consistent=call.consistent)
        elif call.operation in ("Query", "Scan"):
            call.consistent = bool(params.get("ConsistentRead"))
            call.read_bytes = sum(item_size(i) for i in parsed.get("Items", []))
            call.read_units = read_units(call.read_bytes, consistent=call.consistent)
            if "FilterExpression" in params and call.items_scanned > call.items_returned:
                # Filtered-out items are billed too; their sizes are not visible: assume alike.
                average = call.read_bytes / max(1, call.items_returned)
                call.read_bytes = int(average * call.items_scanned)
                call.read_units = read_units(call.read_bytes, consistent=call.consistent)
        elif call.operation == "BatchGetItem":
            # Each item is rounded up to 4 KB on its own.
            for table, items in parsed.get("Responses", {}).items():
                consistent = bool(
                    params.get("RequestItems", {}).get(table, {}).get("ConsistentRead")
                )
                call.consistent = call.consistent or consistent
                for item in items:
                    call.read_bytes += item_size(item)
                    call.read_units += read_units(item_size(item), consistent=consistent)
                call.items_returned += len(items)
                call.items_scanned += len(items)
        elif call.operation in ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"):
            before: list[tuple[str, Any, str, int]] = context.get("bench_before", [])
            after = {(t, _key_text(k)): s for t, k, s in self._sizes(before)}
            transactional = call.operation == "TransactWriteItems"
            for table, key, action, size_before in before:
                size = max(size_before, after.get((table, _key_text(key)), 0))
                if action == "Put":
                    size = max(size, item_size(key.get("__item__")))
                units = write_units(size, transactional=transactional)
                pk = str(key["pk"]["S"]) if "pk" in key else str(next(iter(key.values())))
                call.write_units += units
                call.write_units_by_pk[pk] = call.write_units_by_pk.get(pk, 0.0) + units
                call.write_items.append(
                    {"table": table, "pk": pk, "action": action, "bytes": size, "units": units}
                )
        elif call.operation == "BatchWriteItem":
            for table, requests in params.get("RequestItems", {}).items():
                for request in requests:
                    item = request.get("PutRequest", {}).get("Item")
                    units = write_units(item_size(item))
                    call.write_units += units
                    call.write_items.append({"table": table, "bytes": item_size(item)})

    def _images(self, operation: str, params: Mapping[str, Any]) -> list[tuple[str, Any, str, int]]:
        """(table, key, action, size before) of every item a write request touches."""
        actions: list[tuple[str, str, Mapping[str, Any]]] = []
        if operation == "TransactWriteItems":
            for entry in params.get("TransactItems", []):
                (action, body), *_ = entry.items()
                actions.append((action, body["TableName"], body))
        elif operation in ("PutItem", "UpdateItem", "DeleteItem"):
            action = {"PutItem": "Put", "UpdateItem": "Update", "DeleteItem": "Delete"}[operation]
            actions.append((action, params["TableName"], params))
        touched: list[tuple[str, Any, str, int]] = []
        for action, table, body in actions:
            if action == "ConditionCheck":
                continue
            if action == "Put":
                item = body["Item"]
                key: dict[str, Any] = {
                    name: item[name] for name in self._key_names(table) if name in item
                }
                key["__item__"] = item
            else:
                key = dict(body["Key"])
            touched.append((table, key, action, self._current_size(table, key)))
        return touched

    def _sizes(self, before: Sequence[tuple[str, Any, str, int]]) -> list[tuple[str, Any, int]]:
        return [(table, key, self._current_size(table, key)) for table, key, _, _ in before]

    def _current_size(self, table: str, key: Mapping[str, Any]) -> int:
        assert self.side_client is not None
        plain_key = {k: v for k, v in key.items() if k != "__item__"}
        response = self.side_client.get_item(TableName=table, Key=plain_key, ConsistentRead=True)
        return item_size(response.get("Item"))

    _key_cache: dict[str, list[str]] = {}  # noqa: RUF012 - a per-process cache of key schemas

    def _key_names(self, table: str) -> list[str]:
        if table not in self._key_cache:
            assert self.side_client is not None
            schema = self.side_client.describe_table(TableName=table)["Table"]["KeySchema"]
            self._key_cache[table] = [element["AttributeName"] for element in schema]
        return self._key_cache[table]


def _key_text(key: Mapping[str, Any]) -> str:
    return repr(sorted((k, repr(v)) for k, v in key.items() if k != "__item__"))


def _reported(consumed: Any) -> float | None:
    if consumed is None:
        return None
    entries = consumed if isinstance(consumed, list) else [consumed]
    return float(sum(float(entry.get("CapacityUnits", 0)) for entry in entries))
