"""`vigil alerts tail/list/label` against the real Redis: consumer-group resume, redelivery, history."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest

from vigil.services.scorer import alerts as alerts_mod
from vigil.shared.redis_keys import ALERT_LABELS, ALERTS_STREAM
from vigil.shared.schemas import Alert

pytestmark = pytest.mark.integration


def _alert(cam: str, seq: int, event: str = "open") -> Alert:
    return Alert(alert_id=Alert.make_id(cam, seq, seq), camera_id=cam, event=event, start_seq=seq, start_ns=seq,
                 peak_score=0.99, score=0.99, threshold=0.99, peak_seq=seq)  # fmt: skip


def _tail_once(client, group: str, cam: str, handle) -> None:  # noqa: ANN001
    reads = alerts_mod.tail(client, group, "c1", handle, camera=cam, block_ms=200)
    for _ in range(3):  # pending entries, then new ones, then an empty read
        next(reads)


def test_tail_resumes_and_redelivers_unacknowledged(redis_client) -> None:  # noqa: ANN001
    cam, group = f"tailcam-{uuid.uuid4().hex[:6]}", f"test-{uuid.uuid4().hex[:6]}"
    alerts_mod.ensure_group(redis_client, group, from_start=False)
    try:
        for seq in (1, 2, 3):
            redis_client.xadd(ALERTS_STREAM, {"json": _alert(cam, seq).to_json()})
        seen: list[int] = []
        _tail_once(redis_client, group, cam, lambda a: seen.append(a.start_seq))
        assert seen == [1, 2, 3]

        redis_client.xadd(ALERTS_STREAM, {"json": _alert(cam, 4).to_json()})

        def crash(a: Alert) -> None:
            raise RuntimeError("consumer crashed before acknowledging")

        with pytest.raises(RuntimeError):
            _tail_once(redis_client, group, cam, crash)
        redis_client.xadd(ALERTS_STREAM, {"json": _alert(cam, 5).to_json()})
        seen.clear()
        _tail_once(redis_client, group, cam, lambda a: seen.append(a.start_seq))
        assert seen == [4, 5], "the unacknowledged alert is redelivered first, then new ones; old ones are not"
    finally:
        redis_client.xgroup_destroy(ALERTS_STREAM, group)


def test_alerts_list_and_label_commands(redis_client) -> None:  # noqa: ANN001
    cam = f"listcam-{uuid.uuid4().hex[:6]}"
    redis_client.xadd(ALERTS_STREAM, {"json": _alert(cam, 7).to_json()})
    redis_client.xadd(ALERTS_STREAM, {"json": _alert(cam, 7, "close").to_json()})
    out = subprocess.run([sys.executable, "-m", "vigil.cli", "alerts", "list", "--since", "10m", "--camera", cam],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(f"{cam}:7:0") == 2 and "open" in out.stdout and "close" in out.stdout
    lab = subprocess.run([sys.executable, "-m", "vigil.cli", "alerts", "label", f"{cam}:7:0", "--kind", "bike"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert lab.returncode == 0, lab.stderr
    assert b'"bike"' in redis_client.hget(ALERT_LABELS, f"{cam}:7:0")
    bad = subprocess.run([sys.executable, "-m", "vigil.cli", "alerts", "label", f"{cam}:7:0", "--kind", "Not A Kind!"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode != 0 and "kind must be" in (bad.stdout + bad.stderr)
    redis_client.hdel(ALERT_LABELS, f"{cam}:7:0")


def test_tail_defaults_to_a_group_per_user_and_camera(redis_client) -> None:  # noqa: ANN001
    """A camera filter gets its own group, so it never acknowledges (swallows) other cameras' alerts for others."""
    import getpass

    cam = f"grp-{uuid.uuid4().hex[:6]}"
    redis_client.xadd(ALERTS_STREAM, {"alert_id": "x", "camera_id": cam, "event": "open", "json": _alert(cam, 1).to_json()})
    proc = subprocess.Popen([sys.executable, "-m", "vigil.cli", "alerts", "tail", "--camera", cam],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        want = f"vigil-cli-{getpass.getuser()}-{cam}"
        while time.monotonic() < deadline:
            groups = [g["name"].decode() for g in redis_client.xinfo_groups(ALERTS_STREAM)]
            if want in groups:
                break
            time.sleep(0.2)
        assert want in groups, groups
    finally:
        proc.terminate()
        proc.wait(10)
    redis_client.xgroup_destroy(ALERTS_STREAM, want)
