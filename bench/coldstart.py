"""Cold start: what each function's module costs to import, and what `sam build` ships.

Import time: `python -X importtime -c "import functions.<dir>.app"` in a fresh interpreter
with the function's environment (template.yaml) and `PYTHONPATH=layers/shared:.`, as in
Lambda (`AWS_LAMBDA_FUNCTION_NAME` set, so Powertools' Tracer patches as it does there);
the sum of the top-level imports after interpreter start-up, median of several runs, with
bytecode caches warm. Separately: the time to compile the layer's and the function's sources,
which a cold start pays when the artifact ships no `.pyc` (the build deletes `__pycache__`,
and Lambda's code directories are read-only, so Python cannot cache what it compiles).

The Debit function against two baselines (`compare`): the same debit written with Powertools
and pydantic alone (bench/powertools_function.py) and the literal `import
aws_lambda_powertools, pydantic`; import, and import + first invocation on DynamoDB Local,
timed inside fresh interpreters (perf_counter and process_time, no `-X importtime`).
"""

from __future__ import annotations

import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import LAYER_PATH, PROJECT_ROOT
from bench.env import Environment, say

SAM = PROJECT_ROOT / ".tools" / "sam" / "bin" / "sam"
BUILD_DIR = PROJECT_ROOT / ".aws-sam" / "build"
# What the layer ships (layers/shared/requirements.txt) plus the project's own packages.
SHIPPED_PACKAGES = frozenset(
    {
        "aws_lambda_powertools",
        "aws_xray_sdk",
        "wrapt",
        "jmespath",
        "pydantic",
        "pydantic_core",
        "annotated_types",
        "typing_inspection",
        "typing_extensions",
        "serverless_credits",
        "functions",
    }
)

# Imported in the function but provided by the Lambda runtime, not the layer.
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "urllib3", "dateutil", "six")

_COMPILE_PROBE = """
import json, sys, time, importlib
importlib.import_module(sys.argv[1])
shipped = set(sys.argv[2].split(","))
files = []
for name, module in list(sys.modules.items()):
    path = getattr(module, "__file__", None) or ""
    if name.split(".")[0] in shipped and path.endswith(".py"):
        files.append(path)
sources = [open(p, "rb").read() for p in files]
best = None
for _ in range(3):
    started = time.perf_counter()
    for path, source in zip(files, sources):
        compile(source, path, "exec", dont_inherit=True)
    elapsed = time.perf_counter() - started
    best = elapsed if best is None else min(best, elapsed)
print(json.dumps({"modules": len(files), "seconds": best}))
"""


def _parse_importtime(stderr: str) -> list[tuple[int, int, int, str]]:
    """(depth, self us, cumulative us, module) for each `-X importtime` line."""
    rows: list[tuple[int, int, int, str]] = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line[len("import time:") :].split("|")
        if len(parts) != 3:
            continue
        self_us, cumulative_us, name = parts
        stripped = name.lstrip()
        depth = (len(name) - len(stripped) - 1) // 2
        rows.append((depth, int(self_us), int(cumulative_us), stripped.strip()))
    return rows


