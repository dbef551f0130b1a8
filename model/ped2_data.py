"""UCSD Ped2 in the layout Vigil reads: ``vigil data ped2`` and ``vigil data ped2-mini``.

The official archive (UCSD Anomaly Detection Dataset v1p2) holds one folder of ``.tif`` frames per clip,
pixel masks as ``.bmp`` and the frame-level ground truth as a MATLAB text file::

    UCSDped2/Train/Train001/001.tif ...
    UCSDped2/Test/Test001/001.tif ...
    UCSDped2/Test/Test001_gt/001.bmp ...          (some clips)
    UCSDped2/Test/UCSDped2.m                      TestVideoFile{end+1}.gt_frame = [61:180];

Vigil reads (docs/data.md)::

    train/TrainNNN.mkv  test/TestNNN.mkv          gray, 10 fps
    labels_frame_ped2.json                        {"Test001": [0/1 per frame], ...}
    masks_pixel_ped2.npz                          {"Test001": uint8 {0, 1} (T, H, W)}
    manifest.json                                 per clip: file, frames, bytes, sha256

:func:`convert_official` writes that layout losslessly (H.264 ``qp 0``, full-range ``yuvj420p``, whose
luma is the gray frame; every clip is decoded again and compared). :func:`build_mini` re-encodes a few
clips of a converted set, lossily, into the small set shipped in ``data/ped2-mini``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FPS = 10
LABELS_FILE = "labels_frame_ped2.json"
MASKS_FILE = "masks_pixel_ped2.npz"
MANIFEST_FILE = "manifest.json"
GT_FILE = "UCSDped2.m"
MINI_CLIPS = ("Test001", "Test002", "Train015", "Train016")
"""The shipped subset: the demo's two test clips and the committed model's two held-out normal clips."""
_CLIP_DIR = re.compile(r"^(Train|Test)\d{3}$")
_GT_LINE = re.compile(r"TestVideoFile\{\s*(end\s*\+\s*1|\d+)\s*\}\s*\.gt_frame\s*=\s*\[([^\]]*)\]")


@dataclass(frozen=True)
class Encoding:
    """How clips are encoded (PyAV, libx264, full-range ``yuvj420p``: the luma plane is the gray frame).

    Attributes:
        options: libx264 / libavcodec options, e.g. ``{"qp": "0"}`` (lossless) or ``{"crf": "18"}``.
    """

    options: dict[str, str] = field(default_factory=dict)
    codec: str = "libx264"
    pix_fmt: str = "yuvj420p"

    @property
    def lossless(self) -> bool:
        """True for ``qp 0`` (x264's lossless mode)."""
        return self.options.get("qp") == "0"


LOSSLESS = Encoding({"qp": "0", "preset": "medium", "g": "30", "bf": "0"})
"""``vigil data ped2``: lossless; keyframe every 3 s, no B-frames (as the full set's x264 copy)."""
MINI = Encoding({"crf": "18", "preset": "slow", "g": "30", "bf": "0", "threads": "1"})
"""``vigil data ped2-mini``: lossy (about 46 dB PSNR); one thread, so the bytes repeat on every machine."""


def parse_gt_frames(text: str) -> list[list[tuple[int, int]]]:
    """Anomalous frame ranges per test clip from the official ``UCSDped2.m`` (1-based, inclusive).

    Example:
        >>> parse_gt_frames("TestVideoFile = {};\\nTestVideoFile{end+1}.gt_frame = [61:180];\\n"
        ...                 "TestVideoFile{end+1}.gt_frame = [5:90, 140:200]; % two spans")
        [[(61, 180)], [(5, 90), (140, 200)]]
    """
    clips: dict[int, list[tuple[int, int]]] = {}
    for line in text.splitlines():
        match = _GT_LINE.search(line.split("%", 1)[0])
        if match is None:
            continue
        index = len(clips) + 1 if match.group(1).startswith("end") else int(match.group(1))
        body = re.sub(r"\s*:\s*", ":", match.group(2)).strip()
        clips[index] = [_span(part) for part in re.split(r"[\s,;]+", body) if part]
    if sorted(clips) != list(range(1, len(clips) + 1)):
        raise ValueError(f"Ground-truth clips are not numbered 1..N. Received: {sorted(clips)}")
    return [clips[i] for i in sorted(clips)]


def _span(part: str) -> tuple[int, int]:
    """``"61:180"`` -> ``(61, 180)``; ``"7"`` -> ``(7, 7)``."""
    ends = [int(v) for v in part.split(":")]
    if len(ends) not in (1, 2) or ends[0] > ends[-1]:
        raise ValueError(f"Expected a frame range like 61:180. Received: {part!r}")
    return ends[0], ends[-1]


def frame_labels(spans: list[tuple[int, int]], n_frames: int) -> list[int]:
    """0/1 per frame from 1-based inclusive ``spans``.

    Example:
        >>> frame_labels([(2, 3)], 4)
        [0, 1, 1, 0]
    """
    labels = [0] * n_frames
    for first, last in spans:
        if first < 1 or last > n_frames:
            raise ValueError(f"Anomalous span {first}:{last} lies outside the clip's {n_frames} frames.")
        labels[first - 1:last] = [1] * (last - first + 1)
    return labels


def official_root(src: Path) -> Path:
    """The ``UCSDped2`` folder of an official archive: ``src`` itself or ``src/UCSDped2``.

    Raises:
        FileNotFoundError: naming every missing part of the layout.
    """
    src = Path(src)
    root = src / "UCSDped2" if (src / "UCSDped2").is_dir() else src
    needed = {"Train/Train001/": root / "Train", "Test/Test001/": root / "Test", f"Test/{GT_FILE}": root / "Test" / GT_FILE}
    missing = [name for name, path in needed.items() if not path.exists()]
    missing += [f"{sub}/{sub}NNN/ clip folders" for sub in ("Train", "Test") if (root / sub).is_dir() and not clip_dirs(root / sub)]
    if missing:
        raise FileNotFoundError(
            f"Not the official UCSD Ped2 layout at {root}: missing {', '.join(missing)}. Pass --from the unpacked "
            "UCSD_Anomaly_Dataset.v1p2 folder (or its UCSDped2/), which holds Train/Train001/001.tif ..., "
            f"Test/Test001/001.tif ... and Test/{GT_FILE}."
        )
    return root


def clip_dirs(folder: Path) -> list[Path]:
    """``TrainNNN`` / ``TestNNN`` frame folders of ``folder``, sorted (``TestNNN_gt`` excluded)."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and _CLIP_DIR.match(p.name))


TIF = (".tif", ".tiff")


def image_files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """The images of ``folder`` by sorted name (hidden files such as ``.DS_Store`` skipped); raises if none."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes and not p.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"No {'/'.join(suffixes)} images in {folder}.")
    return files


def read_images(folder: Path, suffixes: tuple[str, ...]) -> np.ndarray:
    """The images of ``folder`` (by sorted name, hidden files skipped) as gray ``(T, H, W)`` uint8."""
    import cv2

    images = []
    for path in image_files(folder, suffixes):
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise ValueError(f"Cannot read image {path} (corrupt or not an image).")
        if images and image.shape != images[0].shape:
            raise ValueError(f"{path} is {image.shape}, the clip's first frame {images[0].shape}: one size per clip.")
        images.append(image)
    return np.stack(images)


def write_clip(path: Path, frames: np.ndarray, encoding: Encoding) -> None:
    """Encode gray ``(T, H, W)`` uint8 frames at :data:`FPS` into ``path`` (Matroska)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", options={"fflags": "+bitexact"}) as container:  # no random ids: same bytes every run
        stream = container.add_stream(encoding.codec, rate=FPS, options=dict(encoding.options))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = encoding.pix_fmt
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="gray")))
        container.mux(stream.encode())


def sha256(data: bytes | Path) -> str:
    """Hex sha256 of bytes, or of a file's contents."""
    return hashlib.sha256(data.read_bytes() if isinstance(data, Path) else data).hexdigest()


def store_clip(out: Path, name: str, frames: np.ndarray, encoding: Encoding, source: str) -> dict:
    """Write one clip under ``out/train`` or ``out/test`` and return its manifest entry.

    The file is decoded again with :func:`vigil.model.data.read_video`; a lossless encoding must give
    back ``frames`` exactly.
    """
    from vigil.model.data import read_video

    rel = f"{'train' if name.startswith('Train') else 'test'}/{name}.mkv"
    write_clip(out / rel, frames, encoding)
    decoded = read_video(out / rel, frames.shape[1], frames.shape[2], 1)[..., 0]
    if decoded.shape != frames.shape or (encoding.lossless and not np.array_equal(decoded, frames)):
        raise RuntimeError(f"{out / rel} does not decode to the frames written (shape {decoded.shape} vs {frames.shape}).")
    entry = {"file": rel, "frames": len(frames), "bytes": (out / rel).stat().st_size, "sha256_file": sha256(out / rel),
             "sha256_decoded_gray": sha256(decoded.tobytes()), "source": source}  # fmt: skip
    if not encoding.lossless:
        entry["psnr_db"] = round(psnr(frames, decoded), 2)
    return entry


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 arrays in dB (``inf`` when equal).

    Example:
        >>> round(psnr(np.zeros(4, np.uint8), np.full(4, 1, np.uint8)), 2)
        48.13
    """
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def prepare_out(out: Path, overwrite: bool) -> Path:
    """Create ``out``; refuse a non-empty folder unless ``overwrite`` (then its Ped2 files are replaced)."""
    out = Path(out)
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; choose an empty --out or pass --overwrite.")
        for name in ("train", "test"):
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_index(out: Path, labels: dict[str, list[int]], masks: dict[str, np.ndarray], clips: dict[str, dict]) -> None:
    """Write ``labels_frame_ped2.json``, ``masks_pixel_ped2.npz`` and ``manifest.json`` into ``out``."""
    (out / LABELS_FILE).write_text(json.dumps(labels, separators=(",", ":")) + "\n")
    np.savez_compressed(out / MASKS_FILE, **masks)
    first = next(iter(clips.values()))
    height, width = _frame_size(out / first["file"])
    manifest = {"fps": FPS, "width": width, "height": height, "clips": dict(sorted(clips.items()))}
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")


def _frame_size(path: Path) -> tuple[int, int]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.height, stream.codec_context.width


def convert_official(src: Path, out: Path, overwrite: bool = False, progress: bool = True) -> dict:
    """``vigil data ped2``: the official UCSD Ped2 archive at ``src`` -> Vigil's layout at ``out`` (lossless).

    Returns:
        The manifest written to ``out/manifest.json``.
    """
    from tqdm import tqdm

    root = official_root(Path(src))
    test_dirs = clip_dirs(root / "Test")
    spans = parse_gt_frames((root / "Test" / GT_FILE).read_text(errors="replace"))
    if len(spans) != len(test_dirs):
        raise ValueError(f"{root / 'Test' / GT_FILE} lists {len(spans)} clips, but Test/ holds {len(test_dirs)} "
                         f"({test_dirs[0].name}..{test_dirs[-1].name}); use the archive's own ground-truth file.")
    labels = {d.name: frame_labels(s, len(image_files(d, TIF))) for d, s in zip(test_dirs, spans, strict=True)}
    out = prepare_out(Path(out), overwrite)
    dirs = clip_dirs(root / "Train") + test_dirs
    clips, masks = {}, {}
    for folder in tqdm(dirs, desc="ped2", unit="clip", disable=not progress):
        frames = read_images(folder, TIF)
        clips[folder.name] = store_clip(out, folder.name, frames, LOSSLESS, str(folder.relative_to(root.parent)))
        if folder.name in labels:
            gt = folder.with_name(f"{folder.name}_gt")
            if gt.is_dir():
                masks[folder.name] = _masks(gt, frames.shape)
    write_index(out, labels, masks, clips)
    log.info("wrote %d clips (%d train, %d test; %d with pixel masks) to %s", len(clips), len(dirs) - len(test_dirs),
             len(test_dirs), len(masks), out)  # fmt: skip
    return json.loads((out / MANIFEST_FILE).read_text())


def _masks(folder: Path, shape: tuple[int, ...]) -> np.ndarray:
    """The ``.bmp`` masks of a ``TestNNN_gt`` folder as uint8 {0, 1}, checked against the clip's shape."""
    masks = read_images(folder, (".bmp",))
    if masks.shape != shape:
        raise ValueError(f"{folder} holds masks of shape {masks.shape}, the clip {shape}: one mask per frame expected.")
    return (masks > 127).astype(np.uint8)


def build_mini(full: Path, out: Path, clips: tuple[str, ...] = MINI_CLIPS, overwrite: bool = False,
               progress: bool = True) -> dict:  # fmt: skip
    """``vigil data ped2-mini``: re-encode ``clips`` of a converted set (Vigil's layout) into a small one.

    Returns:
        The manifest written to ``out/manifest.json``.
    """
    from tqdm import tqdm

    from vigil.model.data import load_ped2_labels, load_ped2_masks, read_video

    full = Path(full)
    labels_all = load_ped2_labels(full) if (full / LABELS_FILE).is_file() else {}
    paths = {n: full / ("train" if n.startswith("Train") else "test") / f"{n}.mkv" for n in clips}
    missing = [str(p) for n, p in paths.items() if not p.is_file()] + [
        f"{n} in {full / LABELS_FILE}" for n in clips if n.startswith("Test") and n not in labels_all]
    if missing:
        raise FileNotFoundError(f"Not a full Ped2 set in Vigil's layout at {full}; missing: {', '.join(missing)}. "
                                "Convert the UCSD archive first: vigil data ped2 --from ARCHIVE --out DIR.")
    out = prepare_out(Path(out), overwrite)
    entries, masks_all = {}, load_ped2_masks(full)
    for name in tqdm(clips, desc="ped2-mini", unit="clip", disable=not progress):
        frames = read_video(paths[name], *_frame_size(paths[name]), 1)[..., 0]
        entries[name] = store_clip(out, name, frames, MINI, f"{paths[name].relative_to(full)} of the full set")
    tests = [n for n in clips if n.startswith("Test")]
    write_index(out, {n: labels_all[n].tolist() for n in tests}, {n: masks_all[n] for n in tests if n in masks_all}, entries)
    (out / "README.md").write_text(mini_readme(entries))
    return json.loads((out / MANIFEST_FILE).read_text())


MINI_COMMAND = "vigil data ped2-mini --from ../shared/data/ucsd_ped2 --out data/ped2-mini --overwrite"


def mini_readme(entries: dict[str, dict]) -> str:
    """The README of the mini set: contents, how it was made, citation and terms."""
    rows = "\n".join(f"| `{e['file']}` | {e['frames']} | {e['bytes']:,} | {e['psnr_db']:.1f} |" for e in entries.values())
    options = " ".join(f"{k}={v}" for k, v in MINI.options.items())
    return _README.format(rows=rows, command=MINI_COMMAND, options=options, codec=MINI.codec, pix_fmt=MINI.pix_fmt,
                          fps=FPS, clips=", ".join(entries))  # fmt: skip


_README = """\
# UCSD Ped2, mini (shipped with Vigil)

Four clips of the UCSD Ped2 data set ({clips}), so that a clone of Vigil runs its demo and a small
evaluation with nothing else. Test001 and Test002 are the demo's test clips (a bike among pedestrians),
with their frame labels and pixel masks; Train015 and Train016 are normal clips, the committed model's
held-out normal clips.

The full set has 16 training and 12 test clips: see docs/data.md for how to get it and convert it
(`vigil data ped2 --from <UCSD archive> --out DIR`, then `--data DIR` or `VIGIL_PED2_DIR=DIR`).

| file | frames | bytes | PSNR vs lossless (dB) |
|---|---|---|---|
{rows}

Same layout as the full set: `train/`, `test/`, `labels_frame_ped2.json` (0/1 per frame, the two test
clips), `masks_pixel_ped2.npz` (uint8 {{0, 1}} `(T, 240, 360)` per test clip), `manifest.json` (per clip:
frames, bytes, sha256 of the file and of its decoded gray frames, PSNR).

## These files are re-encoded and lossy

They are NOT the original frames. They were decoded from Vigil's lossless copy of the full set (H.264
`qp 0` of the JPEG (q95) Ped2 frames most papers use; see docs/data.md) and re-encoded, lossily, to keep
this folder at a few MB. Scores on these clips differ slightly from scores on the full set; published
figures use the full set. Encoding (PyAV with its bundled libx264, `vigil.model.ped2_data.build_mini`):

* codec {codec}, options `{options}`;
* pixel format {pix_fmt} (full range; the gray picture is the luma plane), 360x240, {fps} fps.

Made with this command, run in the repository root with the full set beside it:

```bash
{command}
```

Another libx264 build may write other bytes; `manifest.json` holds the sha256 of the files shipped here.

## Citation and terms

The UCSD Anomaly Detection Dataset is distributed by the Statistical Visual Computing Lab (SVCL),
University of California San Diego, for research use
(http://www.svcl.ucsd.edu/projects/anomaly/dataset.htm). It states no licence; use these files for
research only, under the dataset's own terms. If you use them, cite:

* V. Mahadevan, W. Li, V. Bhalodia and N. Vasconcelos. Anomaly Detection in Crowded Scenes. In Proc.
  IEEE Conference on Computer Vision and Pattern Recognition (CVPR), San Francisco, CA, 2010.
* W. Li, V. Mahadevan and N. Vasconcelos. Anomaly Detection and Localization in Crowded Scenes. IEEE
  Transactions on Pattern Analysis and Machine Intelligence (TPAMI), 36(1), 18-32, 2014.
"""
