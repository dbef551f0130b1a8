"""Deterministic Moving MNIST-style anomaly data: two digits bouncing in a 64x64 frame.

Digit images: scikit-learn's packaged handwritten digits (``sklearn.datasets.load_digits``, 1797
8x8 images, shipped inside the wheel, no download), upscaled to 28x28 with bilinear interpolation.
No PyPI package found ships the full 28x28 MNIST set (``detection-moving-mnist`` is an 18 kB
wheel that downloads MNIST at run time), so this is a named deviation from the paper's MNIST.

The digits are split once, with a fixed permutation, into disjoint train and test pools. A test
set holds normal sequences and two corruptions of the last frame: ``temporal`` (last frame replaced
by the first) and ``spatial`` (a 3x3 black square painted where a digit is).

Example:
    >>> data = make_dataset(seed=1, n_train=2, n_normal=1, n_temporal=1, n_spatial=1)
    >>> data["train"].shape, data["test"].shape, data["labels"].tolist()
    ((2, 20, 64, 64), (3, 20, 64, 64), [0, 1, 2])
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SIZE = 64
DIGIT = 28
FRAMES = 20
SQUARE = 3
POOL_SEED = 12345
TRAIN_FRACTION = 0.7
KINDS = ("normal", "temporal", "spatial")
"""Label ``k`` of a test sequence is ``KINDS[k]``."""


def digit_images() -> np.ndarray:
    """All 1797 scikit-learn digits as ``(N, 28, 28)`` uint8 in [0, 255] (bilinear 8 -> 28 upscale)."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    small = load_digits().images.astype(np.float32) / 16.0
    big = zoom(small, (1, DIGIT / 8, DIGIT / 8), order=1, mode="nearest", grid_mode=True)
    return (np.clip(big, 0.0, 1.0) * 255).round().astype(np.uint8)