def _run(
    code: str, environment: dict[str, str], *args: str, importtime: bool = True
) -> tuple[str, str, float, float]:
    """stdout, stderr, wall seconds and CPU seconds (user + system) of a fresh interpreter."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    completed = subprocess.run(  # noqa: S603 - our own interpreter, our own arguments
        [sys.executable, *(["-X", "importtime"] if importtime else []), "-c", code, *args],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if completed.returncode != 0:
        raise RuntimeError(completed.stderr.strip().splitlines()[-1])
    return completed.stdout, completed.stderr, elapsed, cpu


def _environment(env: Environment, logical_id: str, pycache: str) -> dict[str, str]:
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108 - a fallback for HOME
        "LANG": "C.UTF-8",
        **env.function_env(logical_id),
        "PYTHONPATH": f"{LAYER_PATH}{os.pathsep}{PROJECT_ROOT}",
        "PYTHONPYCACHEPREFIX": pycache,
        "AWS_LAMBDA_FUNCTION_NAME": f"bench-{logical_id}",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        # Powertools' Tracer decides it runs in Lambda (and patches) from LAMBDA_TASK_ROOT.
        "LAMBDA_TASK_ROOT": str(env.specs[logical_id].code_dir),
        # No X-Ray daemon here: a traced first call must not fail for want of a segment.
        "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
    }
    environment.pop("POWERTOOLS_TRACE_DISABLED", None)  # as deployed: Tracing: Active
    return environment


def import_times(env: Environment, runs: int) -> dict[str, Any]:
    """Each function's import, with the heaviest packages (`-X importtime`)."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-pycache-") as pycache:
        # A bare interpreter with the same settings: what start-up costs before any import.
        bare_env = _environment(env, next(iter(env.specs)), pycache)
        bare_runs = [_run("pass", bare_env) for _ in range(runs)]
        startup = {row[3] for _, err, _, _ in bare_runs for row in _parse_importtime(err)}
        bare_cpu = statistics.median(cpu for *_, cpu in bare_runs)
        for logical_id, spec in env.specs.items():
            module_name = spec.handler.rsplit(".", 1)[0]
            module = f"functions.{spec.code_dir.name}.{module_name}"
            if not env.has_function_code(logical_id):
                results[logical_id] = {"module": module, "missing": True}
                continue
            environment = _environment(env, logical_id, pycache)
            _run(f"import {module}", environment)  # fills the bytecode cache
            totals: list[float] = []
            cpus: list[float] = []
            by_package: dict[str, list[int]] = defaultdict(list)
            for _ in range(runs):
                _, err, _, cpu = _run(f"import {module}", environment)
                rows = [row for row in _parse_importtime(err) if row[3] not in startup]
                totals.append(sum(cumulative for depth, _, cumulative, _ in rows if depth == 0))
                cpus.append(cpu)
                package_self: dict[str, int] = defaultdict(int)
                for _, self_us, _, name in rows:
                    package_self[name.split(".")[0]] += self_us
                for package, self_us in package_self.items():
                    by_package[package].append(self_us)
            compile_out, *_ = _run(
                _COMPILE_PROBE, environment, module, ",".join(sorted(SHIPPED_PACKAGES))
            )
            compiled = json.loads(compile_out)
            medians = {p: statistics.median(v) for p, v in by_package.items()}
            heaviest = sorted(medians.items(), key=lambda pair: pair[1], reverse=True)[:6]
            results[logical_id] = {
                "module": module,
                "import_ms": round(statistics.median(totals) / 1000, 1),
                "import_cpu_ms": round((statistics.median(cpus) - bare_cpu) * 1000, 1),
                "runs": runs,
                "heaviest_packages_ms": {p: round(us / 1000, 1) for p, us in heaviest},
                "boto3_botocore_ms": round(
                    sum(medians.get(p, 0) for p in RUNTIME_PROVIDED) / 1000, 1
                ),
                "compile_without_pyc_ms": round(compiled["seconds"] * 1000, 1),
                "shipped_modules_imported": compiled["modules"],
            }
            say(
                f"  {logical_id}: import {results[logical_id]['import_ms']} ms "
                f"(CPU {results[logical_id]['import_cpu_ms']} ms; "
                f"+{results[logical_id]['compile_without_pyc_ms']} ms compiling without .pyc)"
            )
    return results


# ---------------------------------------------------------------- the Debit function vs baselines
COLD_TARGET = 1.2
DEBIT = "debit_function"
POWERTOOLS_FUNCTION = "powertools_function"
LITERAL_IMPORT = "powertools_pydantic_import"
# What each compared target imports (comma-separated modules) and whether it is invoked.
COMPARED = {
    DEBIT: "functions.debit.app",
    POWERTOOLS_FUNCTION: "bench.powertools_function",
    LITERAL_IMPORT: "aws_lambda_powertools,pydantic",
}
# A sampled trace, as Lambda sets it with active tracing: the tracer records real subsegments
# (and sends them to a daemon address where nothing listens).
TRACE_HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"

