"""Video reading and training sequences (Ped2 layout or any folder of videos PyAV reads)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vigil.model.preprocess import InputSpec, to_model_input

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mkv", ".mp4", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")
PED2_ENV = "VIGIL_PED2_DIR"


@dataclass
class Clip:
    """A decoded clip at model resolution.

    Attributes:
        name: Clip name (file stem).
        frames: ``(T, H, W, C)`` uint8.
    """

    name: str
    frames: np.ndarray


def read_video(path: str | os.PathLike, height: int, width: int, channels: int) -> np.ndarray:
    """Decode all frames of a video with PyAV and convert each with :func:`to_model_input`, as ingest does.

    Returns:
        ``(T, height, width, channels)`` uint8, gray or BGR (area resize).
    """
    import av

    spec = InputSpec(height, width, channels)
    with av.open(str(path)) as container:
        frames = [to_model_input(f, spec) for f in container.decode(video=0)]
    if not frames:
        raise ValueError(f"No video frames decoded. Received: path={path}")
    return np.stack(frames)


def list_videos(folder: str | os.PathLike) -> list[Path]:
    """Video files under ``folder`` (recursively), sorted; raises if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Video folder not found: {folder}. Pass an existing folder of videos.")
    videos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise FileNotFoundError(f"No videos ({', '.join(VIDEO_SUFFIXES)}) under {folder}.")
    return videos


def training_folder(data: str | os.PathLike) -> Path:
    """The folder of normal training videos: ``data/train`` for the Ped2 layout, else ``data``."""
    data = Path(data)
    return data / "train" if (data / "train").is_dir() else data


def load_clips(paths: list[Path], height: int, width: int, channels: int, progress: bool = True) -> list[Clip]:
    """Decode ``paths`` into :class:`Clip` objects, with a progress bar."""
    from tqdm import tqdm

    return [Clip(p.stem, read_video(p, height, width, channels))
            for p in tqdm(paths, desc="decode", unit="clip", disable=not progress)]


def split_clips(paths: list[Path], n_val: int) -> tuple[list[Path], list[Path]]:
    """Hold out the last ``n_val`` clips (by sorted name) for validation."""
    if not 0 <= n_val < len(paths):
        raise ValueError(f"n_val must be in [0, {len(paths) - 1}]. Received: n_val={n_val}")
    return (paths[:-n_val], paths[-n_val:]) if n_val else (paths, [])


def sequence_starts(clips: list[Clip], nt: int, stride: int) -> list[tuple[int, int]]:
    """``(clip index, start frame)`` of every ``nt``-frame window inside one clip, every ``stride`` frames."""
    return [(ci, s) for ci, clip in enumerate(clips) for s in range(0, len(clip.frames) - nt + 1, stride)]


def motion_crop_origins(frames: np.ndarray, crop: tuple[int, int], rng: np.random.Generator,
                        motion_share: float = 0.8) -> tuple[int, int]:
    """Top-left corner of a ``crop = (h, w)`` window over a sequence ``(T, H, W, C)``.

    With probability ``motion_share`` the window is drawn in proportion to the motion energy it
    covers (absolute frame differences summed over the sequence), else uniformly: most pixels of
    a fixed camera are static background, so motion-centred windows spend the training time on
    what the model must learn to predict.

    Example:
        >>> seq = np.zeros((3, 8, 8, 1), np.uint8); seq[1:, 7, 7] = 255  # only window (1, 1) moves
        >>> motion_crop_origins(seq, (7, 7), np.random.default_rng(0), motion_share=1.0)
        (1, 1)
    """
    h, w = crop
    big_h, big_w = frames.shape[1:3]
    if h > big_h or w > big_w:
        raise ValueError(f"crop {crop} is larger than the frames {frames.shape[1:3]}.")
    if rng.random() < motion_share and len(frames) > 1:
        energy = np.abs(np.diff(frames.astype(np.int16), axis=0)).sum(axis=(0, 3)).astype(np.float64)
        csum = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        window = csum[h:, w:] - csum[:-h, w:] - csum[h:, :-w] + csum[:-h, :-w]
        total = window.sum()
        if total > 0:
            idx = int(rng.choice(window.size, p=(window / total).ravel()))
            return divmod(idx, window.shape[1])
    return int(rng.integers(0, big_h - h + 1)), int(rng.integers(0, big_w - w + 1))


