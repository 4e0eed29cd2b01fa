"""Packaging: the locks (`make lock`) say what the pins say, with hashes; the layer's lock ships
nothing the Lambda runtime provides; the stack exports the layer's ARN; the project installs the
operators' command line. `make lock-check` asks pip the first question of the installed venv;
these read the files, so a stale lock fails here too, with the package named."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from devtools import template

ROOT = template.PROJECT_ROOT
DEV_PINS = ROOT / "requirements-dev.txt"
DEV_LOCK = ROOT / "requirements-dev.lock"
LAYER_PINS = ROOT / "layers" / "shared" / "requirements.txt"
LAYER_LOCK = ROOT / "layers" / "shared" / "requirements.lock"

_PIN = re.compile(r"^([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==([^\s;#\\]+)")


def _name(raw: str) -> str:
    """PEP 503 normalization: `PyYAML` and `typing_extensions` as a lock spells them."""
    return re.sub(r"[-_.]+", "-", raw).lower()


def pins(path: Path) -> dict[str, str]:
    """The `name==version` lines of a requirements file, following `-r` includes."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("-r "):
            found |= pins(path.parent / line.removeprefix("-r ").strip())
        elif match := _PIN.match(line):
            found[_name(match[1])] = match[2]
    return found


def locked(path: Path) -> dict[str, list[str]]:
    """Each entry of a lock (`name==version`) with the hashes written under it."""
    entries: dict[str, list[str]] = {}
    current = ""
    for line in path.read_text().splitlines():
        if match := _PIN.match(line):
            current = f"{_name(match[1])}=={match[2]}"
            entries[current] = []
        elif line.strip().startswith("--hash=sha256:") and current:
            entries[current].append(line.strip().removesuffix("\\").strip())
    return entries


def test_every_pin_of_the_dev_requirements_is_in_the_dev_lock() -> None:
    lock = locked(DEV_LOCK)
    missing = [f"{n}=={v}" for n, v in pins(DEV_PINS).items() if f"{n}=={v}" not in lock]
    assert not missing, f"requirements-dev.lock is stale (run make lock): {missing}"


def test_every_locked_package_has_hashes() -> None:
    """`pip install --require-hashes` refuses an entry without one: fail here, by name."""
    for lock in (DEV_LOCK, LAYER_LOCK):
        entries = locked(lock)
        assert entries, lock
        assert [entry for entry, hashes in entries.items() if not hashes] == [], lock


def test_the_layer_lock_is_exactly_the_layers_pins() -> None:
    """--no-deps on both sides: boto3/botocore (which aws-xray-sdk asks for) come from the
    Lambda runtime, so the lock must not add them, nor anything else."""
    expected = {f"{name}=={version}" for name, version in pins(LAYER_PINS).items()}
    assert set(locked(LAYER_LOCK)) == expected
    assert not any(entry.startswith(("boto3==", "botocore==")) for entry in expected)


def test_the_stack_outputs_the_shared_layers_arn() -> None:
    """`!Ref` of a LayerVersion is the ARN of the version this deployment published."""
    loaded = template.load_template()
    assert loaded["Resources"]["SharedLayer"]["Type"] == "AWS::Serverless::LayerVersion"
    assert loaded["Outputs"]["SharedLayerArn"]["Value"] == {"Ref": "SharedLayer"}


def test_the_project_builds_with_setuptools_and_installs_credits_admin() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["build-system"]["build-backend"] == "setuptools.build_meta"
    assert project["project"]["scripts"] == {"credits-admin": "credits_admin.cli:main"}
    # The build backend is locked too (`pip install --no-build-isolation -e .`).
    assert "setuptools" in pins(DEV_PINS)
    # `make install` installed this checkout (editable) with that console script.
    scripts = metadata.distribution("serverless-credits").entry_points.select(
        group="console_scripts"
    )
    assert {(script.name, script.value) for script in scripts} == {
        ("credits-admin", "credits_admin.cli:main")
    }