_PROBE = """
import importlib, json, os, sys, time
# What the function prints (JSON logs, EMF metrics) goes to CloudWatch in Lambda: not ours.
sys.stdout = open(os.devnull, "w")
wall, cpu = time.perf_counter(), time.process_time()
modules = [importlib.import_module(name) for name in sys.argv[1].split(",")]
imported_wall, imported_cpu = time.perf_counter(), time.process_time()
result = {
    "import_ms": (imported_wall - wall) * 1000,
    "import_cpu_ms": (imported_cpu - cpu) * 1000,
    "modules_after_import": len(sys.modules),
}
if len(sys.argv) > 2:
    class Context:
        function_name = "bench-cold"
        function_version = "$LATEST"
        memory_limit_in_mb = 256
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench-cold"
        aws_request_id = "00000000-0000-0000-0000-000000000000"
        log_group_name = "/aws/lambda/bench-cold"
        log_stream_name = "bench"

        def get_remaining_time_in_millis(self):
            return 10_000

    response = modules[0].lambda_handler(json.loads(sys.argv[2]), Context())
    if "error" in response:
        raise SystemExit(f"first call refused: {response}")
    result["first_call_ms"] = (time.perf_counter() - imported_wall) * 1000
    result["first_call_cpu_ms"] = (time.process_time() - imported_cpu) * 1000
    result["modules_after_first_call"] = len(sys.modules)
sys.__stdout__.write(json.dumps(result) + "\\n")
"""


def _probe(
    environment: dict[str, str], modules: str, event: dict[str, Any] | None
) -> dict[str, Any]:
    args = [modules] if event is None else [modules, json.dumps(event)]
    out, *_ = _run(_PROBE, environment, *args, importtime=False)
    measured: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    if "first_call_ms" in measured:
        measured["import_and_first_call_ms"] = measured["import_ms"] + measured["first_call_ms"]
        measured["import_and_first_call_cpu_ms"] = (
            measured["import_cpu_ms"] + measured["first_call_cpu_ms"]
        )
    return measured


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 2)


