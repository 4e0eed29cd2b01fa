"""The command line: global options (before the command), then `<group> <command> ...`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TypeAlias

from credits_admin import requests, values

PROG = "credits-admin"
PLANS = ("free", "pro")
DESCRIPTION = (
    "Operate Serverless Credits: accounts, API keys, credits and their lots, the ledger, "
    "balance events. "
    "Invokes the "
    "AdminFunction of a deployed stack (--stack-name) or of the local stack (--local)."
)
EPILOG = (
    "Exit status: 0 success, 1 refused or invalid (message on stderr), 2 usage error. "
    "Money commands take --idempotency-key; without one a key is generated and printed: "
    "re-run the same command with it to retry safely. See docs/operators.md."
)


class Parser(argparse.ArgumentParser):
    """No abbreviations: `--low-bal 5` must not silently mean `--low-balance-threshold`."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description=DESCRIPTION, epilog=EPILOG)
    target = parser.add_argument_group("target (one of)")
    target.add_argument(
        "--local",
        action="store_true",
        help="the local stack described by .local/stack.json in the current directory",
    )
    target.add_argument(
        "--stack-file",
        type=Path,
        metavar="PATH",
        help="the local stack described by PATH (implies --local)",
    )
    target.add_argument(
        "--stack-name", metavar="NAME", help="a deployed stack (output AdminFunctionName)"
    )
    target.add_argument("--region", metavar="R", help="the deployed stack's region")
    output = parser.add_argument_group("output and identity")
    output.add_argument(
        "--json", action="store_true", help="print exactly one JSON object on stdout"
    )
    output.add_argument(
        "--actor",
        metavar="WHO",
        help="who is acting, recorded with each change (default: user@host locally, "
        "the STS caller ARN against AWS)",
    )
    groups = parser.add_subparsers(
        dest="group", metavar="COMMAND", required=True, parser_class=Parser
    )
    _accounts(groups)
    _keys(groups)
    _credits(groups)
    _holds(groups)
    _lots(groups)
    ledger = groups.add_parser("ledger", help="an account's ledger, newest first")
    ledger.add_argument("account_id", metavar="ID")
    ledger.add_argument("--limit", type=values.positive_int, metavar="N", help="1..100 (20)")
    ledger.set_defaults(build=requests.ledger_list)
    reconcile = groups.add_parser(
        "reconcile", help="check accounts against their ledgers; fill missing entries"
    )
    which = reconcile.add_mutually_exclusive_group(required=True)
    which.add_argument("account_id", metavar="ID", nargs="?")
    which.add_argument("--all", action="store_true", help="every account")
    reconcile.set_defaults(build=requests.reconcile)
    _events(groups)
    return parser


Commands: TypeAlias = "argparse._SubParsersAction[Parser]"


def _sub(groups: Commands, name: str, help_: str) -> Commands:
    sub = groups.add_parser(name, help=help_)
    commands: Commands = sub.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=Parser
    )
    return commands


