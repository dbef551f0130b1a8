"""A clone of the repository works by itself: no ``../shared``, no ``VIGIL_PED2_DIR`` (marker ``clone``).

The test clones the committed HEAD into a temporary folder (whose parent holds no ``shared``), gives the
clone a virtual environment of its own with the clone installed in it (editable, as ``make install`` does;
the third-party packages are shared with this checkout's ``.venv`` through a ``.pth`` line, so nothing is
downloaded), then runs there:

* ``make test-fast`` (every unit test, no servers);
* the demo in a short mode: one camera playing the shipped ``Test001`` clip through the local Kafka and
  Redis (started by ``make up``; a missing server fails with that command), which must score the clip's
  frames and write its summary.

Deselected by default; ``make test-clone`` runs it (several minutes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.clone


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(argv)} failed ({out.returncode}) in {cwd}:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return out


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The clone and the environment to run in it (its own venv first on PATH, no VIGIL_PED2_DIR)."""
    dest = tmp_path_factory.mktemp("clone") / "vigil"
    env = {k: v for k, v in os.environ.items() if k not in {"VIGIL_PED2_DIR", "PYTHONPATH", "VIRTUAL_ENV"}}
    _run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(dest)], REPO, env, 300)
    assert not (dest.parent / "shared").exists() and not (dest / ".venv").exists()
    _run([sys.executable, "-m", "venv", "--without-pip", str(dest / ".venv")], dest, env, 120)
    python = dest / ".venv" / "bin" / "python"
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())  # fmt: skip
    (site / "shared-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # this venv's packages, not its vigil
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", "."], dest, env, 600)
    env["PATH"] = f"{dest / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
    where = _run([str(python), "-c", "import vigil.shared, sys; print(vigil.shared.__path__[0])"], dest, env, 60)
    assert where.stdout.strip() == str(dest / "shared"), f"the clone imports vigil from {where.stdout.strip()}"
    return dest, env


def test_make_test_fast_passes_in_a_clone(clone: tuple[Path, dict[str, str]]) -> None:
    dest, env = clone
    out = _run(["make", "test-fast"], dest, env, 1800)
    assert " passed" in out.stdout and " failed" not in out.stdout, out.stdout[-2000:]


def test_short_demo_runs_in_a_clone_on_the_shipped_clips(
    clone: tuple[Path, dict[str, str]], kafka_settings, redis_settings  # noqa: ANN001
) -> None:  # fmt: skip
    dest, env = clone
    workdir = dest / ".state" / "demo"
    out = _run([str(dest / ".venv" / "bin" / "vigil"), "demo", "--clips", "Test001", "--timeout", "150",
                "--workdir", str(workdir)], dest, env, 600)  # fmt: skip
    summary = json.loads((workdir / "last_summary.json").read_text())
    assert set(summary["per_clip"]) == {"Test001"}, out.stdout[-2000:]
    assert summary["frames_processed"] >= 150, f"the worker scored too few of the clip's 180 frames: {summary}"
    assert summary["median_capture_to_score_ms"] is not None, summary