def window_starts(clips: list[Clip], nt: int, stride: int, strides: tuple[int, ...] = (1,)) -> list[tuple[int, int, int]]:
    """``(clip index, start frame, temporal stride)`` of every ``nt``-frame window inside one clip, starts every
    ``stride`` frames, for each temporal stride (frames ``start, start + s, ..., start + (nt - 1) s``).

    Example:
        >>> window_starts([Clip("a", np.zeros((6, 2, 2, 1), np.uint8))], nt=3, stride=2, strides=(1, 2))
        [(0, 0, 1), (0, 2, 1), (0, 0, 2)]
    """
    return [(ci, s, step) for step in strides for ci, clip in enumerate(clips)
            for s in range(0, len(clip.frames) - (nt - 1) * step, stride)]


def make_sequence_dataset(clips: list[Clip], nt: int, batch_size: int, stride: int = 1,
                          shuffle: bool = True, max_batches: int | None = None, seed: int = 0,
                          crop: tuple[int, int] | None = None, strides: tuple[int, ...] = (1,),
                          target: str = "zeros"):
    """A ``keras.utils.PyDataset`` of ``(frames float32 (B, nt, H, W, C) in [0, 1], target)``.

    Sequences never cross clip boundaries. With ``shuffle``, every epoch draws a new order; with
    ``max_batches`` an epoch is cut to that many batches (a random subset of the windows). With
    ``crop = (h, w)`` each sequence is cut to an ``h x w`` window, mostly centred on motion
    (:func:`motion_crop_origins`); without shuffling the windows are the same every epoch. ``strides``
    are the temporal strides windows are drawn with (augmentation of the ConvLSTM autoencoder: 1, 2, 3).
    ``target``: ``"zeros"`` (``(B, 1)``, PredNet's loss is its own output) or ``"input"`` (the frames
    themselves, for an autoencoder).
    """
    if target not in ("zeros", "input"):
        raise ValueError(f"target must be 'zeros' or 'input'. Received: target={target!r}")
    starts = window_starts(clips, nt, stride, strides)
    if not starts:
        raise ValueError(f"No clip has {nt} frames; nothing to train on.")
    return _sequence_class()(clips, starts, nt, batch_size, shuffle, max_batches, seed, crop, target)


def _sequence_class() -> type:
    """The ``PyDataset`` class of :func:`make_sequence_dataset` (Keras imported on first use)."""
    import keras

    class _Sequences(keras.utils.PyDataset):
        def __init__(self, clips: list[Clip], starts: list[tuple[int, int, int]], nt: int, batch_size: int,
                     shuffle: bool, max_batches: int | None, seed: int, crop: tuple[int, int] | None,
                     target: str) -> None:
            super().__init__()
            self.clips, self.starts, self.nt, self.batch_size = clips, starts, nt, batch_size
            self.shuffle, self.max_batches, self.seed, self.crop, self.target = shuffle, max_batches, seed, crop, target
            self.rng = np.random.default_rng(seed)
            self.order = np.arange(len(starts))
            self.on_epoch_end()

        def __len__(self) -> int:
            n = int(np.ceil(len(self.starts) / self.batch_size))
            return min(n, self.max_batches) if self.max_batches else n

        def on_epoch_end(self) -> None:
            if self.shuffle:
                self.rng.shuffle(self.order)

        def __getitem__(self, idx: int) -> tuple[np.ndarray, np.ndarray]:
            chosen = self.order[idx * self.batch_size:(idx + 1) * self.batch_size]
            rng = self.rng if self.shuffle else np.random.default_rng(self.seed + idx)
            seqs = []
            for i in chosen:
                ci, start, step = self.starts[i]
                seq = self.clips[ci].frames[start:start + (self.nt - 1) * step + 1:step]
                if self.crop is not None:
                    top, left = motion_crop_origins(seq, self.crop, rng)
                    seq = seq[:, top:top + self.crop[0], left:left + self.crop[1]]
                seqs.append(seq)
            x = np.stack(seqs).astype(np.float32) / 255.0
            return x, (x if self.target == "input" else np.zeros((len(chosen), 1), np.float32))

    return _Sequences


