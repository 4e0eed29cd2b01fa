"""Operator use cases (the AdminFunction): accounts, their API keys, and money moved by hand.

Money goes through the ledger's own operations (top-up, grant, adjustment, refund: the one
write path, idempotent by key) with the operator as the entry's `actor`. Account changes are
settings updates of the account item that record who (`updatedBy`) and why (`statusReason`).
Keys are issued through `Provisioner` on the account's plan's usage plan and listed per
account; a rotation issues the new key before it revokes the old ones.

Credits come in lots (`domain.lots`, docs/lots.md): a top-up or grant opens one with the
operator's `priority` and `expiresAt` (or the defaults), and the result names it. Operators
list an account's lots (`lots.list`) and may expire its expired lots at once (`lots.expire`)
instead of waiting for the ExpirerFunction's sweep.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from pydantic import SecretStr
from pydantic.alias_generators import to_camel

from serverless_credits.domain.admin_commands import (
    AdjustRequest,
    CreateAccountRequest,
    CreateKeyRequest,
    ExpireLotsRequest,
    FlagRequest,
    GrantRequest,
    HoldsRequest,
    LedgerRequest,
    ListAccountsRequest,
    ListKeysRequest,
    LotsRequest,
    MoneyRequest,
    ReactivateRequest,
    ReconcileRequest,
    RefundRequest,
    ReleaseHoldRequest,
    ReplayEventsRequest,
    RevokeKeyRequest,
    RotateKeysRequest,
    SettingsRequest,
    ShowAccountRequest,
    SuspendRequest,
    TopUpRequest,
    UnflagRequest,
)
from serverless_credits.domain.commands import (
    AdjustmentCommand,
    CreateAccountCommand,
    CreditCommand,
    RefundCommand,
    ReleaseCommand,
)
from serverless_credits.domain.errors import ApiKeyNotFound, ValidationFailed
from serverless_credits.domain.lots import OVERDRAFT_LOT, expired_lots
from serverless_credits.domain.models import (
    Account,
    AccountStatus,
    ApiKeyMapping,
    Hold,
    LedgerEntry,
    Lot,
    OperationResult,
    utc_now,
)
from serverless_credits.domain.money import normalize
from serverless_credits.ledger.event_replay import EventReplayer, ReplayReport
from serverless_credits.ledger.operations import OPENING_BALANCE_KEY, Ledger
from serverless_credits.ledger.ports import Accounts
from serverless_credits.ledger.provisioning import ApiKeyIssuer, IssuedKey, Provisioner, Tier
from serverless_credits.ledger.reconciler import AccountReport

logger = logging.getLogger(__name__)

ACCOUNT_ID_PREFIX = "acct_"
_MONEY_ACTIONS = {
    "TopUpRequest": "credits.topup",
    "GrantRequest": "credits.grant",
    "AdjustRequest": "credits.adjust",
    "RefundRequest": "credits.refund",
}


# ---------------------------------------------------------------- ports
class KeyManager(ApiKeyIssuer, Protocol):
    """API Gateway's keys as operators need them (`integrations.apigateway_keys`)."""

    def move(self, api_key_id: str, *, from_tier: Tier, to_tier: Tier) -> None:
        """Put a key on another tier's usage plan (and off its old one)."""
        ...


class AccountKeys(Protocol):
    """Each account's keys (`storage.api_keys`)."""

    def put_api_key_mapping(self, mapping: ApiKeyMapping) -> None: ...
    def for_account(self, account_id: str) -> list[ApiKeyMapping]: ...
    def get(self, account_id: str, api_key_id: str) -> ApiKeyMapping | None: ...
    def remove(self, account_id: str, api_key_id: str) -> None: ...


class AccountList(Protocol):
    def accounts(self) -> list[Account]: ...


class EntryPages(Protocol):
    def page(
        self, account_id: str, *, limit: int, newest_first: bool = True
    ) -> tuple[list[LedgerEntry], int | None]: ...


class Reconciliation(Protocol):
    def account(self, account_id: str) -> AccountReport: ...
    def all(self) -> list[AccountReport]: ...


