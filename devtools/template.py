"""Read `template.yaml`, the single source of truth for tables, functions and routes.

Tests, the local stack and benchmarks take table keys, function environments and API
routes from here instead of copying them.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = PROJECT_ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """A YAML loader that keeps CloudFormation's short-form intrinsics (`!Ref`, `!Sub`...)."""


def _intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


@functools.cache
def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        document = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(document, dict):
        raise ValueError(f"{path} is not a CloudFormation template")
    return document


def resource(logical_id: str, template: dict[str, Any] | None = None) -> dict[str, Any]:
    resources: dict[str, Any] = (template or load_template())["Resources"]
    try:
        found: dict[str, Any] = resources[logical_id]
    except KeyError:
        raise KeyError(f"template.yaml has no resource {logical_id!r}") from None
    return found


def parameter_defaults(template: dict[str, Any] | None = None) -> dict[str, Any]:
    parameters: dict[str, Any] = (template or load_template()).get("Parameters", {})
    return {name: spec.get("Default") for name, spec in parameters.items()}


def create_table_request(table_name: str, logical_id: str = "CreditsTable") -> dict[str, Any]:
    """The `CreateTable` arguments for a table defined in the template, under another name."""
    properties = resource(logical_id)["Properties"]
    request: dict[str, Any] = {
        "TableName": table_name,
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "KeySchema": properties["KeySchema"],
        "BillingMode": properties.get("BillingMode", "PAY_PER_REQUEST"),
    }
    for index_kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if properties.get(index_kind):
            request[index_kind] = properties[index_kind]
    if properties.get("StreamSpecification"):
        request["StreamSpecification"] = {
            "StreamEnabled": True,
            **properties["StreamSpecification"],
        }
    return request


def ttl_attribute(logical_id: str = "CreditsTable") -> str | None:
    spec = resource(logical_id)["Properties"].get("TimeToLiveSpecification")
    return spec["AttributeName"] if spec and spec.get("Enabled") else None


def _resolve(value: Any, substitutions: dict[str, str]) -> str:
    """Resolve the few intrinsics the template uses in environment variables."""
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, dict) and "Ref" in value:
        name = str(value["Ref"])
        return substitutions.get(name, name)
    if isinstance(value, dict) and "Fn::Sub" in value:
        text = value["Fn::Sub"]
        for name, replacement in substitutions.items():
            text = text.replace("${" + name + "}", replacement)
        return str(text)
    raise ValueError(f"unsupported intrinsic in an environment variable: {value!r}")


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    code_dir: Path
    handler: str
    environment: dict[str, str]
    events: dict[str, Any]


def functions(substitutions: dict[str, str] | None = None) -> dict[str, FunctionSpec]:
    """Every `AWS::Serverless::Function`, with Globals merged into its environment.

    `substitutions` maps `Ref`/`${...}` names (parameters, resources) to local values.
    """
    template = load_template()
    values = {k: str(v) for k, v in parameter_defaults(template).items() if v is not None}
    values.update(substitutions or {})
    global_env = template.get("Globals", {}).get("Function", {}).get("Environment", {})
    global_vars = global_env.get("Variables", {})
    specs: dict[str, FunctionSpec] = {}
    for logical_id, definition in template["Resources"].items():
        if definition.get("Type") != "AWS::Serverless::Function":
            continue
        properties = definition["Properties"]
        own_vars = properties.get("Environment", {}).get("Variables", {})
        environment = {
            name: _resolve(value, values) for name, value in {**global_vars, **own_vars}.items()
        }
        specs[logical_id] = FunctionSpec(
            logical_id=logical_id,
            code_dir=PROJECT_ROOT / properties["CodeUri"],
            handler=properties["Handler"],
            environment=environment,
            events=properties.get("Events", {}),
        )
    return specs


