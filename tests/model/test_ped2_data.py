"""`vigil data ped2`: the official UCSD archive layout (tif frames, bmp masks, UCSDped2.m) -> Vigil's layout."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from vigil.model import cli as model_cli
from vigil.model.data import load_ped2_labels, load_ped2_masks, read_video
from vigil.model.ped2_data import convert_official, parse_gt_frames, sha256

H, W = 24, 36
TRAIN = {"Train001": 3, "Train002": 4}
TEST = {"Test001": 5, "Test002": 4}
GT_M = """TestVideoFile = {};
% frame-level ground truth, 1-based inclusive
TestVideoFile{end+1}.gt_frame = [2:4];
TestVideoFile{end+1}.gt_frame = [1:1, 3:4];
"""


def _official_tree(root: Path) -> dict[str, np.ndarray]:
    """A tiny UCSD_Anomaly_Dataset.v1p2 archive under ``root``; returns the frames written per clip."""
    rng = np.random.default_rng(0)
    ped2 = root / "UCSD_Anomaly_Dataset.v1p2" / "UCSDped2"
    frames = {}
    for name, n in {**TRAIN, **TEST}.items():
        folder = ped2 / ("Train" if name.startswith("Train") else "Test") / name
        folder.mkdir(parents=True)
        frames[name] = rng.integers(0, 256, (n, H, W), dtype=np.uint8)
        for i, frame in enumerate(frames[name]):
            assert cv2.imwrite(str(folder / f"{i + 1:03d}.tif"), frame)
    (ped2 / "Train" / "Train001" / ".DS_Store").write_bytes(b"\0junk")  # as in the real archive: skipped
    gt = ped2 / "Test" / "Test001_gt"
    gt.mkdir()
    for i in range(TEST["Test001"]):
        mask = np.zeros((H, W), np.uint8)
        if 1 <= i <= 3:
            mask[5:10, 7 + i:12 + i] = 255
        assert cv2.imwrite(str(gt / f"{i + 1:03d}.bmp"), mask)
    (ped2 / "Test" / "UCSDped2.m").write_text(GT_M)
    return frames


def test_official_archive_converts_to_vigils_layout_losslessly(tmp_path: Path) -> None:
    frames = _official_tree(tmp_path / "src")
    out = tmp_path / "ped2"
    manifest = convert_official(tmp_path / "src" / "UCSD_Anomaly_Dataset.v1p2", out, progress=False)

    assert {k: v.tolist() for k, v in load_ped2_labels(out).items()} == {"Test001": [0, 1, 1, 1, 0], "Test002": [1, 0, 1, 1]}
    masks = load_ped2_masks(out)
    assert sorted(masks) == ["Test001"], "only clips with a _gt folder have masks"
    assert masks["Test001"].dtype == np.uint8 and masks["Test001"].shape == (5, H, W)
    assert set(np.unique(masks["Test001"])) == {0, 1}
    assert [bool(m.any()) for m in masks["Test001"]] == [False, True, True, True, False]
    assert (manifest["fps"], manifest["width"], manifest["height"]) == (10, W, H)
    assert sorted(manifest["clips"]) == sorted(frames)
    for name, expected in frames.items():
        entry = manifest["clips"][name]
        path = out / entry["file"]
        assert entry["file"] == f"{'train' if name.startswith('Train') else 'test'}/{name}.mkv"
        assert entry["frames"] == len(expected) and entry["bytes"] == path.stat().st_size
        assert entry["sha256_file"] == sha256(path)
        decoded = read_video(path, H, W, 1)[..., 0]
        np.testing.assert_array_equal(decoded, expected)  # lossless: the exact gray frames
        assert entry["sha256_decoded_gray"] == sha256(decoded.tobytes())
    assert json.loads((out / "manifest.json").read_text()) == manifest


def _app() -> typer.Typer:
    app, bench = typer.Typer(), typer.Typer()
    model_cli.register(app, bench)
    return app


def test_cli_converts_and_refuses_a_non_empty_out(tmp_path: Path) -> None:
    _official_tree(tmp_path / "src")
    out = tmp_path / "out"
    args = ["data", "ped2", "--from", str(tmp_path / "src" / "UCSD_Anomaly_Dataset.v1p2" / "UCSDped2"), "--out", str(out)]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "test").iterdir()) == ["Test001.mkv", "Test002.mkv"]
    again = CliRunner().invoke(_app(), args)
    assert again.exit_code == 2 and "is not empty" in again.output and "--overwrite" in again.output
    assert CliRunner().invoke(_app(), [*args, "--overwrite"]).exit_code == 0
    missing = CliRunner().invoke(_app(), ["data", "ped2", "--from", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert missing.exit_code == 2 and "Not the official UCSD Ped2 layout" in missing.output


def test_missing_parts_of_the_archive_are_named(tmp_path: Path) -> None:
    (tmp_path / "UCSDped2" / "Train" / "Train001").mkdir(parents=True)
    with pytest.raises(FileNotFoundError) as err:
        convert_official(tmp_path, tmp_path / "out", progress=False)
    missing = str(err.value).split("missing ", 1)[1].split(". ", 1)[0]
    assert missing == "Test/Test001/, Test/UCSDped2.m"
    assert "--from" in str(err.value)
    assert not (tmp_path / "out").exists(), "nothing is written before the input is validated"


def test_ground_truth_must_match_the_test_clips(tmp_path: Path) -> None:
    _official_tree(tmp_path)
    ped2 = tmp_path / "UCSD_Anomaly_Dataset.v1p2" / "UCSDped2"
    (ped2 / "Test" / "UCSDped2.m").write_text("TestVideoFile{end+1}.gt_frame = [2:4];\n")
    with pytest.raises(ValueError, match="lists 1 clips, but Test/ holds 2"):
        convert_official(ped2, tmp_path / "out", progress=False)
    (ped2 / "Test" / "UCSDped2.m").write_text(GT_M.replace("[2:4]", "[2:9]"))
    with pytest.raises(ValueError, match="outside the clip's 5 frames"):
        convert_official(ped2, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists(), "the labels are checked before anything is written"


def test_masks_must_cover_every_frame(tmp_path: Path) -> None:
    _official_tree(tmp_path)
    ped2 = tmp_path / "UCSD_Anomaly_Dataset.v1p2" / "UCSDped2"
    (ped2 / "Test" / "Test001_gt" / "005.bmp").unlink()
    with pytest.raises(ValueError, match="one mask per frame"):
        convert_official(ped2, tmp_path / "out", progress=False)


def test_ground_truth_file_variants_parse() -> None:
    text = "TestVideoFile{1}.gt_frame = [61 : 180];\nTestVideoFile{2}.gt_frame = [7];\n% TestVideoFile{3}.gt_frame = [1:2];"
    assert parse_gt_frames(text) == [[(61, 180)], [(7, 7)]]
    with pytest.raises(ValueError, match="numbered 1..N"):
        parse_gt_frames("TestVideoFile{2}.gt_frame = [1:2];")