def _accounts(groups: Commands) -> None:
    commands = _sub(groups, "accounts", "accounts")
    create = commands.add_parser("create", help="a new account and its API key")
    create.add_argument("--name", required=True)
    create.add_argument("--plan", choices=PLANS, help="usage plan (free)")
    create.add_argument("--credits", type=values.amount, metavar="AMOUNT", help="opening credits")
    create.add_argument("--currency", metavar="CUR", help="ISO code of the credit price (USD)")
    create.add_argument(
        "--credit-price", type=values.amount, metavar="P", help="price of one credit (0.01)"
    )
    create.set_defaults(build=requests.accounts_create)

    show = commands.add_parser("show", help="one account")
    show.add_argument("account_id", metavar="ID")
    show.set_defaults(build=requests.accounts_show)

    listing = commands.add_parser("list", help="accounts")
    listing.add_argument("--limit", type=values.positive_int, metavar="N", help="1..1000 (100)")
    listing.set_defaults(build=requests.accounts_list)

    suspend = commands.add_parser("suspend", help="refuse debits (reads keep working)")
    suspend.add_argument("account_id", metavar="ID")
    suspend.add_argument("--reason", required=True, metavar="TEXT")
    suspend.set_defaults(build=requests.accounts_suspend)

    reactivate = commands.add_parser("reactivate", help="accept debits again")
    reactivate.add_argument("account_id", metavar="ID")
    reactivate.add_argument("--reason", metavar="TEXT")
    reactivate.set_defaults(build=requests.accounts_reactivate)

    flag = commands.add_parser("flag", help="mark an account with a fraud warning")
    flag.add_argument("account_id", metavar="ID")
    flag.add_argument("--warning", required=True, metavar="TEXT")
    flag.set_defaults(build=requests.accounts_flag)

    unflag = commands.add_parser("unflag", help="clear the fraud warning")
    unflag.add_argument("account_id", metavar="ID")
    unflag.set_defaults(build=requests.accounts_unflag)

    settings = commands.add_parser("set", help="change an account's settings")
    settings.add_argument("account_id", metavar="ID")
    settings.add_argument("--low-balance-threshold", type=values.amount, metavar="X")
    settings.add_argument("--auto-reload", type=values.switch, metavar="on|off")
    settings.add_argument("--auto-reload-threshold", type=values.amount, metavar="X")
    settings.add_argument("--auto-reload-amount", type=values.amount, metavar="Y")
    settings.add_argument("--overdraft-limit", type=values.amount, metavar="Z")
    settings.add_argument("--plan", choices=PLANS, metavar="P", help="free or pro")
    settings.set_defaults(build=requests.accounts_set, settings_parser=settings)


def _keys(groups: Commands) -> None:
    commands = _sub(groups, "keys", "API keys")
    for name, help_, build in (
        ("create", "another API key for the account", requests.keys_create),
        ("list", "the account's key ids (never values)", requests.keys_list),
        ("rotate", "a new key; the old ones stop working", requests.keys_rotate),
    ):
        command = commands.add_parser(name, help=help_)
        command.add_argument("account_id", metavar="ID")
        command.set_defaults(build=build)
    revoke = commands.add_parser("revoke", help="a key stops working")
    revoke.add_argument("account_id", metavar="ID")
    revoke.add_argument("key_id", metavar="KEY_ID")
    revoke.set_defaults(build=requests.keys_revoke)


def _idempotency(command: Parser) -> None:
    command.add_argument(
        "--idempotency-key", metavar="K", help="retry safely with the same key (default: new)"
    )


def _lot_options(command: Parser, *, default_priority: int) -> None:
    """The credit lot a top-up or grant opens (docs/lots.md)."""
    command.add_argument(
        "--priority",
        type=values.priority,
        metavar="0..100",
        help=f"higher is spent first ({default_priority})",
    )
    expiry = command.add_mutually_exclusive_group()
    expiry.add_argument(
        "--expires-at",
        type=values.timestamp,
        metavar="ISO8601",
        help="when what is left expires (at least 5 minutes ahead; default: never)",
    )
    expiry.add_argument("--expires-in", type=values.duration, metavar="DURATION", help="e.g. 30d")