@dataclass(frozen=True)
class StreamSource:
    """A function's `Type: DynamoDB` event (an event source mapping on a table's stream)."""

    function: str
    event: str
    table: str  # the table's logical id (`Stream: !GetAtt <Table>.StreamArn`)
    batch_size: int
    starting_position: str
    maximum_retry_attempts: int | None
    partial_batch_response: bool
    filters: tuple[dict[str, Any], ...]  # FilterCriteria's patterns, parsed


def stream_sources(template: dict[str, Any] | None = None) -> list[StreamSource]:
    """Every DynamoDB stream event source of every function, in template order."""
    document = template or load_template()
    found: list[StreamSource] = []
    for logical_id, definition in document["Resources"].items():
        if definition.get("Type") != "AWS::Serverless::Function":
            continue
        for event_name, event in definition["Properties"].get("Events", {}).items():
            if event.get("Type") != "DynamoDB":
                continue
            properties = event["Properties"]
            stream = properties["Stream"]
            table = stream["Fn::GetAtt"][0] if isinstance(stream, dict) else str(stream)
            patterns = properties.get("FilterCriteria", {}).get("Filters", [])
            retries = properties.get("MaximumRetryAttempts")
            found.append(
                StreamSource(
                    function=logical_id,
                    event=event_name,
                    table=table,
                    batch_size=int(properties.get("BatchSize", 100)),
                    starting_position=str(properties.get("StartingPosition", "LATEST")),
                    maximum_retry_attempts=None if retries in (None, -1) else int(retries),
                    partial_batch_response="ReportBatchItemFailures"
                    in properties.get("FunctionResponseTypes", []),
                    filters=tuple(json.loads(f["Pattern"]) for f in patterns),
                )
            )
    return found


@dataclass(frozen=True)
class ScheduleSource:
    """A function's `Type: Schedule` (an EventBridge rule) or `Type: ScheduleV2` (an
    EventBridge Scheduler schedule) event: `expression` as written (`rate(1 minute)`,
    `cron(...)`, `at(...)`), parsed by whoever runs it (`devtools.schedules`)."""

    function: str
    event: str
    kind: str  # "Schedule" | "ScheduleV2"
    expression: str
    enabled: bool
    input: str | None  # the event's `Input` (JSON text) if it sets one


SCHEDULE_EVENT_TYPES = ("Schedule", "ScheduleV2")


def _schedule_enabled(properties: dict[str, Any], substitutions: dict[str, str]) -> bool:
    """`Enabled: false` or `State: DISABLED` turns a schedule off (SAM's two spellings)."""
    if "State" in properties:
        return _resolve(properties["State"], substitutions).upper() == "ENABLED"
    if "Enabled" in properties:
        return _resolve(properties["Enabled"], substitutions).lower() == "true"
    return True


def schedule_sources(
    template: dict[str, Any] | None = None, substitutions: dict[str, str] | None = None
) -> list[ScheduleSource]:
    """Every schedule event of every function, in template order (`Ref`s and `${...}` in
    the expression resolved from `substitutions`, then the parameters' defaults)."""
    document = template or load_template()
    values = {k: str(v) for k, v in parameter_defaults(document).items() if v is not None}
    values.update(substitutions or {})
    found: list[ScheduleSource] = []
    for logical_id, definition in document["Resources"].items():
        if definition.get("Type") != "AWS::Serverless::Function":
            continue
        for event_name, event in definition["Properties"].get("Events", {}).items():
            kind = event.get("Type")
            if kind not in SCHEDULE_EVENT_TYPES:
                continue
            properties = event.get("Properties", {})
            key = "Schedule" if kind == "Schedule" else "ScheduleExpression"
            if key not in properties:
                raise ValueError(f"{logical_id}.{event_name}: a {kind} event without {key}")
            found.append(
                ScheduleSource(
                    function=logical_id,
                    event=event_name,
                    kind=kind,
                    expression=_resolve(properties[key], values).strip(),
                    enabled=_schedule_enabled(properties, values),
                    input=None
                    if properties.get("Input") is None
                    else _resolve(properties["Input"], values),
                )
            )
    return found
