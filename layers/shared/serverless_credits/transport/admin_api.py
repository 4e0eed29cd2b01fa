"""The AdminFunction's contract: `{"operation": "<name>", "actor": ..., ...fields}` in, the
operation's result object out, or `{"error": {code, message, details}}` for an expected
refusal (the Debit function's error contract, mapped by `transport.responses`). Only
unexpected failures raise, so Lambda reports them as function errors.

Operations and their request models: `OPERATIONS` (`domain.admin_commands`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from serverless_credits.domain import admin_commands as requests
from serverless_credits.domain.errors import CreditsError, ValidationFailed
from serverless_credits.domain.models import Account, ApiKeyMapping, LedgerEntry, utc_now
from serverless_credits.domain.money import exact_dump, exact_number
from serverless_credits.ledger.admin import (
    AccountHolds,
    AccountLots,
    Administration,
    ExpiredLots,
    MoneyResult,
    NewAccount,
    NewKey,
    Reconciled,
    RevokedKey,
)
from serverless_credits.ledger.event_replay import ReplayReport
from serverless_credits.reads.holds import hold_view, newest_first
from serverless_credits.reads.lot_listing import lot_views
from serverless_credits.reads.queries import balance_view, transaction_view
from serverless_credits.transport.responses import debit_error, validation_error

Json = dict[str, Any]


def _json(model: BaseModel) -> Json:
    # Decimals kept: the Lambda runtime writes each as its exact literal (docs/http-api.md).
    dumped: Json = exact_dump(model)
    return dumped


def account_view(account: Account) -> Json:
    """`accounts.show` and every account change: the balance view and the settings."""
    return {
        "accountId": account.account_id,
        "name": account.name,
        "plan": account.plan,
        **_json(balance_view(account)),
        "statusReason": account.status_reason,
        "overdraftLimit": exact_number(account.overdraft_limit),
        "email": account.email,
        "version": account.version,
        "createdAt": account.created_at.isoformat(),
        "updatedAt": account.updated_at.isoformat(),
        "updatedBy": account.updated_by,
    }


def _account(account: Account) -> Json:
    return {"account": account_view(account)}


def _accounts(accounts: list[Account]) -> Json:
    return {
        "accounts": [
            {
                "accountId": account.account_id,
                "name": account.name,
                "plan": account.plan,
                "status": account.status.value,
                "balance": exact_number(account.balance),
                "available": exact_number(account.available),
            }
            for account in accounts
        ]
    }


def _new_account(created: NewAccount) -> Json:
    account = created.account
    return {
        "accountId": account.account_id,
        "name": account.name,
        "plan": account.plan,
        "apiKey": created.api_key.get_secret_value(),  # shown this once, never stored
        "apiKeyId": created.api_key_id,
        "balance": exact_number(account.balance),
    }


def _new_key(key: NewKey) -> Json:
    return {
        "accountId": key.account_id,
        "apiKey": key.api_key.get_secret_value(),
        "apiKeyId": key.api_key_id,
        "plan": key.plan,
    }


def _rotated(key: NewKey) -> Json:
    return {**_new_key(key), "revoked": list(key.revoked)}


def _keys(mappings: list[ApiKeyMapping]) -> Json:
    return {
        "keys": [
            {
                "apiKeyId": mapping.api_key_id,
                "plan": mapping.plan,
                "createdAt": mapping.created_at.isoformat(),
                "createdBy": mapping.created_by,
            }
            for mapping in mappings
        ]
    }


def _money(done: MoneyResult) -> Json:
    opened = {"lotId": done.lot_id} if done.lot_id is not None else {}
    return {**_json(done.result), **opened, "idempotencyKey": done.idempotency_key}


def _balance(account: Account) -> Json:
    return {
        "accountId": account.account_id,
        "balance": exact_number(account.balance),
        "available": exact_number(account.available),
        "reserved": exact_number(account.reserved),
    }


def _lots(found: AccountLots) -> Json:
    """`lots.list`: the balance (the sum of the lots' remainders) and the lots in burn
    order (`reads.lot_listing`)."""
    return {
        **_balance(found.account),
        "lots": [_json(view) for view in lot_views(found.account, found.described, found.now)],
    }


def _expired_lots(done: ExpiredLots) -> Json:
    """`lots.expire`: each expired lot, what it held and what its expiry took (null:
    nothing: open holds reserve it, or it was gone meanwhile), and the balance after."""
    return {
        **_balance(done.account),
        "expiries": [
            {
                "lotId": step.lot_id,
                "remaining": exact_number(step.remaining),
                "expired": exact_number(step.result.amount) if step.result else None,
                "transactionId": step.result.transaction_id if step.result else None,
            }
            for step in done.steps
        ],
    }


def _entries(entries: list[LedgerEntry]) -> Json:
    return {"entries": [_json(transaction_view(entry)) for entry in entries]}


def _reconciled(done: Reconciled) -> Json:
    return {
        "accounts": len(done.reports),
        "filled": done.filled,
        "inconsistent": [report.as_dict() for report in done.inconsistent],
    }


def _revoked(key: RevokedKey) -> Json:
    return {"accountId": key.account_id, "apiKeyId": key.api_key_id, "revoked": True}


def _replayed(report: ReplayReport) -> Json:
    result: Json = {
        "received": report.received,
        "republished": report.republished,
        "failed": report.failed,
        "unreplayable": report.unreplayable,
    }
    if report.remaining is not None:
        result["remaining"] = report.remaining
    if report.unreplayable:
        result["note"] = (
            "unreplayable messages are Lambda's on-failure records (stream positions, no "
            "events): left in the queue; reconcile or redrive them within the stream's 24 h "
            "(docs/events.md)"
        )
    return result


def _holds(found: AccountHolds) -> Json:
    account, now = found.account, utc_now()
    return {
        "accountId": account.account_id,
        "reserved": exact_number(account.reserved),
        "available": exact_number(account.available),
        "holds": [
            _json(hold_view(hold_id, held, found.described.get(hold_id), now))
            for hold_id, held in newest_first(account)
        ],
    }


# name -> (request model, use case, result as JSON)
Operation = tuple[
    type[requests.AdminRequest],
    Callable[[Administration, Any], Any],
    Callable[[Any], Json],
]
OPERATIONS: dict[str, Operation] = {
    "accounts.create": (
        requests.CreateAccountRequest,
        Administration.create_account,
        _new_account,
    ),
    "accounts.show": (requests.ShowAccountRequest, Administration.show, _account),
    "accounts.list": (requests.ListAccountsRequest, Administration.list_accounts, _accounts),
    "accounts.suspend": (requests.SuspendRequest, Administration.suspend, _account),
    "accounts.reactivate": (requests.ReactivateRequest, Administration.reactivate, _account),
    "accounts.flag": (requests.FlagRequest, Administration.flag, _account),
    "accounts.unflag": (requests.UnflagRequest, Administration.unflag, _account),
    "accounts.set": (requests.SettingsRequest, Administration.configure, _account),
    "keys.create": (requests.CreateKeyRequest, Administration.create_key, _new_key),
    "keys.list": (requests.ListKeysRequest, Administration.list_keys, _keys),
    "keys.rotate": (requests.RotateKeysRequest, Administration.rotate_keys, _rotated),
    "keys.revoke": (requests.RevokeKeyRequest, Administration.revoke_key, _revoked),
    "credits.topup": (requests.TopUpRequest, Administration.top_up, _money),
    "credits.grant": (requests.GrantRequest, Administration.grant, _money),
    "credits.adjust": (requests.AdjustRequest, Administration.adjust, _money),
    "credits.refund": (requests.RefundRequest, Administration.refund, _money),
    "holds.list": (requests.HoldsRequest, Administration.holds, _holds),
    "holds.release": (requests.ReleaseHoldRequest, Administration.release_hold, _money),
    "lots.list": (requests.LotsRequest, Administration.lots, _lots),
    "lots.expire": (requests.ExpireLotsRequest, Administration.expire_lots, _expired_lots),
    "ledger.list": (requests.LedgerRequest, Administration.entries, _entries),
    "reconcile": (requests.ReconcileRequest, Administration.reconcile, _reconciled),
    "events.replay": (requests.ReplayEventsRequest, Administration.replay_events, _replayed),
}


def handle(event: Any, admin: Administration) -> Json:
    """Validate the request for its operation, run it, and answer its result or error."""
    if not isinstance(event, Mapping):
        return debit_error(ValidationFailed("The request must be a JSON object"))
    body = dict(event)
    name = body.pop("operation", None)
    if name not in OPERATIONS:
        return debit_error(
            ValidationFailed(
                f"operation must be one of: {', '.join(OPERATIONS)}", {"field": "operation"}
            )
        )
    model, use_case, render = OPERATIONS[name]
    try:
        request = model.model_validate(body)
        result = use_case(admin, request)
    except ValidationError as exc:
        return {"error": validation_error(exc)}
    except CreditsError as exc:
        return debit_error(exc)
    return render(result)


__all__ = ["OPERATIONS", "account_view", "handle"]
