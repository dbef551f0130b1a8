"""`POST /v1/score`: a real clip through the live path, and every way an upload is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import OPERATOR, VIEWER, auth


def write_clip(path: Path, n_frames: int = 12, height: int = 240, width: int = 360) -> Path:
    """A gray FFV1 clip of a bright square moving over a noisy background (written with PyAV)."""
    import av

    rng = np.random.default_rng(4)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "gray"
        for t in range(n_frames):
            frame = rng.integers(10, 30, size=(height, width), dtype=np.uint8)
            frame[90:150, 20 + 15 * t : 80 + 15 * t] = 220
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="gray")))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:  # noqa: ANN001
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mkv")


def _post(client, data: bytes, token: str = OPERATOR, name: str = "clip.mkv", field: str = "file"):  # noqa: ANN001, ANN202
    return client.post("/v1/score", files={field: (name, data, "video/x-matroska")}, headers=auth(token))


def test_a_real_clip_is_scored_frame_by_frame_through_the_live_path(client, clip) -> None:  # noqa: ANN001
    r = _post(client, clip.read_bytes())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_id"] == "prednet-ped2" and body["model_version"] and isinstance(body["threshold"], float)
    frames = body["frames"]
    assert [f["frame"] for f in frames] == list(range(12))
    assert frames[0]["warmup"] and frames[0]["score"] == 0.0 and not frames[-1]["warmup"]  # the worker's 10 warm-up frames
    assert all(f["mse"] is not None and f["mse"] >= 0 for f in frames) and isinstance(body["alerts"], list)


def test_the_same_scores_as_vigil_score(service, clip, tmp_path) -> None:  # noqa: ANN001
    import csv

    from vigil.model.evaluate import score_video
    from vigil.model.streaming import DEFAULT_MODEL_DIR

    ours = service.ctx.scorer.score_file(clip)
    with score_video(clip, DEFAULT_MODEL_DIR, tmp_path).open() as fh:
        theirs = [float(row["score"]) for row in csv.DictReader(fh)]
    assert [f.score for f in ours.frames] == pytest.approx(theirs, abs=1e-4)


def test_refused_uploads_say_why(client, service, clip, monkeypatch) -> None:  # noqa: ANN001
    r = _post(client, b"\x00garbage, not a video" * 50)
    assert r.status_code == 422 and "not a readable video" in r.json()["detail"], r.text
    r = _post(client, clip.read_bytes()[:600])  # a truncated file
    assert r.status_code == 422, r.text
    assert _post(client, clip.read_bytes(), field="video").status_code == 422
    assert _post(client, b"", name="empty.mkv").json()["detail"] == "the uploaded file is empty"
    r = client.post("/v1/score", content=clip.read_bytes(), headers=auth(OPERATOR) | {"Content-Type": "video/x-matroska"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]
    monkeypatch.setattr(service.ctx.scorer, "max_frames", 5)
    r = _post(client, clip.read_bytes())
    assert r.status_code == 422 and "longer than the limit of 5 frames" in r.json()["detail"]


def test_an_oversize_upload_is_413_while_streaming(client, service, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(service.ctx.settings, "max_upload_bytes", 4096)
    r = _post(client, bytes(10_000))
    assert r.status_code == 413 and "4096" in r.json()["detail"]

    def chunks():  # noqa: ANN202 - no Content-Length: the limit is enforced on the bytes read
        yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.mkv\"\r\n\r\n"
        for _ in range(10):
            yield bytes(1000)

    r = client.post("/v1/score", content=chunks(), headers=auth(OPERATOR) | {"Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413, r.text


def test_scoring_needs_an_operator_token(client, clip) -> None:  # noqa: ANN001
    assert _post(client, clip.read_bytes(), token="wrong-token-" + "w" * 20).status_code == 401
    r = _post(client, clip.read_bytes(), token=VIEWER)
    assert r.status_code == 403 and "operator" in r.json()["detail"]