# ---------------------------------------------------------------- results
@dataclass(frozen=True)
class NewKey:
    account_id: str
    api_key_id: str
    api_key: SecretStr
    plan: str
    revoked: tuple[str, ...] = ()


@dataclass(frozen=True)
class NewAccount:
    account: Account
    api_key_id: str
    api_key: SecretStr


@dataclass(frozen=True)
class RevokedKey:
    account_id: str
    api_key_id: str


@dataclass(frozen=True)
class MoneyResult:
    result: OperationResult
    idempotency_key: str
    # The lot a top-up, grant or upward adjustment opened (None: none, or another kind).
    lot_id: str | None = None


@dataclass(frozen=True)
class AccountLots:
    """An account's active lots: its item (the `lots` map decides what is left of each)
    and the LOT items of those the stream has recorded, as of `now`."""

    account: Account
    described: dict[str, Lot]
    now: datetime


@dataclass(frozen=True)
class LotExpiry:
    """One expired lot as `lots.expire` found it, and its expiry (None: nothing taken:
    open holds reserve what it holds, or it was spent or swept meanwhile)."""

    lot_id: str
    remaining: Decimal
    result: OperationResult | None


@dataclass(frozen=True)
class ExpiredLots:
    account: Account  # after the expiries
    steps: tuple[LotExpiry, ...]


@dataclass(frozen=True)
class AccountHolds:
    """An account's open holds: its item (the `holds` map decides) and their HOLD items."""

    account: Account
    described: dict[str, Hold]


@dataclass(frozen=True)
class Reconciled:
    reports: list[AccountReport]

    @property
    def filled(self) -> int:
        return sum(len(report.filled) for report in self.reports)

    @property
    def inconsistent(self) -> list[AccountReport]:
        return [report for report in self.reports if not report.consistent]


class _StampedKeys:
    """The key list, stamping each new key with the operator who issued it."""

    def __init__(self, keys: AccountKeys, actor: str) -> None:
        self._keys = keys
        self._actor = actor

    def put_api_key_mapping(self, mapping: ApiKeyMapping) -> None:
        self._keys.put_api_key_mapping(mapping.model_copy(update={"created_by": self._actor}))


def _tier(plan: str) -> Tier:
    try:
        return Tier(plan)
    except ValueError:
        raise ValidationFailed(
            f"The account's plan {plan!r} has no usage plan", {"field": "plan"}
        ) from None