def compare(
    env: Environment,
    runs: int,
    event: Callable[[str], dict[str, Any]],
    idempotency_table: str,
) -> dict[str, Any]:
    """The Debit function against the Powertools + pydantic function a user would write for
    the same debit (bench/powertools_function.py) and the literal `import
    aws_lambda_powertools, pydantic`: each one's import, and import + first invocation
    (against DynamoDB Local), in fresh interpreters taking turns, `runs` times each after
    one run that fills the bytecode cache; wall and CPU time by perf_counter/process_time
    inside the interpreter (its own start-up excluded), medians.

    `event(key)`: the same debit request for both functions, with a fresh idempotency key."""
    with tempfile.TemporaryDirectory(prefix="bench-pycache-") as pycache:
        debit_env = _environment(env, "DebitFunction", pycache)
        environments = {
            DEBIT: {**debit_env, "_X_AMZN_TRACE_ID": TRACE_HEADER},
            POWERTOOLS_FUNCTION: {
                **debit_env,
                "_X_AMZN_TRACE_ID": TRACE_HEADER,
                "IDEMPOTENCY_TABLE_NAME": idempotency_table,
            },
            LITERAL_IMPORT: debit_env,
        }
        invoked = {DEBIT: True, POWERTOOLS_FUNCTION: True, LITERAL_IMPORT: False}
        samples: dict[str, list[dict[str, Any]]] = {name: [] for name in COMPARED}
        for index in range(runs + 1):
            for name, modules in COMPARED.items():
                request = event(f"cold-{env.run_id}-{name}-{index}") if invoked[name] else None
                measured = _probe(environments[name], modules, request)
                if index > 0:  # the first run of each fills the bytecode cache
                    samples[name].append(measured)
    targets: dict[str, Any] = {}
    for name, rows in samples.items():
        entry: dict[str, Any] = {"modules": COMPARED[name], "runs": len(rows)}
        for field in rows[0]:
            entry[field] = round(statistics.median(row[field] for row in rows), 1)
        targets[name] = entry
        say(
            f"  {name}: import {entry['import_ms']} ms"
            + (
                f", import + first call {entry['import_and_first_call_ms']} ms"
                if "import_and_first_call_ms" in entry
                else ""
            )
        )
    debit, function, literal = targets[DEBIT], targets[POWERTOOLS_FUNCTION], targets[LITERAL_IMPORT]
    ratios = {
        "import_vs_powertools_function": _ratio(debit["import_ms"], function["import_ms"]),
        "import_and_first_call_vs_powertools_function": _ratio(
            debit["import_and_first_call_ms"], function["import_and_first_call_ms"]
        ),
        "import_vs_literal_import": _ratio(debit["import_ms"], literal["import_ms"]),
        "import_and_first_call_vs_literal_import": _ratio(
            debit["import_and_first_call_ms"], literal["import_ms"]
        ),
        "cpu_import_vs_powertools_function": _ratio(
            debit["import_cpu_ms"], function["import_cpu_ms"]
        ),
        "cpu_import_and_first_call_vs_powertools_function": _ratio(
            debit["import_and_first_call_cpu_ms"], function["import_and_first_call_cpu_ms"]
        ),
    }
    return {
        "targets": targets,
        "ratios": ratios,
        "target": COLD_TARGET,
        "meets_target": {name: value <= COLD_TARGET for name, value in ratios.items() if value},
    }


# ---------------------------------------------------------------- artifacts
def _needs_build(env: Environment) -> list[str]:
    wanted = [*env.specs, "SharedLayer"]
    return [name for name in wanted if not (BUILD_DIR / name).is_dir()]


def sam_build() -> dict[str, Any]:
    started = time.perf_counter()
    completed = subprocess.run(  # noqa: S603 - the project's own SAM CLI
        [str(SAM), "build"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    elapsed = round(time.perf_counter() - started, 1)
    tail = (completed.stdout + completed.stderr).strip().splitlines()[-6:]
    return {"ran": True, "ok": completed.returncode == 0, "seconds": elapsed, "output_tail": tail}


def _measure(path: Path) -> dict[str, Any]:
    files = [p for p in path.rglob("*") if p.is_file()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in files:
            archive.write(file, file.relative_to(path))
    return {
        "files": len(files),
        "unzipped_bytes": sum(f.stat().st_size for f in files),
        "zipped_bytes": buffer.tell(),
        # Bytecode Lambda's Python 3.13 can load (the build compiles it when it has a 3.13).
        "pyc_313_files": sum(1 for f in files if f.name.endswith(".cpython-313.pyc")),
    }


def artifacts(env: Environment, *, skip_build: bool, force_build: bool) -> dict[str, Any]:
    missing = _needs_build(env)
    build: dict[str, Any] = {"ran": False}
    buildable = all(env.has_function_code(name) for name in env.specs)
    if (force_build or missing) and not skip_build:
        if buildable:
            say("  sam build ...")
            build = sam_build()
        else:
            absent = [name for name in env.specs if not env.has_function_code(name)]
            build = {"ran": False, "ok": False, "reason": f"function code missing: {absent}"}
    sizes: dict[str, Any] = {}
    for name in [*env.specs, "SharedLayer"]:
        path = BUILD_DIR / name
        sizes[name] = _measure(path) if path.is_dir() else {"missing": True}
        if path.is_dir():
            sizes[name]["built_at"] = time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(path.stat().st_mtime)
            )
    return {"build": build, "sizes": sizes, "still_missing": _needs_build(env)}
