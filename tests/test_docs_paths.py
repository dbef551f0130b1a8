"""Every repository path the documentation cites exists (docs/*.md and README.md).

A backticked span is taken for a repository path when it starts with a top-level folder or file of the
repository (``services/scorer/core.py``, ``infra/helm/vigil/``, ``docker-compose.gpu.yml``); a relative
Markdown link (``[x](operations.md)``) is resolved from the document's folder. Allowed without checking:
``.state/`` and ``runs/`` (made at run time), ``../shared/data`` (the full data sets beside the
repository), placeholders
(``<camera>``, ``{name}``, ``$VAR``, ``...``). A glob must match at least one path. ``path:123`` and
``path::name`` cite a line or a name in the file: the file must exist.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = sorted((REPO / "docs").glob("*.md")) + [REPO / "README.md"]
TOP = {"config", "data", "docs", "infra", "model", "services", "shared", "tests", "tools", "vigil", ".ci",
       "Dockerfile", "Makefile", "README.md", "pyproject.toml", ".dockerignore"}  # fmt: skip
TOP_FILE = re.compile(r"(docker-compose[\w.-]*\.ya?ml|Dockerfile[\w.-]*|Makefile|pyproject\.toml|README\.md)")
ALLOWED = (".state/", ".state", "runs/", "../shared/data")
_SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def cited_paths(text: str) -> list[str]:
    """Backticked spans that name a repository path (fenced code blocks are examples, not citations)."""
    text = _FENCE.sub("", text)
    out = []
    for span in _SPAN.findall(text):
        span = span.strip().rstrip(".,;")
        path = re.split(r"::|:(?=\d)", span)[0]
        if " " in path or any(c in path for c in "<>{}$|=\"'") or "..." in path or path.startswith(ALLOWED):
            continue
        if path.startswith("../") and path.rstrip("/") != "../shared":
            out.append(path)  # outside the repository: a clone does not have it
            continue
        first = path.split("/")[0]
        if "/" in path and first in TOP:
            if first == "vigil" and not re.search(r"\.\w+$", path):
                continue  # `vigil/alerts` is an MQTT topic, not the package
            out.append(path)
        elif "/" not in path and TOP_FILE.fullmatch(path):
            out.append(path)
    return out


def linked_paths(doc: Path, text: str) -> list[Path]:
    """Targets of relative Markdown links, resolved from the document's folder."""
    return [(doc.parent / t).resolve() for t in _LINK.findall(text) if "://" not in t and not t.startswith("mailto:")]


def _exists(path: str) -> bool:
    if path.startswith("../"):
        return False
    if any(c in path for c in "*?["):
        return any(REPO.glob(path.rstrip("/")))
    return (REPO / path).exists()


@pytest.mark.parametrize("doc", DOCS, ids=[d.relative_to(REPO).as_posix() for d in DOCS])
def test_cited_paths_exist(doc: Path) -> None:
    text = doc.read_text()
    missing = sorted({p for p in cited_paths(text) if not _exists(p)})
    missing += sorted({str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p)
                       for p in linked_paths(doc, text) if not p.exists()
                       and not str(p).startswith(str(REPO.parent / "shared"))})  # fmt: skip
    assert not missing, f"{doc.relative_to(REPO)} cites paths that are not in the repository: {missing}"


def test_the_checker_finds_paths() -> None:
    found = cited_paths("see `services/scorer/core.py:12`, `vigil/alerts`, `docker-compose.gpu.yml`, "
                        "`.state/x`, `services/<name>/`, `infra/helm/vigil/`, `../shared/DESIGN.md`, `../shared/data/x` and"
                        "\n```\n`tools/nothing.py`\n```")  # fmt: skip
    assert found == ["services/scorer/core.py", "docker-compose.gpu.yml", "infra/helm/vigil/", "../shared/DESIGN.md"]
    assert not _exists("tools/no_such_tool.py") and _exists("services/*/metrics.py")