def _credits(groups: Commands) -> None:
    commands = _sub(groups, "credits", "money")
    topup = commands.add_parser("topup", help="purchased credits")
    topup.add_argument("account_id", metavar="ID")
    topup.add_argument("amount", type=values.amount, metavar="AMOUNT")
    topup.add_argument("--reference", metavar="REF", help="purchase order or payment id")
    topup.add_argument("--description", metavar="TEXT")
    _lot_options(topup, default_priority=50)
    _idempotency(topup)
    topup.set_defaults(build=requests.credits_topup)

    grant = commands.add_parser("grant", help="promotional credits")
    grant.add_argument("account_id", metavar="ID")
    grant.add_argument("amount", type=values.amount, metavar="AMOUNT")
    grant.add_argument("--reference", metavar="REF")
    grant.add_argument("--description", metavar="TEXT")
    _lot_options(grant, default_priority=60)
    _idempotency(grant)
    grant.set_defaults(build=requests.credits_grant)

    adjust = commands.add_parser("adjust", help="a correction, up or down (AMOUNT may be < 0)")
    adjust.add_argument("account_id", metavar="ID")
    adjust.add_argument("amount", type=values.amount, metavar="AMOUNT")
    adjust.add_argument("--reason", required=True, metavar="TEXT")
    _idempotency(adjust)
    adjust.set_defaults(build=requests.credits_adjust)

    refund = commands.add_parser("refund", help="all or part of a debit")
    refund.add_argument("account_id", metavar="ID")
    refund.add_argument("transaction_id", metavar="TRANSACTION_ID")
    refund.add_argument(
        "--amount", type=values.amount, metavar="X", help="default: all that is left"
    )
    refund.add_argument("--reason", metavar="TEXT")
    _idempotency(refund)
    refund.set_defaults(build=requests.credits_refund)


def _holds(groups: Commands) -> None:
    commands = _sub(groups, "holds", "credits set aside by services (reserve, then capture)")
    listing = commands.add_parser("list", help="an account's open holds, newest first")
    listing.add_argument("account_id", metavar="ID")
    listing.set_defaults(build=requests.holds_list)
    release = commands.add_parser(
        "release",
        help="give a hold's credits back (a service that will never capture it)",
    )
    release.add_argument("account_id", metavar="ID")
    release.add_argument("hold_id", metavar="HOLD_ID")
    release.add_argument("--reason", metavar="TEXT")
    _idempotency(release)
    release.set_defaults(build=requests.holds_release)


def _lots(groups: Commands) -> None:
    commands = _sub(groups, "lots", "credit lots (each top-up and grant is one)")
    listing = commands.add_parser(
        "list",
        help="an account's lots in burn order, with its balance",
        description=(
            "The account's lots, in the order debits burn them: highest priority, then "
            "soonest expiry (none last), then oldest. Status: active; expired (never spent "
            "again, the next sweep removes it); pinned (expired, reserved by open holds); "
            "overdraft (the account's debt). See docs/lots.md."
        ),
    )
    listing.add_argument("account_id", metavar="ID")
    listing.set_defaults(build=requests.lots_list)
    expire = commands.add_parser(
        "expire",
        help="expire the account's expired lots now (instead of the next sweep)",
    )
    expire.add_argument("account_id", metavar="ID")
    expire.set_defaults(build=requests.lots_expire)


def _events(groups: Commands) -> None:
    commands = _sub(groups, "events", "balance events")
    replay = commands.add_parser(
        "replay",
        help="publish again the events the bus refused (the event replay queue)",
        description=(
            "Receive up to N messages of the event replay queue, publish their events again "
            "(same detail.eventId: consumers drop duplicates) and delete each message whose "
            "events the bus accepted. Lambda's on-failure records (stream positions, no "
            "events) are counted 'unreplayable' and left: reconcile or redrive them within "
            "the stream's 24 hours (docs/events.md)."
        ),
    )
    replay.add_argument("--limit", type=values.positive_int, metavar="N", help="1..100 (10)")
    replay.set_defaults(build=requests.events_replay)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.stack_name is not None and (args.local or args.stack_file is not None):
        parser.error("choose one target: --local/--stack-file or --stack-name")
    if args.stack_name is None and not args.local and args.stack_file is None:
        parser.error("choose a target: --local (the local stack) or --stack-name NAME")
    settings_given = any(getattr(args, option, None) is not None for option in requests.SETTINGS)
    if (args.group, getattr(args, "command", None)) == ("accounts", "set") and not settings_given:
        args.settings_parser.error(
            "give at least one setting: "
            + ", ".join("--" + option.replace("_", "-") for option in requests.SETTINGS)
        )
    return args