PED2_DEFAULT = Path("..") / "shared" / "data" / "ucsd_ped2"
"""Where the full set is looked for last, relative to the working directory (beside the repository)."""
PED2_MINI = Path("data") / "ped2-mini"
"""The small set shipped in the checkout (Test001, Test002, Train015, Train016; docs/data.md)."""
PED2_HOWTO = (f"Get the full set: convert the UCSD archive with `vigil data ped2 --from <UCSD archive> --out DIR`, "
              f"then pass --data DIR or set {PED2_ENV}=DIR (docs/data.md).")


def _is_ped2(path: Path) -> bool:
    return (path / "test").is_dir() and (path / "labels_frame_ped2.json").is_file()


def ped2_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Locate UCSD Ped2: ``explicit``, else ``$VIGIL_PED2_DIR``, else ``../shared/data/ucsd_ped2`` (relative to
    the working directory, i.e. beside the repository when run from it), else the mini set shipped in the
    checkout (:func:`ped2_mini_dir`, with a warning: two test clips only).

    An ``explicit`` folder or ``$VIGIL_PED2_DIR`` that holds no Ped2 is an error, never replaced by the mini set.
    """
    if explicit is not None:
        path = Path(explicit)
    elif os.environ.get(PED2_ENV):
        path = Path(os.environ[PED2_ENV])
    else:
        path = PED2_DEFAULT
        mini = None if _is_ped2(path) else ped2_mini_dir()
        if mini is not None:
            log.warning("UCSD Ped2 not found at %s; using the mini set shipped with Vigil, %s: only 2 test clips "
                        "(Test001, Test002) and 2 normal clips (Train015, Train016), re-encoded lossily. %s",
                        path, mini, PED2_HOWTO)  # fmt: skip
            return mini
    if not _is_ped2(path):
        raise FileNotFoundError(
            f"UCSD Ped2 not found at {path} (needs test/ and labels_frame_ped2.json). "
            f"Pass --data DIR or set {PED2_ENV}. {PED2_HOWTO}"
        )
    return path


def ped2_mini_dir() -> Path | None:
    """The mini Ped2 set shipped in the checkout (``data/ped2-mini``), or None when there is none.

    It is looked for beside the installed ``vigil`` package (the repository root of an editable install),
    then in the working directory and the folders above it (a checkout run with a non-editable install).
    """
    from importlib import resources

    package_root = Path(str(resources.files("vigil"))).parent
    here = Path.cwd().resolve()
    for root in (package_root, here, *here.parents):
        if _is_ped2(root / PED2_MINI):
            return root / PED2_MINI
    return None


def require_ped2_clips(root: Path, names: list[str], labels: dict[str, np.ndarray]) -> None:
    """Raise when test clips ``names`` have no labels under ``root``, saying which and how to get them."""
    missing = [n for n in names if n not in labels]
    if missing:
        raise FileNotFoundError(f"Clips {missing} are not in the Ped2 set at {root}, which holds {sorted(labels)}. "
                                f"{PED2_HOWTO}")


def load_ped2_labels(path: Path) -> dict[str, np.ndarray]:
    """Frame labels of the Ped2 test clips: ``{"Test001": int8 array of 0/1}``."""
    raw = json.loads((path / "labels_frame_ped2.json").read_text())
    return {name: np.asarray(values, np.int8) for name, values in raw.items()}


def load_ped2_masks(path: Path) -> dict[str, np.ndarray]:
    """Pixel masks of the Ped2 test clips: ``{"Test001": uint8 (T, 240, 360)}`` (empty if missing)."""
    file = path / "masks_pixel_ped2.npz"
    if not file.is_file():
        return {}
    with np.load(file) as data:
        return {k: data[k] for k in data.files}
