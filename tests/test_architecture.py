"""The architecture of docs/architecture.md, checked: the same rooms in every service, tools apart from the
runtime, no path derived from ``__file__``, small functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RUNTIME = ("vigil", "shared", "model", "services")
SERVICES = ("ingest", "worker", "scorer", "api", "evidence", "notify")
ROOMS = ("settings.py", "core.py", "transport.py", "metrics.py", "cli.py")


def _sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (REPO / folder).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_the_same_rooms(service: str) -> None:
    folder = REPO / "services" / service
    missing = [room for room in ROOMS if not (folder / room).is_file()]
    assert not missing, f"services/{service} lacks {missing} (see docs/architecture.md)"
    cli = (folder / "cli.py").read_text()
    assert "run_service(" in cli, f"services/{service}/cli.py must start the service through vigil.shared.runner"


def test_runtime_never_imports_the_tools() -> None:
    offenders = [f"{p.relative_to(REPO)} imports {m}" for p in _sources(*RUNTIME) if p.name != "cli.py" or p.parent.name != "vigil"
                 for m in _imports(p) if m.startswith("vigil.tools")]  # fmt: skip
    assert not offenders, offenders


@pytest.mark.parametrize(("folder", "forbidden"), [("shared", ("vigil.services", "vigil.model", "vigil.tools")),
                                                  ("model", ("vigil.services", "vigil.tools"))])
def test_layers_import_only_downwards(folder: str, forbidden: tuple[str, ...]) -> None:
    """shared <- model <- services <- tools: a lower layer never imports a higher one."""
    offenders = [f"{p.relative_to(REPO)} imports {m}" for p in _sources(folder) for m in _imports(p)
                 if m.startswith(forbidden)]  # fmt: skip
    assert not offenders, offenders


def test_no_path_comes_from_dunder_file() -> None:
    offenders = [str(p.relative_to(REPO)) for p in _sources(*RUNTIME, "tools") if "__file__" in p.read_text()]
    assert not offenders, f"use package resources, the working directory or an option instead: {offenders}"


def test_runtime_functions_are_at_most_50_lines() -> None:
    long = []
    for path in _sources(*RUNTIME):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 50:
                long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long