def digit_pools(n_images: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint ``(train, test)`` index pools over ``n_images`` digits (fixed, seed-independent split)."""
    order = np.random.default_rng(POOL_SEED).permutation(n_images)
    cut = int(round(n_images * TRAIN_FRACTION))
    return np.sort(order[:cut]), np.sort(order[cut:])


def trajectory(rng: np.random.Generator, frames: int = FRAMES) -> np.ndarray:
    """Top-left corners ``(frames, 2)`` int of one digit moving at constant speed, bouncing off borders."""
    limit = float(SIZE - DIGIT)
    pos = rng.uniform(0.0, limit, size=2)
    angle = rng.uniform(0.0, 2 * np.pi)
    vel = rng.uniform(2.0, 4.0) * np.array([np.sin(angle), np.cos(angle)])
    out = np.empty((frames, 2), np.int64)
    for t in range(frames):
        out[t] = np.round(pos)
        pos = pos + vel
        for k in range(2):  # reflect off the borders
            if pos[k] < 0:
                pos[k], vel[k] = -pos[k], -vel[k]
            elif pos[k] > limit:
                pos[k], vel[k] = 2 * limit - pos[k], -vel[k]
    return out


def make_sequence(rng: np.random.Generator, digits: np.ndarray, pool: np.ndarray,
                  n_digits: int = 2) -> np.ndarray:
    """One ``(FRAMES, 64, 64)`` uint8 sequence of ``n_digits`` digits from ``pool`` (overlaps: max)."""
    seq = np.zeros((FRAMES, SIZE, SIZE), np.uint8)
    for _ in range(n_digits):
        image = digits[rng.choice(pool)]
        for t, (y, x) in enumerate(trajectory(rng)):
            view = seq[t, y:y + DIGIT, x:x + DIGIT]
            np.maximum(view, image, out=view)
    return seq


def spatial_square(frame: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left ``(y, x)`` of a 3x3 square lying on a digit: all nine pixels bright if possible.

    Chooses at random among squares whose darkest pixel is the brightest possible (so every pixel
    of the square is on a digit, i.e. > 0).
    """
    from numpy.lib.stride_tricks import sliding_window_view

    mins = sliding_window_view(frame, (SQUARE, SQUARE)).min(axis=(-2, -1))
    best = mins.max()
    if best == 0:
        raise ValueError("No 3x3 square lies on a digit in this frame.")
    ys, xs = np.nonzero(mins >= min(int(best), 128))
    k = rng.integers(len(ys))
    return int(ys[k]), int(xs[k])


def corrupt(seq: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Corrupt the last frame of ``seq``; returns ``(new sequence, (64, 64) bool mask of changed pixels)``."""
    out = seq.copy()
    mask = np.zeros((SIZE, SIZE), bool)
    if kind == "temporal":
        out[-1] = seq[0]
        mask = seq[0] != seq[-1]
    elif kind == "spatial":
        y, x = spatial_square(seq[-1], rng)
        out[-1, y:y + SQUARE, x:x + SQUARE] = 0
        mask[y:y + SQUARE, x:x + SQUARE] = True
    elif kind != "normal":
        raise ValueError(f"kind must be one of {KINDS}. Received: {kind!r}")
    return out, mask


def labelled_sequences(rng: np.random.Generator, digits: np.ndarray, pool: np.ndarray, n_normal: int,
                       n_temporal: int, n_spatial: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(sequences, labels, masks)``: normal sequences then the two corruptions, digits from ``pool``."""
    labels = np.repeat(np.arange(3, dtype=np.int8), [n_normal, n_temporal, n_spatial])
    seqs, masks = [], []
    for label in labels:
        seq, mask = corrupt(make_sequence(rng, digits, pool), KINDS[label], rng)
        seqs.append(seq)
        masks.append(mask)
    return np.stack(seqs), labels, np.stack(masks)


def make_dataset(seed: int = 0, n_train: int = 400, n_normal: int = 200, n_temporal: int = 100,
                 n_spatial: int = 100) -> dict[str, np.ndarray]:
    """Train (normal only, train pool) and test (test pool) sequences; identical arrays for a seed.

    Returns:
        ``train`` ``(n_train, 20, 64, 64)`` uint8; ``test`` ``(n_test, 20, 64, 64)`` uint8;
        ``labels`` ``(n_test,)`` int8 (index into :data:`KINDS`); ``masks`` ``(n_test, 64, 64)`` bool
        (pixels of the last frame that the corruption changed); ``train_pool``/``test_pool`` digit
        indices; ``seed``.
    """
    digits = digit_images()
    train_pool, test_pool = digit_pools(len(digits))
    rng_train, rng_test = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    train = np.stack([make_sequence(rng_train, digits, train_pool) for _ in range(n_train)])
    test, labels, masks = labelled_sequences(rng_test, digits, test_pool, n_normal, n_temporal, n_spatial)
    return {"train": train, "test": test, "labels": labels, "masks": masks,
            "train_pool": train_pool, "test_pool": test_pool, "seed": np.array(seed)}


def make_validation(seed: int = 0, n_normal: int = 100, n_temporal: int = 50,
                    n_spatial: int = 50) -> dict[str, np.ndarray]:
    """A labelled validation set for choosing the score feature without the test set: new sequences of
    **train-pool** digits (the test digits are never used), corrupted as the test set is, from a random stream
    of its own (the third child of ``seed``; :func:`make_dataset` uses the first two).

    Returns:
        ``val`` ``(n, 20, 64, 64)`` uint8, ``val_labels`` ``(n,)`` int8, ``val_masks`` ``(n, 64, 64)`` bool.
    """
    digits = digit_images()
    train_pool, _ = digit_pools(len(digits))
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[2])
    seqs, labels, masks = labelled_sequences(rng, digits, train_pool, n_normal, n_temporal, n_spatial)
    return {"val": seqs, "val_labels": labels, "val_masks": masks}


def save_dataset(data: dict[str, np.ndarray], path: str | os.PathLike) -> Path:
    """Write the arrays to an uncompressed-pickle-free ``.npz``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **data)
    return path


def load_dataset(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a dataset written by :func:`save_dataset` (``allow_pickle=False``)."""
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def write_videos(sequences: np.ndarray, folder: str | os.PathLike, fps: int = 10) -> list[Path]:
    """Write ``(N, T, 64, 64)`` uint8 sequences as lossless FFV1 ``.mkv`` files (the layout
    :func:`vigil.model.train.train` reads: a folder of normal videos)."""
    import av

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, seq in enumerate(sequences):
        path = folder / f"seq_{i:05d}.mkv"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("ffv1", rate=fps)
            stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "gray"
            for frame in seq:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="gray")))
            container.mux(stream.encode(None))
        paths.append(path)
    return paths
