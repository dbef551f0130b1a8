"""Write one section of docs/benchmarks.md, leaving the other sections as they are.

Each benchmark owns the text between ``<!-- bench:NAME:start -->`` and ``<!-- bench:NAME:end -->``.
"""

from __future__ import annotations

import platform
import re
import time
from pathlib import Path

DEFAULT_DOC = Path("docs/benchmarks.md")
"""Relative to the working directory: run the benchmarks from the repository (or pass ``--doc``)."""
_HEADER = "# Vigil benchmarks\n\nWritten by `vigil bench ...` / `make bench`. Each section names the command that produced it.\n"


def machine_line() -> str:
    """A one-line description of this machine (CPU model and vector extensions, cores, Python)."""
    import os

    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    cpu = _cpuinfo(lines, "model name") or platform.processor() or platform.machine()
    flags = set(_cpuinfo(lines, "flags").split())
    isa = "/".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8") if f in flags)
    return (f"{cpu}{f' ({isa})' if isa else ''}, {os.cpu_count()} logical cores, Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d')}")


def _cpuinfo(lines: list[str], key: str) -> str:
    """The value of the first ``key : value`` line of ``/proc/cpuinfo`` (empty when there is none)."""
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(key) and ":" in line), "")


def write_section(name: str, markdown: str, doc: Path = DEFAULT_DOC) -> Path:
    """Replace (or append) the section ``name`` of the benchmarks document with ``markdown``."""
    doc.parent.mkdir(parents=True, exist_ok=True)
    text = doc.read_text() if doc.exists() else _HEADER
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text)
    return doc
