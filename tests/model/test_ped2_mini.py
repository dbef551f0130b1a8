"""The mini UCSD Ped2 set shipped in data/ped2-mini, and the fallback to it when the full set is absent."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from vigil.model import data as model_data
from vigil.model.data import load_ped2_labels, load_ped2_masks, ped2_dir, read_video, require_ped2_clips
from vigil.model.ped2_data import MINI_CLIPS, sha256

REPO = Path(__file__).resolve().parents[2]
MINI = REPO / "data" / "ped2-mini"
MAX_BYTES = 5_000_000


def test_shipped_mini_set_is_complete_and_consistent() -> None:
    manifest = json.loads((MINI / "manifest.json").read_text())
    assert sorted(manifest["clips"]) == sorted(MINI_CLIPS)
    assert (manifest["fps"], manifest["width"], manifest["height"]) == (10, 360, 240)
    labels, masks = load_ped2_labels(MINI), load_ped2_masks(MINI)
    assert sorted(labels) == sorted(masks) == ["Test001", "Test002"]
    for name, entry in manifest["clips"].items():
        path = MINI / entry["file"]
        assert entry["file"] == f"{'train' if name.startswith('Train') else 'test'}/{name}.mkv"
        assert entry["bytes"] == path.stat().st_size and entry["sha256_file"] == sha256(path), f"{path} changed"
        frames = read_video(path, 240, 360, 1)[..., 0]
        assert len(frames) == entry["frames"] and entry["sha256_decoded_gray"] == sha256(frames.tobytes())
        if name in labels:
            assert len(labels[name]) == entry["frames"]
            assert masks[name].shape == (entry["frames"], 240, 360) and masks[name].dtype == np.uint8
            assert np.array_equal(masks[name].reshape(entry["frames"], -1).any(1), labels[name].astype(bool))
    files = sorted(str(p.relative_to(MINI)) for p in MINI.rglob("*") if p.is_file())
    assert files == sorted(["README.md", "labels_frame_ped2.json", "manifest.json", "masks_pixel_ped2.npz",
                            *(e["file"] for e in manifest["clips"].values())])  # fmt: skip
    assert sum((MINI / f).stat().st_size for f in files) < MAX_BYTES


def test_mini_readme_cites_the_dataset_and_says_how_it_was_made() -> None:
    readme = (MINI / "README.md").read_text()
    for needed in ("Mahadevan", "Bhalodia", "Vasconcelos", "Anomaly Detection in Crowded Scenes", "CVPR", "2010",
                   "TPAMI", "2014", "Statistical Visual Computing Lab", "research", "lossy",
                   "vigil data ped2-mini --from", "crf=18"):  # fmt: skip
        assert needed in readme, f"data/ped2-mini/README.md lacks {needed!r}"


@pytest.fixture
def no_full_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with no ../shared/data/ucsd_ped2 and no $VIGIL_PED2_DIR."""
    monkeypatch.delenv(model_data.PED2_ENV, raising=False)
    cwd = tmp_path / "clone"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def test_ped2_dir_falls_back_to_the_shipped_mini_set(no_full_set: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="vigil.model.data"):
        found = ped2_dir(None)
    assert found.resolve() == MINI.resolve()
    assert "only 2 test clips" in caplog.text and "vigil data ped2 --from" in caplog.text
    assert model_data.PED2_ENV in caplog.text


def test_ped2_dir_keeps_the_full_set_first(no_full_set: Path, caplog: pytest.LogCaptureFixture) -> None:
    full = no_full_set.parent / "shared" / "data" / "ucsd_ped2"
    (full / "test").mkdir(parents=True)
    (full / "labels_frame_ped2.json").write_text("{}")
    with caplog.at_level(logging.WARNING):
        assert ped2_dir(None) == Path("..") / "shared" / "data" / "ucsd_ped2"
    assert not caplog.text


def test_an_explicit_or_env_folder_is_never_replaced(no_full_set: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="--data DIR or set VIGIL_PED2_DIR"):
        ped2_dir(no_full_set / "nope")
    monkeypatch.setenv(model_data.PED2_ENV, str(no_full_set / "nope"))
    with pytest.raises(FileNotFoundError, match="vigil data ped2 --from"):
        ped2_dir(None)


def test_without_any_set_the_error_says_how_to_get_one(no_full_set: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_data, "ped2_mini_dir", lambda: None)
    with pytest.raises(FileNotFoundError, match="vigil data ped2 --from <UCSD archive>"):
        ped2_dir(None)


def test_clips_the_mini_set_lacks_are_named_with_how_to_get_them() -> None:
    labels = load_ped2_labels(MINI)
    require_ped2_clips(MINI, ["Test001", "Test002"], labels)
    with pytest.raises(FileNotFoundError, match=r"\['Test003', 'Test012'\].*vigil data ped2 --from"):
        require_ped2_clips(MINI, ["Test001", "Test003", "Test012"], labels)


def test_launcher_default_falls_back_to_the_checkouts_mini_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vigil.tools.launcher import STACK, default_ped2_dir

    monkeypatch.delenv(model_data.PED2_ENV, raising=False)
    clone = tmp_path / "clone"
    (clone / STACK).parent.mkdir(parents=True)
    (clone / STACK).touch()
    (clone / "data" / "ped2-mini").mkdir(parents=True)
    (clone / "data" / "ped2-mini" / "labels_frame_ped2.json").write_text("{}")
    monkeypatch.chdir(clone / "data")
    assert default_ped2_dir() == clone.resolve() / "data" / "ped2-mini"
    full = tmp_path / "shared" / "data" / "ucsd_ped2"
    full.mkdir(parents=True)
    assert default_ped2_dir() == full.resolve()
