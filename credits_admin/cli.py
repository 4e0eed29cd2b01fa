"""`credits-admin`: parse, build the AdminFunction request, invoke it, print the outcome.

Exit status: 0 on success; 1 when the AdminFunction refuses (validation errors included) or
cannot be reached or fails; 2 on usage errors (argparse)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from credits_admin import parsing
from credits_admin.output import Printer
from credits_admin.requests import AdminRequest
from credits_admin.targets import InvokeFailed, Invoker, Target, TargetError, connect

OK, REFUSED, USAGE = 0, 1, 2

Connect = Callable[[Target], Invoker]


def main(
    argv: Sequence[str] | None = None,
    *,
    connect_to: Connect = connect,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        args = parsing.parse(argv)
    except SystemExit as exit_:  # argparse: --help (0) or a usage error (2)
        return int(exit_.code or 0) if isinstance(exit_.code, int) else USAGE
    printer = Printer(as_json=args.json, stdout=stdout, stderr=stderr)
    request: AdminRequest = args.build(args)
    target = Target(
        local=args.local or args.stack_file is not None,
        stack_file=args.stack_file,
        stack_name=args.stack_name,
        region=args.region,
    )
    try:
        return run(request, target, printer, actor=args.actor, connect_to=connect_to)
    except BrokenPipeError:
        # The reader went away (`credits-admin ... | head`): stop quietly, as Unix tools
        # do. The request itself was made; what is unread is only output.
        if stdout is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return OK


def run(
    request: AdminRequest,
    target: Target,
    printer: Printer,
    *,
    actor: str | None,
    connect_to: Connect = connect,
) -> int:
    extra: dict[str, Any] = {}
    if request.generated_key is not None:
        extra["idempotencyKey"] = request.generated_key
        if not printer.as_json:
            printer.note(
                f"idempotency key: {request.generated_key} "
                f"(to retry this very command: --idempotency-key {request.generated_key})"
            )
    try:
        invoker = connect_to(target)
        response = invoker.invoke(request.payload(actor or invoker.default_actor()))
    except (TargetError, InvokeFailed) as exc:
        kind = "UNAVAILABLE" if isinstance(exc, TargetError) else "FUNCTION_ERROR"
        printer.refusal({"code": kind, "message": str(exc), "details": {}}, extra)
        return REFUSED
    if not isinstance(response, dict):
        printer.refusal(
            {"code": "FUNCTION_ERROR", "message": f"unexpected response: {response!r}"}, extra
        )
        return REFUSED
    if "error" in response:
        error = response["error"] if isinstance(response["error"], dict) else {}
        printer.refusal(error, extra)
        return REFUSED
    if request.operation in ("accounts.create", "keys.create", "keys.rotate") and (
        not printer.as_json
    ):
        printer.note("The API key is shown only now: store it safely.")
    if not printer.as_json and isinstance(response.get("note"), str):
        response = dict(response)
        printer.note(response.pop("note"))  # a sentence, not a table cell
    if printer.as_json:  # the generated key is a field of the one object (stderr otherwise)
        response = {**response, **{k: v for k, v in extra.items() if k not in response}}
    printer.result(response)
    return OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
