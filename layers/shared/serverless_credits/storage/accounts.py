"""The account item: status, settings and the balance figures. Every balance change is ONE
conditional `UpdateItem` of it (never a transaction): `ALL_NEW` gives the exact figures
after the change, `ALL_OLD` on a refusal gives the state that refused it, without a read."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

from serverless_credits.domain.errors import AccountAlreadyExists, AccountNotFound, StorageError
from serverless_credits.domain.lots import Check, LotMove, LotPlan, opening_lots
from serverless_credits.domain.models import Account, AutoReloadPending, LastOp
from serverless_credits.domain.outcomes import ChangeRefused, OutcomeUnknown
from serverless_credits.domain.posting import HoldFence, Posting
from serverless_credits.storage import keys
from serverless_credits.storage.items import (
    SERVER_ERROR_CODES,
    UNKNOWN_OUTCOME_ERRORS,
    Table,
    assignments,
    error_code,
    from_item,
    key,
    old_image,
    storage_failure,
    to_item,
    values,
)

# The figures a change moves, as item attributes (ADD): `total` is a reserved word.
_FIGURES = {
    "balance": "balance",
    "available": "available",
    "used": "used",
    "total": "#total",
    "adjusted": "adjusted",
    "requests": "lifetimeRequests",
    "reserved": "reserved",
}


# Failures after which an update may have been applied: sending it again could apply it
# twice (an ADD is not idempotent), so botocore must not retry them for `apply`.
_AMBIGUOUS_ERRORS = (ReadTimeoutError, ConnectionClosedError)
_SERVER_ERROR = 500


class AccountStore:
    def __init__(self, table: Table) -> None:
        self._table = table
        self._applying = threading.local()
        table.client.meta.events.register_first(
            "needs-retry.dynamodb.UpdateItem",
            cast(Any, self._no_blind_retry),  # botocore's hooks are typed as returning None
            unique_id=f"serverless-credits-apply-{id(self)}",
        )

    def _no_blind_retry(
        self, response: Any = None, caught_exception: Any = None, **_: Any
    ) -> bool | None:
        """botocore's standard retries send a timed-out request again. For `apply` that
        could charge twice: after a read timeout, a dropped connection or a 5xx answer the
        update is not sent again (False vetoes the retry) and the write path learns its
        outcome from the stream. Throttling and other refusals are still retried."""
        if not getattr(self._applying, "active", False):
            return None
        if isinstance(caught_exception, _AMBIGUOUS_ERRORS):
            return False
        if response is not None and response[0].status_code >= _SERVER_ERROR:
            return False
        return None

    def _update(self, account_id: str, request: dict[str, Any], *, opens_hold: bool) -> Any:
        """Send one balance update, its refusal turned into `ChangeRefused` with the image
        that refused it; botocore may not resend it blindly (`_no_blind_retry`)."""
        self._applying.active = True
        try:
            for first in (True, False):
                try:
                    return self._table.client.update_item(**request)
                except ClientError as exc:
                    code = error_code(exc)
                    if code == "ConditionalCheckFailedException":
                        image = old_image(exc)
                        if first and opens_hold and image and "holds" not in image:
                            # An item from before holds: give it its map, then once more.
                            self._add_holds_map(account_id)
                            continue
                        current = Account.model_validate(image) if image else None
                        raise ChangeRefused(current) from exc
                    if code in SERVER_ERROR_CODES:
                        raise OutcomeUnknown(code) from exc  # a 5xx may have applied it
                    raise storage_failure("apply", exc) from exc  # refused: nothing applied
                except UNKNOWN_OUTCOME_ERRORS as exc:
                    raise OutcomeUnknown(type(exc).__name__) from exc
        finally:
            self._applying.active = False
        raise StorageError("the account item has no holds map")  # pragma: no cover

    def _add_holds_map(self, account_id: str) -> None:
        """`SET holds.#h` needs the map to exist: items written before holds get it here."""
        try:
            self._table.client.update_item(
                TableName=self._table.name,
                Key=key(keys.account_pk(account_id), keys.ACCOUNT_SK),
                UpdateExpression="SET holds = :empty",
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(holds)",
                ExpressionAttributeValues={":empty": {"M": {}}},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise storage_failure("add holds map", exc) from exc

    def get(self, account_id: str, *, consistent: bool = False) -> Account | None:
        item = self._table.get(keys.account_pk(account_id), keys.ACCOUNT_SK, consistent=consistent)
        return Account.model_validate(item) if item else None

    def ids(self) -> list[str]:
        """Every account id: a Scan of the table (the reconciler's nightly pass)."""
        found: list[str] = []
        for item in self._table.scan(
            FilterExpression="sk = :sk",
            ProjectionExpression="pk",
            ExpressionAttributeValues=values(sk=keys.ACCOUNT_SK),
        ):
            account_id = keys.account_id_of(str(item["pk"]))
            if account_id is not None:
                found.append(account_id)
        return sorted(found)

    def open_lots(self, current: Account) -> Account | None:
        """Give an item written before credit lots its `lots` map: its balance as one lot
        (`domain.lots.opening_lots`). Conditioned on the version seen, so the lots sum to
        the balance; the image after, or None when the item changed meanwhile (read it
        again). Not a balance change: no version, no ledger entry."""
        try:
            response = self._table.client.update_item(
                TableName=self._table.name,
                Key=key(keys.account_pk(current.account_id), keys.ACCOUNT_SK),
                UpdateExpression="SET lots = :lots",
                ConditionExpression=(
                    "attribute_exists(pk) AND attribute_not_exists(lots) AND version = :version"
                ),
                ExpressionAttributeValues=values(
                    lots=opening_lots(current.balance, current.created_at),
                    version=current.version,
                ),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise storage_failure("open lots", exc) from exc
        return Account.model_validate(from_item(response["Attributes"]))

    def create(self, account: Account) -> None:
        """Put a new account unless the id is taken (with its empty map of open holds, and
        its balance, if it has one, as its first lot)."""
        if account.holds is None:
            account = account.model_copy(update={"holds": {}})
        if account.lots is None:
            account = account.model_copy(
                update={"lots": opening_lots(account.balance, account.created_at)}
            )
        try:
            self._table.client.put_item(
                TableName=self._table.name,
                Item=to_item(account, pk=keys.account_pk(account.account_id), sk=keys.ACCOUNT_SK),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise AccountAlreadyExists(account.account_id) from exc
            raise storage_failure("create account", exc) from exc

    def update_settings(self, account_id: str, changes: Mapping[str, Any]) -> Account:
        """Change settings (status, thresholds, flags): no version, so no ledger entry."""
        if not changes:
            current = self.get(account_id, consistent=True)
            if current is None:
                raise AccountNotFound(account_id)
            return current
        assigning, names, assigned = assignments(changes)
        try:
            response = self._table.client.update_item(
                TableName=self._table.name,
                Key=key(keys.account_pk(account_id), keys.ACCOUNT_SK),
                UpdateExpression=f"SET {assigning}",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=assigned,
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise AccountNotFound(account_id) from exc
            raise storage_failure("update account", exc) from exc
        return Account.model_validate(from_item(response["Attributes"]))

    def mark_auto_reload(
        self, account_id: str, pending: AutoReloadPending, *, expired_before: datetime
    ) -> bool:
        """Record a pending auto-reload request (the event publisher, before it publishes
        the request): True when this request holds the mark - none was pending, the pending
        one is this very request (a redelivery), or it was requested at or before
        `expired_before` (timed out). No version and no `updatedAt`: not a balance change."""
        try:
            self._table.client.update_item(
                TableName=self._table.name,
                Key=key(keys.account_pk(account_id), keys.ACCOUNT_SK),
                UpdateExpression="SET autoReloadPending = :pending",
                ConditionExpression=(
                    "attribute_exists(pk) AND (attribute_not_exists(autoReloadPending)"
                    " OR autoReloadPending.requestId = :request"
                    " OR autoReloadPending.#at <= :expired)"
                ),
                ExpressionAttributeNames={"#at": "at"},
                ExpressionAttributeValues=values(
                    pending=pending, request=pending.request_id, expired=expired_before
                ),
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise storage_failure("mark auto-reload", exc) from exc
        return True

    def clear_auto_reload(self, account_id: str, request_id: str) -> bool:
        """Forget the pending auto-reload request `request_id` (a top-up answered it);
        False when another request (or none) is pending."""
        try:
            self._table.client.update_item(
                TableName=self._table.name,
                Key=key(keys.account_pk(account_id), keys.ACCOUNT_SK),
                UpdateExpression="REMOVE autoReloadPending",
                ConditionExpression="autoReloadPending.requestId = :request",
                ExpressionAttributeValues=values(request=request_id),
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise storage_failure("clear auto-reload", exc) from exc
        return True

    def apply(
        self,
        account_id: str,
        posting: Posting,
        last_op: LastOp,
        *,
        assumed_overdraft: Decimal,
        now: datetime,
    ) -> Account:
        """Apply one posting: `ADD` the deltas and the version, `SET` the operation that
        made this version. Conditions: the account exists, is active when the posting
        needs it, and has the funds (`available >= needed - overdraft`, with the overdraft
        the floor assumed pinned, so a changed limit refuses instead of overspending)."""
        deltas = {
            "balance": posting.balance,
            "available": posting.available,
            "used": posting.used,
            "total": posting.total,
            "adjusted": posting.adjusted,
            "requests": Decimal(posting.requests),
            "reserved": posting.reserved,
        }
        update = _Update(
            adds=[f"{_FIGURES[name]} :{name}" for name, delta in deltas.items() if delta],
            named={
                **{name: delta for name, delta in deltas.items() if delta},
                "one": 1,
                "op": last_op,
                "now": now,
            },
        )
        if posting.hold is not None:
            update.fence(posting.hold)
        if posting.lots is not None:
            update.lots(posting.lots)
        if posting.total:
            update.names["#total"] = "total"
        if posting.require_active:
            update.conditions.append("#status = :active")
            update.names["#status"] = "status"
            update.named["active"] = "active"
        floor = posting.floor(assumed_overdraft)
        if floor is not None:
            update.conditions.append("available >= :floor AND overdraftLimit = :overdraft")
            update.named.update(floor=floor, overdraft=assumed_overdraft)
        request: dict[str, Any] = {
            "TableName": self._table.name,
            "Key": key(keys.account_pk(account_id), keys.ACCOUNT_SK),
            **update.expressions(),
            "ReturnValues": "ALL_NEW",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        opens_hold = posting.hold is not None and posting.hold.opens is not None
        response = self._update(account_id, request, opens_hold=opens_hold)
        try:
            return Account.model_validate(from_item(response["Attributes"]))
        except KeyError as exc:  # pragma: no cover - DynamoDB always answers ALL_NEW
            raise StorageError("apply returned no item") from exc


@dataclass
class _Update:
    """The parts of one balance update's expressions, assembled by `apply`."""

    adds: list[str]
    named: dict[str, Any]
    sets: list[str] = field(default_factory=lambda: ["lastOp = :op", "updatedAt = :now"])
    removes: list[str] = field(default_factory=list)
    conditions: list[str] = field(default_factory=lambda: ["attribute_exists(pk)"])
    names: dict[str, str] = field(default_factory=dict)

    def fence(self, fence: HoldFence) -> None:
        """Open the hold's entry in the `holds` map, or close it, each conditioned so that a
        repeated or late step is refused."""
        self.names["#hold"] = fence.hold_id
        if fence.opens is not None:
            self.sets.append("holds.#hold = :hold")
            self.conditions.append("attribute_not_exists(holds.#hold) AND size(holds) < :maxHolds")
            self.named.update(hold=fence.opens, maxHolds=fence.max_open)
            return
        self.removes.append("holds.#hold")
        self.conditions.append("holds.#hold.a = :held")
        self.named["held"] = fence.held
        if fence.live_at is not None:
            self.conditions.append("holds.#hold.x > :liveAt")
            self.named["liveAt"] = fence.live_at
        if fence.expired_at is not None:
            self.conditions.append("holds.#hold.x <= :expiredAt")
            self.named["expiredAt"] = fence.expired_at

    def lots(self, plan: LotPlan) -> None:
        """Move the lots the plan touches, each conditioned on what the plan saw of it
        (`domain.lots.Check`), and the guards on `lotGen`, the lot count and `available`."""
        for index, move in enumerate(plan.moves):
            self._lot(index, move)
        self._lot_guards(plan)

    def _lot(self, index: int, move: LotMove) -> None:
        path, value, seen = f"lots.#lot{index}", f":lot{index}", f":seen{index}"
        self.names[f"#lot{index}"] = move.lot_id
        delta = {value[1:]: move.delta}
        if move.check is Check.ABSENT:  # opens it (or, with no delta, only assumes it absent)
            self.conditions.append(f"attribute_not_exists({path})")
            if move.delta:
                self.sets.append(f"{path} = {value}")
                self.named.update(delta)
        elif move.check is Check.EXACT:  # empties it, or sets what is left
            self.conditions.append(f"{path} = {seen}")
            self.named[seen[1:]] = move.seen
            if move.empties:
                self.removes.append(path)
            else:
                self.sets.append(f"{path} = {value}")
                self.named[value[1:]] = move.after
        elif move.check is Check.MORE_THAN:  # dips into it, leaving some
            self.conditions.append(f"{path} > {value}")
            self.sets.append(f"{path} = {path} - {value}")
            self.named[value[1:]] = -move.delta
        elif move.check is Check.PRESENT:  # adds to it
            self.conditions.append(f"attribute_exists({path})")
            self.sets.append(f"{path} = {path} + {value}")
            self.named.update(delta)
        else:  # Check.NONE: the overdraft lot, bounded by the funds floor instead
            self.sets.append(f"{path} = if_not_exists({path}, :zero) + {value}")
            self.named.update(delta, zero=0)

    def _lot_guards(self, plan: LotPlan) -> None:
        if plan.generation is not None:
            self.conditions.append(
                "lotGen = :lotGen"
                if plan.generation
                else "(attribute_not_exists(lotGen) OR lotGen = :lotGen)"
            )
            self.named["lotGen"] = plan.generation
        if plan.opens:
            self.adds.append("lotGen :lotsOpened")
            self.named["lotsOpened"] = plan.opens
        if plan.max_lots is not None:
            self.conditions.append("size(lots) <= :lotsBefore")
            self.named["lotsBefore"] = plan.max_lots - plan.opens
        if plan.available_is is not None:
            self.conditions.append("available = :availableIs")
            self.named["availableIs"] = plan.available_is
        if plan.available_at_least is not None:
            self.conditions.append("available >= :availableAtLeast")
            self.named["availableAtLeast"] = plan.available_at_least

    def expressions(self) -> dict[str, Any]:
        expression = f"ADD {', '.join([*self.adds, 'version :one'])} SET {', '.join(self.sets)}"
        if self.removes:
            expression += f" REMOVE {', '.join(self.removes)}"
        parts: dict[str, Any] = {
            "UpdateExpression": expression,
            "ConditionExpression": " AND ".join(self.conditions),
            "ExpressionAttributeValues": values(**self.named),
        }
        if self.names:
            parts["ExpressionAttributeNames"] = self.names
        return parts
