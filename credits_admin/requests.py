"""From parsed arguments to the AdminFunction's request: one builder per command, each
returning the contract's operation name and its camelCase fields (docs/operators.md)."""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from credits_admin import values


@dataclass(frozen=True)
class AdminRequest:
    operation: str
    fields: dict[str, Any]
    # A money operation's idempotency key the CLI made up (the operator did not give one):
    # printed, so that the very same command can be retried safely with it.
    generated_key: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def payload(self, actor: str) -> dict[str, Any]:
        return {"operation": self.operation, "actor": actor, **self.fields}


Builder = Callable[[argparse.Namespace], AdminRequest]


def new_idempotency_key() -> str:
    """`adm-<utc time>-<random>`: unique, sortable, within the key's alphabet."""
    return f"adm-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:12]}"


def _given(**fields: Any) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


def _money(operation: str, args: argparse.Namespace, **fields: Any) -> AdminRequest:
    key = args.idempotency_key
    generated = None
    if key is None:
        key = generated = new_idempotency_key()
    return AdminRequest(
        operation,
        {"accountId": args.account_id, **_given(**fields), "idempotencyKey": key},
        generated_key=generated,
    )


def _amount(value: Any) -> Any:
    return None if value is None else values.json_number(value)


# ---------------------------------------------------------------- accounts
def accounts_create(args: argparse.Namespace) -> AdminRequest:
    return AdminRequest(
        "accounts.create",
        _given(
            name=args.name,
            plan=args.plan,
            credits=_amount(args.credits),
            currency=args.currency,
            creditPrice=_amount(args.credit_price),
        ),
    )


def accounts_show(args: argparse.Namespace) -> AdminRequest:
    return AdminRequest("accounts.show", {"accountId": args.account_id})


def accounts_list(args: argparse.Namespace) -> AdminRequest:
    return AdminRequest("accounts.list", _given(limit=args.limit))


def accounts_suspend(args: argparse.Namespace) -> AdminRequest:
    return AdminRequest("accounts.suspend", {"accountId": args.account_id, "reason": args.reason})


def accounts_reactivate(args: argparse.Namespace) -> AdminRequest:
    return AdminRequest(
        "accounts.reactivate", {"accountId": args.account_id, **_given(reason=args.reason)}
    )


def accounts_flag(args: argparse.Namespace) -> AdminRequest:
    return AdminRequest("accounts.flag", {"accountId": args.account_id, "warning": args.warning})


def accounts_unflag(args: argparse.Namespace) -> AdminRequest:
    return AdminRequest("accounts.unflag", {"accountId": args.account_id})


# `accounts set` options -> the contract's setting names.
SETTINGS = {
    "low_balance_threshold": "lowBalanceThreshold",
    "auto_reload": "autoReload",
    "auto_reload_threshold": "autoReloadThreshold",
    "auto_reload_amount": "autoReloadAmount",
    "overdraft_limit": "overdraftLimit",
    "plan": "plan",
}


def accounts_set(args: argparse.Namespace) -> AdminRequest:
    settings: dict[str, Any] = {}
    for option, name in SETTINGS.items():
        value = getattr(args, option)
        if value is not None:
            settings[name] = value if isinstance(value, bool | str) else _amount(value)
    return AdminRequest("accounts.set", {"accountId": args.account_id, **settings})


# ---------------------------------------------------------------- keys
def keys_create(args: argparse.Namespace) -> AdminRequest:
    return AdminRequest("keys.create", {"accountId": args.account_id})


def keys_list(args: argparse.Namespace) -> AdminRequest:
    return AdminRequest("keys.list", {"accountId": args.account_id})


def keys_rotate(args: argparse.Namespace) -> AdminRequest:
    return AdminRequest("keys.rotate", {"accountId": args.account_id})


def keys_revoke(args: argparse.Namespace) -> AdminRequest:
    return AdminRequest("keys.revoke", {"accountId": args.account_id, "apiKeyId": args.key_id})


# ---------------------------------------------------------------- credits
def _credit(operation: str, args: argparse.Namespace) -> AdminRequest:
    """A top-up or grant, and the lot it opens (priority, expiry)."""
    expires = args.expires_at
    if args.expires_in is not None:
        expires = datetime.now(UTC) + args.expires_in
    return _money(
        operation,
        args,
        amount=_amount(args.amount),
        reference=args.reference,
        description=args.description,
        priority=args.priority,
        expiresAt=None if expires is None else values.iso(expires),
    )


def credits_topup(args: argparse.Namespace) -> AdminRequest:
    return _credit("credits.topup", args)


def credits_grant(args: argparse.Namespace) -> AdminRequest:
    return _credit("credits.grant", args)


def credits_adjust(args: argparse.Namespace) -> AdminRequest:
    return _money("credits.adjust", args, amount=_amount(args.amount), reason=args.reason)


def credits_refund(args: argparse.Namespace) -> AdminRequest:
    return _money(
        "credits.refund",
        args,
        transactionId=args.transaction_id,
        amount=_amount(args.amount),
        reason=args.reason,
    )


# ---------------------------------------------------------------- holds
def holds_list(args: argparse.Namespace) -> AdminRequest:
    return AdminRequest("holds.list", {"accountId": args.account_id})


def holds_release(args: argparse.Namespace) -> AdminRequest:
    return _money("holds.release", args, holdId=args.hold_id, reason=args.reason)


# ---------------------------------------------------------------- lots
def lots_list(args: argparse.Namespace) -> AdminRequest:
    return AdminRequest("lots.list", {"accountId": args.account_id})


def lots_expire(args: argparse.Namespace) -> AdminRequest:
    return AdminRequest("lots.expire", {"accountId": args.account_id})


# ---------------------------------------------------------------- ledger, reconcile
def ledger_list(args: argparse.Namespace) -> AdminRequest:
    return AdminRequest("ledger.list", {"accountId": args.account_id, **_given(limit=args.limit)})


def reconcile(args: argparse.Namespace) -> AdminRequest:
    if args.all:
        return AdminRequest("reconcile", {"all": True})
    return AdminRequest("reconcile", {"accountId": args.account_id})


# ---------------------------------------------------------------- events
def events_replay(args: argparse.Namespace) -> AdminRequest:
    return AdminRequest("events.replay", _given(limit=args.limit))
