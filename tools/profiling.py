"""Sampling profiles of a running service (py-spy), summarised as the docs' tables.

`vigil bench worker-profile` attaches py-spy to the worker for the measured window of a `vigil bench e2e`
run and writes where the worker's threads spend their time (docs/benchmarks.md, "Worker profile").
py-spy samples the process from outside (no code of ours runs in the worker), non-blocking, so the
profiled run is barely slowed; its latencies are still not used for the sustained-cameras table.

Example:
    >>> raw = "a (model/x.py:1);b (y.py:2) 3\\na (model/x.py:1);c (z.py:9) 1\\n"
    >>> own, incl, total = top_entries(raw, 2)
    >>> [(r.name, r.share) for r in own], [(r.name, r.share) for r in incl], total
    ([('b (y.py)', 0.75), ('c (z.py)', 0.25)], [('a (model/x.py)', 1.0)], 4)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

PY_SPY_HINT = "py-spy is not installed: `pip install 'vigil[profile]'` (or `pip install py-spy`)"
_LINE = re.compile(r":\d+\)$")
OURS = ("(model/", "(services/", "(shared/", "(tools/", "(vigil/")
"""Where Vigil's own functions live, as py-spy names their files (the inclusive table lists only these)."""


@dataclass(frozen=True)
class Entry:
    """One function of a profile: its name (``function (file)``) and its share of the samples."""

    name: str
    share: float


def find_py_spy() -> str:
    """The py-spy executable: beside this Python (its virtual environment), else on PATH; raises with the fix."""
    here = Path(sys.executable).parent / "py-spy"
    exe = str(here) if here.is_file() else shutil.which("py-spy")
    if exe is None:
        raise FileNotFoundError(PY_SPY_HINT)
    return exe


def start_py_spy(pid: int, seconds: float, out: Path, rate: int = 50) -> subprocess.Popen:
    """Record ``pid`` for ``seconds`` into ``out`` (py-spy's raw collapsed stacks); raises with the fix
    when py-spy is missing."""
    exe = find_py_spy()
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [exe, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))), "--rate", str(rate),
            "--format", "raw", "--output", str(out), "--nonblocking"]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _frame(text: str) -> str:
    """``fn (path/to/file.py:12)`` -> ``fn (path/to/file.py)``: functions, not lines."""
    return _LINE.sub(")", text.strip())


def top_entries(raw: str, n: int = 12) -> tuple[list[Entry], list[Entry], int]:
    """The ``n`` functions with the most samples of their own (self) and in their callees too (inclusive),
    and the number of samples, from py-spy's raw output; the inclusive list names Vigil's functions only."""
    own, incl, total = Counter(), Counter(), 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        k = int(count)
        frames = [_frame(f) for f in stack.split(";") if not f.startswith(("thread ", "process "))]
        if not frames:
            continue
        total += k
        own[frames[-1]] += k
        for f in set(frames):
            if any(o in f for o in OURS):
                incl[f] += k
    rows = [[Entry(name, v / total) for name, v in c.most_common(n)] for c in (own, incl)] if total else [[], []]
    return rows[0], rows[1], total


def profile_table(raw: str, n: int = 12) -> str:
    """Markdown: the top self and inclusive entries side by side."""
    own, incl, total = top_entries(raw, n)
    rows = [f"{total} samples of the worker's threads (py-spy, 50 Hz).", "",
            "| # | self: function (file) | share | inclusive: function (file) | share |", "|---|---|---|---|---|"]  # fmt: skip
    for i in range(max(len(own), len(incl))):
        a = own[i] if i < len(own) else Entry("", 0.0)
        b = incl[i] if i < len(incl) else Entry("", 0.0)
        rows.append(f"| {i + 1} | `{a.name}` | {a.share:.1%} | `{b.name}` | {b.share:.1%} |")
    return "\n".join(rows)
