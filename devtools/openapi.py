"""The customer HTTP API's OpenAPI document, generated from the handlers' resolvers.

    python -m devtools.openapi write   # regenerate docs/openapi.json
    python -m devtools.openapi check   # exit 1 when docs/openapi.json drifts from the code

The HTTP functions are the template's functions with `Api` events. Each one's resolver
(`app` in its handler module) describes its own routes; the routes must be exactly the
template's events, and the documents are merged into one (a route or a component schema
defined differently by two functions is an error, never silently overwritten).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools import template

DOCUMENT = template.PROJECT_ROOT / "docs" / "openapi.json"


class OpenApiDrift(Exception):
    """The resolvers and the template disagree, or two resolvers define one thing twice."""


@dataclass(frozen=True)
class HttpFunction:
    logical_id: str
    module: str
    resolver: str
    routes: frozenset[tuple[str, str]]  # (method, path)


def http_functions() -> list[HttpFunction]:
    """Functions with API events, and the module that holds each one's resolver."""
    found: list[HttpFunction] = []
    for spec in template.functions().values():
        routes = frozenset(
            (str(event["Properties"]["Method"]).lower(), str(event["Properties"]["Path"]))
            for event in spec.events.values()
            if event.get("Type") == "Api"
        )
        if not routes:
            continue
        package = ".".join(spec.code_dir.relative_to(template.PROJECT_ROOT).parts)
        module = spec.handler.rsplit(".", 1)[0]
        found.append(HttpFunction(spec.logical_id, f"{package}.{module}", "app", routes))
    return sorted(found, key=lambda function: function.logical_id)


def _mount_layer() -> None:
    """Import the layer's library as Lambda does (its content on the path), and keep the
    handlers' import-time Powertools setup inert."""
    content = template.resource("SharedLayer")["Properties"]["ContentUri"]
    layer = str(template.PROJECT_ROOT / content)
    if layer not in sys.path:
        sys.path.insert(0, layer)
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "serverless-credits")
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "ServerlessCredits")


def _merge_components(documents: list[tuple[str, dict[str, Any]]]) -> None:
    seen: dict[tuple[str, str], tuple[str, Any]] = {}
    for owner, document in documents:
        for kind, entries in document.get("components", {}).items():
            for name, definition in entries.items():
                previous = seen.setdefault((kind, name), (owner, definition))
                if previous[1] != definition:
                    raise OpenApiDrift(
                        f"components.{kind}.{name} differs between {previous[0]} and {owner}"
                    )


def _references(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _references(value)
        return found
    if isinstance(node, list):
        return set().union(*(_references(value) for value in node)) if node else set()
    return set()


def _prune_schemas(document: dict[str, Any]) -> None:
    """Drop component schemas nothing refers to (Powertools always adds its own
    validation-error schemas; this API answers with `ErrorResponse` instead)."""
    schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})
    prefix = "#/components/schemas/"
    pending = [ref for ref in _references(document.get("paths", {})) if ref.startswith(prefix)]
    used: set[str] = set()
    while pending:
        name = pending.pop().removeprefix(prefix)
        if name in used or name not in schemas:
            continue
        used.add(name)
        pending.extend(ref for ref in _references(schemas[name]) if ref.startswith(prefix))
    for name in [name for name in schemas if name not in used]:
        del schemas[name]


def build_document() -> dict[str, Any]:
    """The merged OpenAPI document of every HTTP function."""
    _mount_layer()
    from aws_lambda_powertools.event_handler.openapi.merge import (  # noqa: PLC0415
        OpenAPIMerge,
    )

    from serverless_credits.transport import http_api  # noqa: PLC0415 - after the layer is mounted

    metadata = http_api.openapi_metadata()
    merge = OpenAPIMerge(**metadata, on_conflict="error")
    documents: list[tuple[str, dict[str, Any]]] = []
    for function in http_functions():
        resolver = getattr(importlib.import_module(function.module), function.resolver)
        schema = resolver.get_openapi_schema(**metadata).model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
        documented = frozenset(
            (method, path) for path, item in schema.get("paths", {}).items() for method in item
        )
        if documented != function.routes:
            raise OpenApiDrift(
                f"{function.logical_id}: the resolver serves {sorted(documented)} "
                f"but template.yaml routes {sorted(function.routes)} to it"
            )
        documents.append((function.logical_id, schema))
        merge.add_schema(schema)
    _merge_components(documents)
    merged: dict[str, Any] = json.loads(merge.get_openapi_json_schema())
    _prune_schemas(merged)
    return merged


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def write(path: Path = DOCUMENT) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(build_document()), encoding="utf-8")
    return path


def check(path: Path = DOCUMENT) -> list[str]:
    """The differences between the committed document and the code (empty: up to date)."""
    expected = render(build_document())
    actual = path.read_text(encoding="utf-8") if path.exists() else ""
    if actual == expected:
        return []
    return list(
        difflib.unified_diff(
            actual.splitlines(),
            expected.splitlines(),
            fromfile=f"{path.name} (committed)",
            tofile=f"{path.name} (from the code)",
            lineterm="",
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.openapi", description=__doc__)
    parser.add_argument("command", choices=["write", "check"])
    parser.add_argument("--path", type=Path, default=DOCUMENT)
    arguments = parser.parse_args(argv)
    try:
        if arguments.command == "write":
            print(f"wrote {write(arguments.path)}")
            return 0
        differences = check(arguments.path)
    except OpenApiDrift as drift:
        print(f"OpenAPI: {drift}", file=sys.stderr)
        return 1
    if differences:
        print(
            f"{arguments.path} is out of date with the handlers: run `make openapi`",
            file=sys.stderr,
        )
        print("\n".join(differences[:60]), file=sys.stderr)
        return 1
    print(f"{arguments.path} is up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
