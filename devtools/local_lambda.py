"""The template's functions, run in this process, and Lambda's Invoke API in front of them.

`sam local start-lambda` for this project without Docker: `boto3.client("lambda",
endpoint_url=...).invoke(FunctionName="DebitFunction", Payload=...)` works unchanged against
`lambda_invoke_app`. Function names are the template's logical IDs; code directory, handler
and environment come from `template.yaml` (`devtools.template.functions`), and the shared
layer's directory is put on `sys.path` as Lambda mounts a layer under /opt/python.

Environment: all functions run in one process, so they share `os.environ`. The runtime uses
the *union* of the functions' template environments (Globals merged, Refs substituted,
Secrets Manager dynamic references replaced by local random secrets), applied once for the
stack's lifetime by `devtools.local_stack`, and refuses to start when two functions give one
variable different values. Chosen over swapping each function's own environment in under a
lock around every invocation because:
- a swap serialises every request of every function, and deadlocks a function that invokes
  another one through this Invoke API (ExampleConsumerFunction -> DebitFunction);
- `serverless_credits.wiring` builds its process-wide settings, client and caches once, from
  one environment, exactly as one warm Lambda environment does; a swap would have to reset them
  whenever the function changes.
The price: a function also sees variables only another function declares (today
CURSOR_SIGNING_KEY and DEBIT_FUNCTION_NAME). The per-function view stays checkable with
`sam local invoke --env-vars env.json` (docs/local-development.md).

Concurrency: each function handles one invocation at a time, like one warm execution
environment (handler modules keep per-request state in module-level objects such as
Powertools' resolver); different functions run concurrently. Process-wide state a Lambda
environment would own alone is made per function: Powertools keeps every `Metrics`
instance's metrics in one class-level set, so each function's module-level `Metrics` gets a
set of its own (`isolate_metrics`), else one function's flush would publish and clear
another's metrics mid-invocation and fail it (the occasional 502 of issue 15).

Errors come back as Lambda reports them: an exception is `X-Amz-Function-Error: Unhandled`
with `errorMessage` and `errorType`; an unknown function is ResourceNotFoundException (404).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import re
import secrets
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from devtools import template
from devtools.template import FunctionSpec

LOGGER = logging.getLogger("devtools.local_lambda")
LOCAL_ACCOUNT_ID = "123456789012"  # the account id sam local uses
LOCAL_REGION = "us-east-1"
_SECRET_REFERENCE = re.compile(r"\{\{resolve:secretsmanager:((?:\$\{[^}]*\}|[^:}])+)[^}]*\}\}")
_ANY_DYNAMIC_REFERENCE = re.compile(r"\{\{resolve:[^}]*\}\}")

Handler = Callable[[Any, Any], Any]


# ---------------------------------------------------------------- template
def layer_dirs() -> list[Path]:
    """The content directories of the template's layers (`AWS::Serverless::LayerVersion`)."""
    resources: dict[str, Any] = template.load_template()["Resources"]
    return [
        template.PROJECT_ROOT / definition["Properties"]["ContentUri"]
        for definition in resources.values()
        if definition.get("Type") == "AWS::Serverless::LayerVersion"
    ]


def mount_layers() -> None:
    """Make the layers' code and the functions' packages importable, as Lambda does."""
    for directory in [*layer_dirs(), template.PROJECT_ROOT]:
        if str(directory) not in sys.path:
            sys.path.append(str(directory))


def _function_setting(logical_id: str, name: str, default: int) -> int:
    """`MemorySize`/`Timeout` of a template function (Globals merged)."""
    document = template.load_template()
    globals_ = document.get("Globals", {}).get("Function", {})
    properties = document["Resources"].get(logical_id, {}).get("Properties", {})
    return int(properties.get(name, globals_.get(name, default)))


def resolve_dynamic_references(value: str, local_secrets: dict[str, str]) -> str:
    """Replace `{{resolve:secretsmanager:...}}` with a random secret, one per secret name."""

    def secret(match: re.Match[str]) -> str:
        return local_secrets.setdefault(match.group(1), secrets.token_urlsafe(32))

    resolved = _SECRET_REFERENCE.sub(secret, value)
    if _ANY_DYNAMIC_REFERENCE.search(resolved):
        raise ValueError(f"the local stack cannot resolve {resolved!r}")
    return resolved


def union_environment(specs: Iterable[FunctionSpec]) -> dict[str, str]:
    """Every function's variables in one mapping; a variable with two values is an error."""
    merged: dict[str, str] = {}
    owners: dict[str, str] = {}
    for spec in specs:
        for name, value in spec.environment.items():
            if name in merged and merged[name] != value:
                raise ValueError(
                    f"{name} is {merged[name]!r} in {owners[name]} but {value!r} in "
                    f"{spec.logical_id}: the local stack runs all functions in one process"
                )
            merged[name], owners[name] = value, owners.get(name, spec.logical_id)
    return merged


# ---------------------------------------------------------------- invoking
class FunctionNotFoundError(LookupError):
    pass


class FunctionBusyError(RuntimeError):
    """The function's one execution environment stayed busy for a whole function timeout."""