# ---------------------------------------------------------------- use cases
class Administration:
    def __init__(
        self,
        *,
        ledger: Ledger,
        accounts: Accounts,
        directory: AccountList,
        keys: AccountKeys,
        issuer: Callable[[], KeyManager],
        entries: EntryPages,
        reconciler: Callable[[], Reconciliation],
        clock: Callable[[], datetime] = utc_now,
        new_account_id: Callable[[], str] | None = None,
        replayer: Callable[[], EventReplayer] | None = None,
    ) -> None:
        self._ledger = ledger
        self._accounts = accounts
        self._directory = directory
        self._keys = keys
        self._issuer = issuer  # built on first use: only key operations need API Gateway
        self._entries = entries
        self._reconciler = reconciler
        self._clock = clock
        self._new_account_id = new_account_id or _random_account_id
        self._replayer = replayer  # built on first use: only `events.replay` needs SQS

    # ------------------------------------------------------------ accounts
    def create_account(self, request: CreateAccountRequest) -> NewAccount:
        tier = Tier(request.plan.value)
        command = CreateAccountCommand(
            account_id=self._new_account_id(),
            currency=request.currency,
            credit_price=request.credit_price,
            plan=tier.value,
        )
        provisioner = Provisioner(
            self._ledger, _StampedKeys(self._keys, request.actor), clock=self._clock
        )
        provisioned = provisioner.provision_account(command, tier, issuer=self._issuer())
        account_id = provisioned.account.account_id
        account = self._update(account_id, request.actor, {"name": request.name})
        if request.credits is not None:
            self._ledger.grant(
                CreditCommand(
                    account_id=account_id,
                    idempotency_key=request.idempotency_key or OPENING_BALANCE_KEY,
                    amount=request.credits,
                    description="Opening balance",
                    actor=request.actor,
                )
            )
            account = self._ledger.account(account_id)
        self._log("accounts.create", request.actor, account_id, plan=tier.value)
        return NewAccount(account, provisioned.api_key_id, provisioned.api_key)

    def show(self, request: ShowAccountRequest) -> Account:
        return self._ledger.account(request.account_id)

    def list_accounts(self, request: ListAccountsRequest) -> list[Account]:
        found = sorted(
            self._directory.accounts(),
            key=lambda account: (account.created_at, account.account_id),
            reverse=True,
        )
        return found[: request.limit]

    def suspend(self, request: SuspendRequest) -> Account:
        return self._change(
            request.account_id,
            request.actor,
            "accounts.suspend",
            status=AccountStatus.SUSPENDED,
            status_reason=request.reason,
        )

    def reactivate(self, request: ReactivateRequest) -> Account:
        return self._change(
            request.account_id,
            request.actor,
            "accounts.reactivate",
            status=AccountStatus.ACTIVE,
            status_reason=request.reason,
        )

    def flag(self, request: FlagRequest) -> Account:
        return self._change(
            request.account_id,
            request.actor,
            "accounts.flag",
            flagged=True,
            fraud_warning=request.warning,
        )

    def unflag(self, request: UnflagRequest) -> Account:
        return self._change(
            request.account_id, request.actor, "accounts.unflag", flagged=False, fraud_warning=None
        )

    def configure(self, request: SettingsRequest) -> Account:
        """`accounts.set`: the given settings, checked against the account as it is."""
        account = self._ledger.account(request.account_id)
        changes: dict[str, Any] = {
            name: getattr(request, name)
            for name in ("name", "low_balance_threshold", "overdraft_limit")
            if getattr(request, name) is not None
        }
        reload_fields = {
            "auto_reload_enabled": request.auto_reload,
            "auto_reload_threshold": request.auto_reload_threshold,
            "auto_reload_amount": request.auto_reload_amount,
        }
        changes.update({name: value for name, value in reload_fields.items() if value is not None})
        if changes.get("auto_reload_enabled", account.auto_reload_enabled):
            for name in ("auto_reload_threshold", "auto_reload_amount"):
                if changes.get(name, getattr(account, name)) is None:
                    raise ValidationFailed(
                        f"autoReload on needs {to_camel(name)}", {"field": to_camel(name)}
                    )
        if request.plan is not None and request.plan.value != account.plan:
            self._move_keys(account, _tier(account.plan), Tier(request.plan.value))
            changes["plan"] = request.plan.value
        return self._change(request.account_id, request.actor, "accounts.set", **changes)

    # ------------------------------------------------------------ keys
    def create_key(self, request: CreateKeyRequest) -> NewKey:
        account = self._ledger.account(request.account_id)
        key = self._issue(account, request.actor)
        self._log("keys.create", request.actor, account.account_id, apiKeyId=key.api_key_id)
        return NewKey(account.account_id, key.api_key_id, key.value, account.plan)

    def list_keys(self, request: ListKeysRequest) -> list[ApiKeyMapping]:
        self._ledger.account(request.account_id)
        return self._keys.for_account(request.account_id)

    def rotate_keys(self, request: RotateKeysRequest) -> NewKey:
        """Issue a new key, then revoke every other key of the account: the old keys stop
        working only once the new one exists."""
        account = self._ledger.account(request.account_id)
        older = self._keys.for_account(account.account_id)
        key = self._issue(account, request.actor)
        issuer = self._issuer()
        revoked = []
        for mapping in older:
            if mapping.api_key_id != key.api_key_id:
                issuer.revoke(mapping.api_key_id)
                self._keys.remove(account.account_id, mapping.api_key_id)
                revoked.append(mapping.api_key_id)
        self._log(
            "keys.rotate",
            request.actor,
            account.account_id,
            apiKeyId=key.api_key_id,
            revoked=revoked,
        )
        return NewKey(account.account_id, key.api_key_id, key.value, account.plan, tuple(revoked))

    def revoke_key(self, request: RevokeKeyRequest) -> RevokedKey:
        self._ledger.account(request.account_id)
        if self._keys.get(request.account_id, request.api_key_id) is None:
            raise ApiKeyNotFound(request.account_id, request.api_key_id)
        self._issuer().revoke(request.api_key_id)  # stops working at the gateway first
        self._keys.remove(request.account_id, request.api_key_id)
        self._log("keys.revoke", request.actor, request.account_id, apiKeyId=request.api_key_id)
        return RevokedKey(request.account_id, request.api_key_id)

    # ------------------------------------------------------------ credits
    def top_up(self, request: TopUpRequest) -> MoneyResult:
        """Purchased credits, in a new lot (the ledger checks `expiresAt`:
        `domain.lots.check_lot_expiry`)."""
        return self._opened(request, self._ledger.top_up(_credit_command(request)))

    def grant(self, request: GrantRequest) -> MoneyResult:
        """Promotional credits, in a new lot."""
        return self._opened(request, self._ledger.grant(_credit_command(request)))

    def adjust(self, request: AdjustRequest) -> MoneyResult:
        """A correction: upward it opens a lot (named in the result), downward it burns
        lots in order."""
        return self._opened(
            request,
            self._ledger.adjust(
                AdjustmentCommand(
                    account_id=request.account_id,
                    idempotency_key=request.idempotency_key,
                    amount=request.amount,
                    reason=request.reason,
                    actor=request.actor,
                )
            ),
        )

    def refund(self, request: RefundRequest) -> MoneyResult:
        return self._money(
            request,
            self._ledger.refund(
                RefundCommand(
                    account_id=request.account_id,
                    idempotency_key=request.idempotency_key,
                    transaction_id=request.transaction_id,
                    amount=request.amount,
                    reason=request.reason,
                    actor=request.actor,
                )
            ),
        )

    # ------------------------------------------------------------ holds
    def holds(self, request: HoldsRequest) -> AccountHolds:
        account, described = self._ledger.holds.open_holds(request.account_id)
        return AccountHolds(account, described)

    def release_hold(self, request: ReleaseHoldRequest) -> MoneyResult:
        result = self._ledger.holds.release(
            ReleaseCommand(
                account_id=request.account_id,
                idempotency_key=request.idempotency_key,
                hold_id=request.hold_id,
                description=request.reason or "Released by an operator",
            ),
            actor=request.actor,
        )
        self._log("release hold", request.actor, request.account_id, holdId=request.hold_id)
        return MoneyResult(result, request.idempotency_key)

    # ------------------------------------------------------------ lots
    def lots(self, request: LotsRequest) -> AccountLots:
        """The account's active lots (its item's `lots` map, strongly consistent) and
        what each was granted as (LOT items, written from the stream)."""
        account, described = self._ledger.lots.active(request.account_id)
        return AccountLots(account, described, self._clock())

    def expire_lots(self, request: ExpireLotsRequest) -> ExpiredLots:
        """Expire now each lot of the account past its `expiresAt`, as the next sweep
        would (`ledger.lots.LotOperations.expire`: idempotent, at most what is available;
        what open holds reserve stays pinned)."""
        account = self._ledger.account(request.account_id)
        steps = []
        for lot_id in expired_lots(account, self._clock()):
            remaining = (account.lots or {}).get(lot_id, Decimal(0))
            result = self._ledger.lots.expire(request.account_id, lot_id, actor=request.actor)
            steps.append(LotExpiry(lot_id, normalize(remaining), result))
        after = self._ledger.account(request.account_id)
        self._log(
            "lots.expire",
            request.actor,
            request.account_id,
            expired=[step.lot_id for step in steps if step.result is not None],
        )
        return ExpiredLots(after, tuple(steps))

    # ------------------------------------------------------------ ledger
    def entries(self, request: LedgerRequest) -> list[LedgerEntry]:
        self._ledger.account(request.account_id)
        found, _ = self._entries.page(request.account_id, limit=request.limit)
        return found

    def reconcile(self, request: ReconcileRequest) -> Reconciled:
        reconciler = self._reconciler()
        if request.account_id is not None:
            return Reconciled([reconciler.account(request.account_id)])
        return Reconciled(reconciler.all())

    # ------------------------------------------------------------ events
    def replay_events(self, request: ReplayEventsRequest) -> ReplayReport:
        """Re-publish what the event replay queue holds (`ledger.event_replay`)."""
        if self._replayer is None:
            raise RuntimeError("no event replay queue is configured")
        report = self._replayer().replay(request.limit)
        logger.info(
            "operator action",
            extra={
                "action": "events.replay",
                "actor": request.actor,
                "received": report.received,
                "republished": report.republished,
                "failed": report.failed,
                "unreplayable": report.unreplayable,
            },
        )
        return report

    # ------------------------------------------------------------ helpers
    def _issue(self, account: Account, actor: str) -> IssuedKey:
        provisioner = Provisioner(self._ledger, _StampedKeys(self._keys, actor), clock=self._clock)
        return provisioner.issue_api_key(
            account.account_id, _tier(account.plan), issuer=self._issuer()
        )

    def _move_keys(self, account: Account, old: Tier, new: Tier) -> None:
        issuer = self._issuer()
        for mapping in self._keys.for_account(account.account_id):
            issuer.move(mapping.api_key_id, from_tier=old, to_tier=new)
            self._keys.put_api_key_mapping(mapping.model_copy(update={"plan": new.value}))

    def _change(self, account_id: str, actor: str, action: str, **changes: Any) -> Account:
        account = self._update(account_id, actor, changes)
        self._log(action, actor, account_id, **{to_camel(k): v for k, v in changes.items()})
        return account

    def _update(self, account_id: str, actor: str, changes: Mapping[str, Any]) -> Account:
        stored = {to_camel(name): value for name, value in changes.items()}
        stored.update(updatedBy=actor, updatedAt=self._clock())
        return self._accounts.update_settings(account_id, stored)

    def _money(
        self, request: MoneyRequest, result: OperationResult, lot_id: str | None = None
    ) -> MoneyResult:
        if not result.replayed:
            self._log(
                _MONEY_ACTIONS.get(type(request).__name__, "credits"),
                request.actor,
                request.account_id,
                transactionId=result.transaction_id,
                amount=str(result.amount),
                **({"lotId": lot_id} if lot_id is not None else {}),
            )
        return MoneyResult(result, request.idempotency_key, lot_id)

    def _opened(self, request: MoneyRequest, result: OperationResult) -> MoneyResult:
        """A credit's result, naming the lot it opened."""
        return self._money(request, result, opened_lot(result))

    @staticmethod
    def _log(action: str, actor: str, account_id: str, **details: Any) -> None:
        logger.info(
            "operator action",
            extra={
                "action": action,
                "actor": actor,
                "accountId": account_id,
                **{k: str(v) if isinstance(v, Decimal) else v for k, v in details.items()},
            },
        )


def _credit_command(request: TopUpRequest) -> CreditCommand:
    return CreditCommand(
        account_id=request.account_id,
        idempotency_key=request.idempotency_key,
        amount=request.amount,
        description=request.description,
        reference=request.reference,
        actor=request.actor,
        priority=request.priority,
        expires_at=request.expires_at,
    )


def opened_lot(result: OperationResult) -> str | None:
    """The lot a credit (top-up, grant, upward adjustment) opened: its one positive share
    besides the overdraft's; None when the whole amount repaid an overdraft."""
    opened = [
        lot_id
        for lot_id, share in (result.lots or {}).items()
        if lot_id != OVERDRAFT_LOT and share > 0
    ]
    return opened[0] if len(opened) == 1 else None


def _random_account_id() -> str:
    return f"{ACCOUNT_ID_PREFIX}{secrets.token_hex(8)}"


__all__ = [
    "AccountKeys",
    "AccountList",
    "AccountLots",
    "Administration",
    "EntryPages",
    "ExpiredLots",
    "KeyManager",
    "LotExpiry",
    "MoneyResult",
    "NewAccount",
    "NewKey",
    "Reconciled",
    "Reconciliation",
    "RevokedKey",
]
