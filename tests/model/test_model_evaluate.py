"""`vigil evaluate` and `vigil score` on the committed Ped2 model (CI floor on the AUC)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from model_testutils import moving_square_video

from vigil.model.data import ped2_dir

# Measured with the committed model on Test001 + Test002 (see docs/model.md); the floor leaves
# room for numeric differences between machines, not for a broken model (random weights: ~0.5).
AUC_FLOOR = 0.90  # headline (fused) measured 0.952; PredNet alone 0.951 (the stage-2 model, 0.892, fails)


def _vigil(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "vigil.cli", *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def test_evaluate_committed_model_on_anomalous_clips(ped2_root, tmp_path):
    _vigil("evaluate", "--data", str(ped2_root), "--clips", "Test001,Test002", "--out", str(tmp_path))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["frames"] == 360 and 0 < metrics["anomalous_frames"] < 360
    assert metrics["headline"]["kind"] == "causal"
    assert metrics["headline"]["auc"] >= AUC_FLOOR, metrics["headline"]
    assert 0.0 <= metrics["headline"]["eer"] <= 0.5
    assert metrics["prednet_only"]["auc"] >= AUC_FLOOR, metrics["prednet_only"]  # the model itself, not only motion
    assert set(metrics["per_clip_minmax"]) == {"mse", "psnr", "patch_max", "motion_max", "fused"}
    assert metrics["localisation"]["frames"] > 0
    for name in ("roc.png", "clip_scores.png", "localisation.png", "scores.csv"):
        assert (tmp_path / name).stat().st_size > 0


def test_score_writes_per_frame_scores(tmp_path):
    import av

    video = np.repeat(np.repeat(moving_square_video(12, seed=4), 15, axis=1), 15, axis=2)  # 240x360
    with av.open(str(tmp_path / "clip.mkv"), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 360, 240, "gray"
        for f in video:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f[:, :, 0], format="gray")))
        container.mux(stream.encode())
    _vigil("score", str(tmp_path / "clip.mkv"), "--out", str(tmp_path / "out"))
    with (tmp_path / "out" / "scores.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12 and rows[0]["warmup"] == "True" and float(rows[0]["score"]) == 0.0
    assert json.loads((tmp_path / "out" / "scores.json").read_text())["model_id"] == "prednet-ped2"
    assert (tmp_path / "out" / "scores.png").is_file()


def test_missing_data_dir_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="--data DIR or set VIGIL_PED2_DIR"):
        ped2_dir(tmp_path / "nope")


def test_a_card_without_motion_statistics_asks_for_recalibration(tmp_path):
    import shutil

    from vigil.model.evaluate import calibration
    from vigil.model.streaming import DEFAULT_MODEL_DIR

    card = json.loads((DEFAULT_MODEL_DIR / "model_card.json").read_text())
    assert calibration(card)[1]["fused"].log_std > 0
    for f in ("motion_max", "fused"):
        del card["calibration"]["feature_stats"][f]
    with pytest.raises(ValueError, match="vigil calibrate"):
        calibration(card)
    shutil.copytree(DEFAULT_MODEL_DIR, tmp_path / "m")
    (tmp_path / "m" / "model_card.json").write_text(json.dumps(card))
    _vigil("calibrate", "--model", str(tmp_path / "m"))  # the card's held-out clips, from ../shared
    assert "fused" in calibration(json.loads((tmp_path / "m" / "model_card.json").read_text()))[1]