@dataclass
class LocalContext:
    """The parts of Lambda's context object that handlers and Powertools read."""

    function_name: str
    aws_request_id: str
    memory_limit_in_mb: int
    timeout_seconds: int
    function_version: str = "$LATEST"
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return "$LATEST"

    def get_remaining_time_in_millis(self) -> int:
        elapsed = time.monotonic() - self.started
        return max(0, int((self.timeout_seconds - elapsed) * 1000))


@dataclass(frozen=True)
class Invocation:
    """What Lambda hands back: the JSON payload, and an error type when the function failed."""

    request_id: str
    payload: bytes
    error_type: str | None = None

    @property
    def failed(self) -> bool:
        return self.error_type is not None

    def json(self) -> Any:
        return json.loads(self.payload)


def _lambda_json(value: Any) -> bytes:
    """Serialise a result as the Python runtime (awslambdaric) does: `bytes` as they are,
    anything else as JSON in which a Decimal is written as its exact literal, never through
    a float (its marshaller writes `RawJSON(str(decimal))`; `money.dumps` writes the same
    number, normalised). Unlike the runtime, NaN and infinities are refused (a MarshalError
    here): no handler of this service may return them."""
    if isinstance(value, bytes):
        return value
    from serverless_credits.domain import money  # noqa: PLC0415  # a layer, mounted at run time

    return money.dumps(value).encode()


def _error_payload(error: BaseException, error_type: str, request_id: str) -> bytes:
    return json.dumps(
        {
            "errorMessage": str(error),
            "errorType": error_type,
            "requestId": request_id,
            "stackTrace": traceback.format_tb(error.__traceback__),
        }
    ).encode()


class FunctionRuntime:
    """Loads handlers on first use and invokes them in the calling thread."""

    def __init__(self, specs: Mapping[str, FunctionSpec]) -> None:
        self.specs = dict(specs)
        self._handlers: dict[str, Handler] = {}
        self._import_lock = threading.Lock()
        self._environments = {name: threading.Lock() for name in self.specs}

    @classmethod
    def from_template(cls, substitutions: Mapping[str, str]) -> FunctionRuntime:
        """The template's functions with `substitutions` for Refs and local secrets."""
        local_secrets: dict[str, str] = {}
        specs = {}
        for name, spec in template.functions(dict(substitutions)).items():
            environment = {
                key: resolve_dynamic_references(value, local_secrets)
                for key, value in spec.environment.items()
            }
            specs[name] = FunctionSpec(
                spec.logical_id, spec.code_dir, spec.handler, environment, spec.events
            )
        return cls(specs)

    def environment(self) -> dict[str, str]:
        return union_environment(self.specs.values())

    def spec(self, name: str) -> FunctionSpec:
        try:
            return self.specs[name]
        except KeyError:
            raise FunctionNotFoundError(name) from None

    def handler(self, name: str) -> Handler:
        spec = self.spec(name)
        with self._import_lock:
            if name not in self._handlers:
                module_name, _, attribute = spec.handler.rpartition(".")
                module = _load_module(spec, module_name)
                isolate_metrics(module)
                handler = getattr(module, attribute)
                self._handlers[name] = handler
            return self._handlers[name]

    def invoke(self, name: str, event: Any, request_id: str | None = None) -> Invocation:
        """Run one invocation; function failures come back as Lambda reports them.

        Each function runs one invocation at a time, as one Lambda execution environment
        does: handler modules keep per-request state in module-level objects (Powertools'
        resolver holds `current_event`), so two threads in one function would mix requests.
        Different functions run concurrently (one function may invoke another). A caller
        that waits longer than the function's timeout gets `FunctionBusyError`.
        """
        spec = self.spec(name)
        timeout = _function_setting(name, "Timeout", 3)
        if not self._environments[name].acquire(timeout=timeout):
            raise FunctionBusyError(f"{name} stayed busy for {timeout} s")
        try:
            return self._run(spec, event, request_id or str(uuid.uuid4()), timeout)
        finally:
            self._environments[name].release()

    def _run(self, spec: FunctionSpec, event: Any, request_id: str, timeout: int) -> Invocation:
        name = spec.logical_id
        try:
            handler = self.handler(name)
        except Exception as exc:  # reported to the caller, as Lambda does
            LOGGER.exception("%s: cannot import handler %s", name, spec.handler)
            return Invocation(
                request_id,
                _error_payload(exc, "Runtime.ImportModuleError", request_id),
                "Unhandled",
            )
        context = LocalContext(
            function_name=name,
            aws_request_id=request_id,
            memory_limit_in_mb=_function_setting(name, "MemorySize", 128),
            timeout_seconds=timeout,
        )
        try:
            result = handler(event, context)
        except Exception as exc:  # an unhandled function error, as in Lambda
            LOGGER.exception("%s failed (request %s)", name, request_id)
            return Invocation(
                request_id, _error_payload(exc, type(exc).__name__, request_id), "Unhandled"
            )
        try:
            payload = _lambda_json(result)
        except (TypeError, ValueError) as exc:
            return Invocation(
                request_id, _error_payload(exc, "Runtime.MarshalError", request_id), "Unhandled"
            )
        return Invocation(request_id, payload)


