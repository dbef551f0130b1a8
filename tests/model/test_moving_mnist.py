"""Tests of the Moving MNIST anomaly generator and the protocol's metric."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from vigil.model.mmnist_eval import accuracy_at_equal_pr, metrics
from vigil.model.moving_mnist import (
    DIGIT,
    FRAMES,
    SIZE,
    SQUARE,
    digit_images,
    digit_pools,
    load_dataset,
    make_dataset,
    save_dataset,
    trajectory,
)

SMALL = {"n_train": 6, "n_normal": 4, "n_temporal": 4, "n_spatial": 6}


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    """A small dataset."""
    return make_dataset(seed=3, **SMALL)


def _digest(d: dict[str, np.ndarray]) -> str:
    return hashlib.sha256(b"".join(d[k].tobytes() for k in sorted(d))).hexdigest()


def test_same_seed_identical_bytes_and_files(data, tmp_path) -> None:
    again = make_dataset(seed=3, **SMALL)
    assert _digest(again) == _digest(data)
    a, b = save_dataset(data, tmp_path / "a.npz"), save_dataset(again, tmp_path / "b.npz")
    assert _digest(load_dataset(a)) == _digest(load_dataset(b))


def test_different_seed_differs(data) -> None:
    other = make_dataset(seed=4, **SMALL)
    assert not np.array_equal(other["train"], data["train"])
    assert not np.array_equal(other["test"], data["test"])


def test_digit_pools_disjoint_and_cover() -> None:
    n = len(digit_images())
    train, test = digit_pools(n)
    assert not set(train.tolist()) & set(test.tolist())
    assert len(train) + len(test) == n
    images = digit_images()
    assert images.shape == (n, DIGIT, DIGIT) and images.dtype == np.uint8 and images.max() == 255


def test_shapes_and_ranges(data) -> None:
    assert data["train"].shape == (6, FRAMES, SIZE, SIZE) and data["train"].dtype == np.uint8
    assert data["test"].shape == (14, FRAMES, SIZE, SIZE)
    assert data["labels"].tolist() == [0] * 4 + [1] * 4 + [2] * 6
    assert data["masks"].shape == (14, SIZE, SIZE) and data["masks"].dtype == bool
    assert data["train"].max() > 200 and data["train"].min() == 0
    assert (data["train"] > 0).mean(axis=(2, 3)).min() > 0.02  # two digits visible in every frame


def test_normal_sequences_unchanged_mask_empty(data) -> None:
    assert not data["masks"][data["labels"] == 0].any()


def test_temporal_last_frame_is_first(data) -> None:
    for seq, mask in zip(data["test"][data["labels"] == 1], data["masks"][data["labels"] == 1], strict=True):
        assert np.array_equal(seq[-1], seq[0])
        assert mask.any()


def test_spatial_square_is_black_3x3_on_digit() -> None:
    clean = make_dataset(seed=3, **SMALL)
    for i in np.nonzero(clean["labels"] == 2)[0]:
        mask = clean["masks"][i]
        ys, xs = np.nonzero(mask)
        assert mask.sum() == SQUARE * SQUARE and np.ptp(ys) == SQUARE - 1 and np.ptp(xs) == SQUARE - 1
        last = clean["test"][i, -1]
        assert (last[mask] == 0).all()


def test_spatial_changes_only_mask_pixels_on_digit(monkeypatch) -> None:
    import vigil.model.moving_mnist as mm

    captured = []
    real = mm.corrupt

    def spy(seq, kind, rng):
        out, mask = real(seq, kind, rng)
        captured.append((seq, out, mask, kind))
        return out, mask

    monkeypatch.setattr(mm, "corrupt", spy)
    mm.make_dataset(seed=5, n_train=1, n_normal=1, n_temporal=1, n_spatial=8)
    spatial = [c for c in captured if c[3] == "spatial"]
    assert len(spatial) == 8
    for before, after, mask, _ in spatial:
        changed = before != after
        assert not changed[:-1].any()
        assert np.array_equal(changed[-1], mask & (before[-1] > 0))
        assert (before[-1][mask] > 0).all()  # all nine pixels lie on a digit
        assert (after[-1][mask] == 0).all()


def test_bouncing_keeps_digits_inside() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        path = trajectory(rng, frames=200)
        assert path.min() >= 0 and path.max() <= SIZE - DIGIT
        step = np.abs(np.diff(path, axis=0))
        assert step.max() <= 5  # constant speed <= 4 px/frame (+ rounding)


def test_accuracy_at_equal_pr_hand_made() -> None:
    y = np.array([1, 1, 0, 0, 0, 0])
    assert accuracy_at_equal_pr(np.array([.9, .8, .1, .2, .3, .4]), y) == 1.0
    # top-2 = {0.9 (pos), 0.7 (neg)}: TP=1, FP=1, FN=1 -> P=R=0.5, accuracy 4/6
    assert accuracy_at_equal_pr(np.array([.9, .1, .7, .2, .3, .4]), y) == pytest.approx(4 / 6)
    assert accuracy_at_equal_pr(np.array([.1, .2, .9, .8, .3, .4]), y) == pytest.approx(2 / 6)
    with pytest.raises(ValueError):
        accuracy_at_equal_pr(np.array([1.0]), np.array([1, 0]))


def test_metrics_per_kind() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    scores = np.array([.1, .2, .3, .4, .9, .8, .35, .05])
    m = metrics(scores, labels)
    assert m["temporal"] == {"accuracy_pr": 1.0, "auc": 1.0, "n": 6}
    assert m["spatial"]["n"] == 6 and m["spatial"]["auc"] == pytest.approx(3 / 8)
    assert m["all"]["n"] == 8


def test_mmnist_train_chooses_each_architectures_objective_and_window_and_rejects_bad_options(tmp_path, data,
                                                                                               monkeypatch):
    import typer
    from typer.testing import CliRunner

    import vigil.model.train as train_module
    from vigil.model import mmnist_cli

    seen: list = []
    monkeypatch.setattr(train_module, "train", lambda config, settings: seen.append((config, settings)) or
                        {"training": {"loss": [1.0], "val_loss": [1.0]}})
    app, bench = typer.Typer(), typer.Typer()
    mmnist_cli.register(app, bench)
    path = save_dataset(data, tmp_path / "data.npz")
    base = ["mmnist", "train", "--data", str(path), "--out", str(tmp_path / "m")]
    runner = CliRunner()
    for arch in ("prednet", "convlstm-ae", "inpaint"):
        result = runner.invoke(app, [*base, "--arch", arch])
        assert result.exit_code == 0, result.output
    objectives = [s.objective for _, s in seen]
    assert objectives == ["sparse", "sparse", "default"]
    assert (seen[0][0].nt, seen[1][0].window, seen[2][0].context) == (10, 10, 4)
    assert all(s.location_clips == mmnist_cli.LOCATION_CLIPS for _, s in seen)
    for args, message in ((["--objective", "l1"], "--objective must be auto, sparse or default"),
                          (["--arch", "inpaint", "--objective", "sparse"], "available for prednet, convlstm-ae"),
                          (["--nt", "1"], "--nt must be 0"), (["--arch", "vpn"], "--arch must be one of")):
        result = runner.invoke(app, [*base, *args])
        assert result.exit_code == 2 and message in " ".join(result.output.replace("│", " ").split()), args
    assert len(seen) == 3
