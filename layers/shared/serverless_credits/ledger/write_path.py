"""The write path every balance change takes (docs/design-notes.md, docs/write-path.md):

1. **Lease**: a conditional `PutItem` of the idempotency record (pending, fingerprint,
   operation id, the whole operation, lease expiry). An existing record answers instead:
   completed with the same fingerprint -> its result (`replayed`); another fingerprint ->
   `IDEMPOTENCY_CONFLICT`; pending within its lease -> a short bounded wait, then the
   replay or `OPERATION_IN_PROGRESS`; pending past its lease -> recovery.
2. **Apply**: ONE conditional `UpdateItem` of the account item (`ledger.ports.Accounts`):
   no read before it, no version pin, no retry loop on contention. A refusal carries the
   item's image, which decides the domain error.
3. **Complete**: the record gets the result. The ledger entry comes from the account's
   stream (`ledger.materializer`), which also completes the record if this step never ran.

Recovery of an expired lease: the operation reached the account if and only if the
materializer, once it has caught up with the account's current version, completed the
record. Caught up and still pending means it never landed, and because the lease outlived
any request, it never will: the lease is taken over and the operation applied.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from serverless_credits.config import Settings
from serverless_credits.domain.errors import (
    AccountNotFound,
    CreditsError,
    OperationInProgress,
    ServiceBusy,
    StorageError,
)
from serverless_credits.domain.idempotency import Verdict, judge
from serverless_credits.domain.models import (
    Account,
    IdempotencyRecord,
    IdempotencyState,
    LastOp,
    Operation,
    OperationResult,
    ReleaseReason,
)
from serverless_credits.domain.operations import result_of
from serverless_credits.domain.outcomes import ChangeRefused, KeyTaken, OutcomeUnknown
from serverless_credits.domain.posting import check_allowed, posting_for
from serverless_credits.ledger.ports import Accounts, IdempotencyRecords, LedgerEntries

logger = logging.getLogger(__name__)

# Images of this many accounts are kept (a few KB each at most: docs/lots.md).
VIEW_CACHE_SIZE = 2048
# A stale plan is made again from the image that refused it. Busy accounts refuse a plan
# when another writer empties a lot it counted on or a lot is added: with many writers on
# one lot boundary, each round lands one of them, so a writer may need about as many rounds
# as there are writers. Past the first rounds the replans are spread by a short random
# pause, so that the writers stop colliding in step; the lease bounds the whole.
MAX_PLANS = 32
CALM_PLANS = 2  # replans without a pause
MAX_REPLAN_PAUSE = 0.05  # seconds
# A lease is not used when less than this is left of it: the update must land well inside.
LEASE_MARGIN = timedelta(seconds=5)
# The wait for a pending record: short polls first (a write takes milliseconds).
FIRST_POLL, MAX_POLL = 0.01, 0.2
MAX_ROUNDS = 4  # lease -> (recover or wait) -> lease again: a bound, never reached in practice


@dataclass(frozen=True)
class WriteRequest:
    account_id: str
    idempotency_key: str
    fingerprint: str
    operation: Operation


BeforeApply = Callable[[IdempotencyRecord], None]


def new_op_id() -> str:
    return uuid.uuid4().hex


class WritePath:
    def __init__(
        self,
        accounts: Accounts,
        records: IdempotencyRecords,
        entries: LedgerEntries,
        settings: Settings,
        *,
        clock: Callable[[], datetime],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._accounts = accounts
        self._records = records
        self._entries = entries
        self._clock = clock
        self._sleep = sleep
        self._lease = timedelta(seconds=settings.lease_seconds)
        self._wait_budget = settings.in_progress_wait_seconds
        # Each account's image as this function last saw it (the `ALL_NEW` of its last
        # write, or the image that refused one): plans are made on it without a read. The
        # update's conditions pin everything a plan assumes (the overdraft limit, each lot
        # touched, `lotGen`), so a stale image costs one refused update, never a wrong one.
        self._views: OrderedDict[str, Account] = OrderedDict()
        self._lock = threading.Lock()

    # ------------------------------------------------------------ the three steps
    def submit(
        self, request: WriteRequest, before_apply: BeforeApply | None = None
    ) -> OperationResult:
        """Apply `request` once, whatever was tried before under its key."""
        for _ in range(MAX_ROUNDS):
            now = self._clock()
            record = IdempotencyRecord(
                account_id=request.account_id,
                idempotency_key=request.idempotency_key,
                fingerprint=request.fingerprint,
                op_id=new_op_id(),
                state=IdempotencyState.PENDING,
                operation=request.operation,
                lease_expires_at=now + self._lease,
                created_at=now,
            )
            try:
                self._records.lease(record, now)
            except KeyTaken as taken:
                # The same operation id is our own lease: the put landed, its answer was
                # lost and botocore sent it again. Anything else is another request's.
                if taken.record.op_id != record.op_id:
                    answer = self._existing(taken.record, request)
                    if answer is None:
                        continue  # the record was released meanwhile: lease again
                    if isinstance(answer, OperationResult):
                        return answer
                    record = answer  # an expired lease taken over: ours to apply
            if before_apply is not None:
                self._guarded(record, before_apply)
            return self._apply(record)
        raise OperationInProgress(request.idempotency_key)

    def _guarded(self, record: IdempotencyRecord, before_apply: BeforeApply) -> None:
        try:
            before_apply(record)
        except Exception:
            self._records.release(record.account_id, record.idempotency_key, record.op_id)
            raise

    def _apply(self, record: IdempotencyRecord) -> OperationResult:
        account_id = record.account_id
        try:
            after = self._land(record)
        except (CreditsError, ServiceBusy, StorageError):
            # Refused, or never landed (throttled past botocore's retries): the key is
            # released for the caller's retry instead of held for the whole lease.
            self._records.release(account_id, record.idempotency_key, record.op_id)
            raise
        except OutcomeUnknown:
            # It may have landed: never apply it again in this call. The stream tells.
            settled = self._await(record, replayed=False)
            if settled is None:  # pragma: no cover - only this call releases its lease
                raise ServiceBusy("the write's outcome is unknown") from None
            return settled
        self._remember(after)
        result = result_of(record.op_id, record.operation, after)
        try:
            self._records.complete(
                account_id,
                record.idempotency_key,
                op_id=record.op_id,
                result=result,
                sequence=after.version,
            )
        except (ServiceBusy, StorageError):
            # Applied all the same: the materializer completes the record from the stream.
            logger.warning("idempotency record left for the materializer to complete")
        return result

    def _land(self, record: IdempotencyRecord) -> Account:
        """Plan the operation on the account's latest known image and send its one update;
        plan again from the image that refused it. The image after the update."""
        account_id, operation = record.account_id, record.operation
        last_op = LastOp(
            id=record.op_id,
            key=record.idempotency_key,
            type=operation.type,
            amount=operation.amount,
            at=record.created_at,
            reason=operation.reason if operation.reason is ReleaseReason.EXPIRED else None,
        )
        view, fresh = self._view(account_id)
        replans = 0
        for _ in range(MAX_PLANS):
            now = self._clock()
            if now >= record.lease_expires_at - LEASE_MARGIN:
                # Too late to land safely: recovery will find it never did.
                raise ServiceBusy("the idempotency lease ran out before the update")
            try:
                posting = posting_for(operation, now, view)
                check_allowed(view, posting)
            except CreditsError:
                if fresh:
                    raise
                # A cached image proves no refusal: only one read in this request does.
                view, fresh = self._read(account_id), True
                continue
            lots = posting.lots.allocation() if posting.lots is not None else None
            try:
                return self._accounts.apply(
                    account_id,
                    posting,
                    last_op.model_copy(update={"lots": lots or None}),
                    assumed_overdraft=view.overdraft_limit,
                    now=now,
                )
            except ChangeRefused as refused:
                # The plan was stale or the operation is refused: the image that refused
                # it decides, on the next round.
                view, fresh = self._fresh(account_id, refused.current), True
                replans += 1
                if replans > CALM_PLANS:
                    self._sleep(_replan_pause(replans))
        raise ServiceBusy("the account kept changing under the plan")

    # ------------------------------------------------------------ the account's image
    def _view(self, account_id: str) -> tuple[Account, bool]:
        """The image to plan on: the one this function last saw (no read on the hot path),
        else one strongly consistent read. True when it was read now."""
        with self._lock:
            cached = self._views.get(account_id)
        if cached is not None:
            return cached, False
        return self._read(account_id), True

    def _read(self, account_id: str) -> Account:
        return self._fresh(account_id, self._accounts.get(account_id, consistent=True))

    def _fresh(self, account_id: str, current: Account | None) -> Account:
        """`current` (read in this request), given its lots map if it was written before
        lots existed, and remembered."""
        for _ in range(MAX_PLANS):
            if current is None:
                raise AccountNotFound(account_id)
            if current.lots is not None:
                self._remember(current)
                return current
            current = self._accounts.open_lots(current) or self._accounts.get(
                account_id, consistent=True
            )
        raise ServiceBusy("the account kept changing while its lots were opened")

    def _remember(self, account: Account) -> None:
        with self._lock:
            self._views[account.account_id] = account
            self._views.move_to_end(account.account_id)
            while len(self._views) > VIEW_CACHE_SIZE:
                self._views.popitem(last=False)

    # ------------------------------------------------------------ an existing record
    def _existing(
        self, record: IdempotencyRecord, request: WriteRequest
    ) -> OperationResult | IdempotencyRecord | None:
        verdict = judge(record, request.fingerprint, self._clock())
        if verdict is Verdict.REPLAY:
            return _replay(record)
        if verdict is Verdict.WAIT:
            return self._await(record, replayed=True)
        return self._recover(record)

    def _await(self, record: IdempotencyRecord, *, replayed: bool) -> OperationResult | None:
        """Poll a pending record for its result, within the wait budget."""
        deadline = time.monotonic() + self._wait_budget
        delay = FIRST_POLL
        while True:
            current = self._records.get(record.account_id, record.idempotency_key)
            if current is None:
                return None
            if current.state is IdempotencyState.COMPLETED:
                ours = not replayed and current.op_id == record.op_id
                return _result(current) if ours else _replay(current)
            if time.monotonic() >= deadline:
                raise OperationInProgress(record.idempotency_key)
            self._sleep(delay)
            delay = min(delay * 2, MAX_POLL)

    def _recover(self, record: IdempotencyRecord) -> OperationResult | IdempotencyRecord | None:
        account_id, key = record.account_id, record.idempotency_key
        # Order matters: the account's version, then how far the ledger is written, then
        # the record; the materializer completes records before it moves the head.
        account = self._accounts.get(account_id, consistent=True)
        if account is None:
            self._records.release(account_id, key, record.op_id)
            raise AccountNotFound(account_id)
        head = self._entries.head(account_id)
        current = self._records.get(account_id, key)
        if current is None:
            return None
        if current.state is IdempotencyState.COMPLETED:
            return _replay(current)
        if current.op_id != record.op_id:
            return self._existing(current, _request_of(current))
        if head.version < account.version:
            raise OperationInProgress(key)  # the materializer has not caught up yet
        op_id, lease = new_op_id(), self._clock() + self._lease
        if not self._records.take_over(account_id, key, record.op_id, op_id, lease):
            return None
        logger.info("took over an expired lease that never reached the account")
        return current.model_copy(update={"op_id": op_id, "lease_expires_at": lease})


def _replan_pause(replans: int) -> float:
    """Full jitter, growing with the rounds lost: writers colliding on one lot boundary
    spread out instead of meeting again."""
    ceiling = min(MAX_REPLAN_PAUSE, 0.002 * 2 ** (replans - CALM_PLANS))
    return random.uniform(0, ceiling)  # noqa: S311 - jitter, not a secret


def _result(record: IdempotencyRecord) -> OperationResult:
    if record.result is None:  # pragma: no cover - completed records always carry one
        raise StorageError("completed idempotency record without a result")
    return record.result


def _replay(record: IdempotencyRecord) -> OperationResult:
    return _result(record).model_copy(update={"replayed": True})


def _request_of(record: IdempotencyRecord) -> WriteRequest:
    return WriteRequest(
        record.account_id, record.idempotency_key, record.fingerprint, record.operation
    )