def isolate_metrics(module: ModuleType) -> None:
    """Give each Powertools `Metrics` a function module holds a metric set of its own.

    Powertools shares metrics, dimensions and metadata between all `Metrics` instances of a
    process (class attributes), which in Lambda means one function's, one invocation at a
    time. In this one process, function A's `log_metrics` could serialise while B adds a
    metric, or clear the set between A's emptiness check and its serialisation
    ("Must contain at least one metric"): an unhandled error, a 502 at the gateway. With
    sets of its own per function, and one invocation at a time per function, each flush
    sees only its own invocation's metrics, as in Lambda."""
    try:
        from aws_lambda_powertools import Metrics  # noqa: PLC0415 - only when a function uses it
    except ImportError:  # pragma: no cover - every function of this template uses Powertools
        return
    for value in vars(module).values():
        if not isinstance(value, Metrics) or value.metric_set is not Metrics._metrics:
            continue  # not a Metrics, or isolated already (a module two functions share)
        defaults = dict(value.default_dimensions)
        own: dict[str, dict[str, Any]] = {
            "metric_set": {},
            "dimension_set": dict(value.dimension_set),
            "metadata_set": {},
            "default_dimensions": defaults,
        }
        for holder in (value, value.provider):
            for attribute, fresh in own.items():
                setattr(holder, attribute, fresh)


def _load_module(spec: FunctionSpec, module_name: str) -> ModuleType:
    """Import `functions.<dir>.app` when the code dir is a package under the project (as the
    tests import it), else load the file under a name of its own (every function has `app`)."""
    code_dir = spec.code_dir
    if (code_dir / "__init__.py").is_file() and code_dir.is_relative_to(template.PROJECT_ROOT):
        dotted = ".".join((*code_dir.relative_to(template.PROJECT_ROOT).parts, module_name))
        return importlib.import_module(dotted)
    path = code_dir / (module_name.replace(".", "/") + ".py")
    unique = f"_local_lambda_{spec.logical_id}.{module_name}"
    module_spec = importlib.util.spec_from_file_location(unique, path)
    if module_spec is None or module_spec.loader is None or not path.is_file():
        raise ModuleNotFoundError(f"No module named {module_name!r} in {code_dir}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[unique] = module
    module_spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- the Invoke API
def _function_name(raw: str) -> str:
    """`DebitFunction`, `DebitFunction:$LATEST` or an ARN -> `DebitFunction`."""
    name = raw.split(":function:", 1)[1] if raw.startswith("arn:") else raw
    return name.split(":", 1)[0]


def _aws_error(status: int, error_type: str, message: str) -> Response:
    return Response(
        json.dumps({"Type": "User", "message": message}),
        status=status,
        content_type="application/json",
        headers={"X-Amzn-ErrorType": error_type},
    )


def lambda_invoke_app(runtime: FunctionRuntime) -> Callable[..., Any]:
    """A WSGI app serving `POST /2015-03-31/functions/{FunctionName}/invocations`."""
    routes = Map(
        [Rule("/2015-03-31/functions/<path:name>/invocations", endpoint="invoke", methods=["POST"])]
    )

    def _invoke_quietly(function: str, event: Any) -> None:
        try:
            runtime.invoke(function, event)
        except FunctionBusyError:
            LOGGER.warning(
                "%s: asynchronous invocation dropped, the function stayed busy", function
            )

    def invoke(request: Request, name: str) -> Response:
        function = _function_name(name)
        if function not in runtime.specs:
            arn = f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function:{function}"
            return _aws_error(404, "ResourceNotFoundException", f"Function not found: {arn}")
        body = request.get_data()
        try:
            event = json.loads(body) if body.strip() else {}
        except ValueError as exc:
            return _aws_error(
                400,
                "InvalidRequestContentException",
                f"Could not parse request body into json: {exc}",
            )
        invocation_type = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if invocation_type == "DryRun":
            return Response(status=204)
        if invocation_type == "Event":
            threading.Thread(target=_invoke_quietly, args=(function, event), daemon=True).start()
            return Response(status=202)
        try:
            result = runtime.invoke(function, event)
        except FunctionBusyError as exc:
            return _aws_error(429, "TooManyRequestsException", f"Rate Exceeded. {exc}")
        headers = {"X-Amz-Executed-Version": "$LATEST", "X-Amzn-RequestId": result.request_id}
        if result.failed:
            headers["X-Amz-Function-Error"] = result.error_type or "Unhandled"
        return Response(
            result.payload, status=200, content_type="application/json", headers=headers
        )

    @Request.application
    def app(request: Request) -> Response:
        adapter = routes.bind_to_environ(request.environ)
        try:
            _, arguments = adapter.match()
        except (NotFound, MethodNotAllowed):
            return _aws_error(
                404, "UnknownOperationException", f"No Lambda operation at {request.path}"
            )
        except HTTPException as exc:  # e.g. a redirect for a trailing slash
            return _aws_error(400, "InvalidRequestContentException", str(exc))
        return invoke(request, str(arguments["name"]))

    return app
