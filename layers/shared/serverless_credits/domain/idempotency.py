"""Idempotency rules: what a request's fingerprint is, and what an existing record under
the same key means for a new request (replay, conflict, wait, or recover)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from serverless_credits.domain.errors import IdempotencyConflict
from serverless_credits.domain.models import IdempotencyRecord, IdempotencyState
from serverless_credits.domain.money import normalize

# Request fields that do not identify what an operation does (see `parameters`).
NOT_IDENTIFYING = frozenset({"actor"})
# The longest idempotency key a request may carry (`models.IdempotencyKey`).
MAX_KEY_LENGTH = 128


def derived_key(key: str, step: str) -> str:
    """The idempotency key of a step that follows the operation made with `key` (the void
    of a debit, the capture or release of a hold): `<key>:<step>`, or `<step>:` and a hash
    of `key` when that would not fit the key limit. Deterministic, so a retry of the step
    replays it."""
    derived = f"{key}:{step}"
    if len(derived) <= MAX_KEY_LENGTH:
        return derived
    return f"{step}:" + hashlib.sha256(key.encode()).hexdigest()


def fingerprint(operation: str, parameters: dict[str, Any]) -> str:
    """A stable hash of what a request asks for, to tell a replay from a key reused."""
    canonical = json.dumps(
        {"operation": operation, **parameters}, sort_keys=True, default=str, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def parameters(command: Any, *, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    """What identifies a request, for its fingerprint: everything but the key itself (and
    what does not change the operation, such as who asked).

    `actor` (the operator behind a top-up, grant, adjustment or refund) is never part of
    it: a retry by another operator, or from another session whose caller identity differs,
    must replay rather than conflict, and requests without an actor keep the fingerprints
    they had before the field existed."""
    data: dict[str, Any] = command.model_dump(
        mode="python", exclude={"idempotency_key", *NOT_IDENTIFYING, *exclude}
    )
    return {
        name: str(normalize(value)) if isinstance(value, Decimal) else value
        for name, value in data.items()
    }


class Verdict(Enum):
    REPLAY = "replay"  # completed with the same request: return its result
    WAIT = "wait"  # leased by a request still within its lease
    RECOVER = "recover"  # leased, but the lease ran out: find out whether it landed


def judge(record: IdempotencyRecord, fingerprint_: str, now: datetime) -> Verdict:
    """What an existing record means for a request with `fingerprint_`."""
    if record.fingerprint != fingerprint_:
        raise IdempotencyConflict(record.idempotency_key)
    if record.state is IdempotencyState.COMPLETED:
        return Verdict.REPLAY
    if now < record.lease_expires_at:
        return Verdict.WAIT
    return Verdict.RECOVER
