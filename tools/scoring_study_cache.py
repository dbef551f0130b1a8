"""Build the score-message caches the scoring study needs (helper H3's study, #13): every Ped2 clip (train and
test; the model is run over the test clips, their labels are not read) and the synthetic set, for one model.

The synthetic sets (:mod:`vigil.model.synthetic`): one painted object in each of Train013-016, with ``SEEDS``
seeds each; the painted rectangles start on the rows where people move in Train001-012 (mean motion map per
row of those clips), the walkers on their own source rows. Three sets (``SETS``): ``whole``, objects that appear whole at the frame's edge (scoring step 1); ``enter``, the same
objects sliding in across the edge (step 13, :func:`vigil.model.synthetic.inject` with ``enter=True``); and
``walker``, real people of the scene cut out of Train001-012 and sliding in at 2-3 times walking speed (step 14).

Usage: ``python -m vigil.tools.scoring_study_cache MODEL_DIR [--set enter|whole|walker]`` (``enter`` by default;
:mod:`vigil.tools.margin_choice` and :mod:`vigil.tools.lag_choice` read all three)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import typer

SEEDS = range(5)
SYN_CLIPS = ("Train013", "Train014", "Train015", "Train016")
CALIB_CLIPS = tuple(f"Train{i:03d}" for i in range(1, 13))
CACHE = Path(".state/replay")
SETS = {"whole": "s", "enter": "e", "walker": "w"}
"""The synthetic sets and the letter of their clips' names (``Train013_s0``, ``Train013_e0``)."""


def labels_file(model_id: str, synthetic: str = "whole", cache: Path = CACHE) -> Path:
    """Where the labels of ``model_id``'s synthetic set ``synthetic`` (a key of ``SETS``) are kept in ``cache``.

    Example:
        >>> labels_file("prednet-ped2").name, labels_file("prednet-ped2", "enter").name
        ('synthetic-labels-prednet-ped2.npz', 'synthetic-enter-labels-prednet-ped2.npz')
    """
    kind = "" if synthetic == "whole" else f"{synthetic}-"
    return cache / f"synthetic-{kind}labels-{model_id}.npz"


SPEEDUP = (2.0, 3.0)
"""The ``walker`` set's people move this many times (uniform) the calibration clips' walking speed (step 14)."""


def synthetic_clips(root: Path, shape: tuple[int, int, int], rows: np.ndarray,
                    synthetic: str = "whole") -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The painted clips and their labels: ``{Train013_s0: frames}``, ``{Train013_s0: (T,) int8}``. The same
    clips and starts in every set; ``whole`` and ``enter`` paint the same objects on the same paths (only the
    entry differs); ``walker`` paints a real person of Train001-012 (:func:`walker_painter`)."""
    from vigil.model.data import read_video
    from vigil.model.synthetic import inject

    paint = walker_painter(root, shape) if synthetic == "walker" else None
    clips, labels = {}, {}
    for name in SYN_CLIPS:
        frames = read_video(root / "train" / f"{name}.mkv", *shape)
        for seed in SEEDS:
            rng = np.random.default_rng(1000 + seed)
            start = int(rng.integers(15, len(frames) // 2))
            key, seed_, length = f"{name}_{SETS[synthetic]}{seed}", seed + 17 * int(name[-3:]), len(frames) - start
            if paint is None:
                out, lab = inject(frames, seed=seed_, start=start, length=length, rows=rows,
                                  enter=synthetic == "enter")
            else:
                out, lab = paint(frames, seed_, start, length)
            clips[key], labels[key] = out, lab
    return clips, labels


Painter = Callable[[np.ndarray, int, int, int], tuple[np.ndarray, np.ndarray]]
"""``paint(frames, seed, start, length) -> (frames, labels)``."""


def walker_painter(root: Path, shape: tuple[int, int, int]) -> Painter:
    """The ``walker`` set's painter (docs/model.md, scoring step 14): ``paint(frames, seed, start, length)`` slides
    one person cut out of Train001-012 (:func:`vigil.model.synthetic.cut_people`, chosen by ``seed``) in across
    the left or right edge, on the person's own row, at ``SPEEDUP`` times those clips' walking speed
    (:func:`vigil.model.synthetic.walking_speed`): a jogger, a skater or a slow cyclist where people walk."""
    from vigil.model.data import read_video
    from vigil.model.synthetic import cut_people, inject_person, walking_speed

    calib = [read_video(root / "train" / f"{n}.mkv", *shape) for n in CALIB_CLIPS]
    people = [p for frames in calib for p in cut_people(frames)]
    walk = walking_speed(calib)
    if not people or walk <= 0:
        raise ValueError(f"No people or no motion found in {', '.join(CALIB_CLIPS)} under {root / 'train'} "
                         f"({len(people)} people, walking speed {walk:.3f} px/frame): the walker set needs Ped2's "
                         "normal training clips (`vigil data ped2`).")
    logging.getLogger(__name__).info("walker set: %d people cut out of %d clips, walking speed %.3f px/frame",
                                     len(people), len(calib), walk)

    def paint(frames: np.ndarray, seed: int, start: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        person = people[int(rng.integers(len(people)))]
        speed = float(rng.uniform(*SPEEDUP)) * walk
        return inject_person(frames, person, seed=seed, start=start, length=length, speed=speed)

    return paint


def row_weights(messages: dict[str, list], height: int) -> np.ndarray:
    """How much people move on each pixel row of Train001-012 (their motion maps, cells spread over pixels)."""
    grids = np.concatenate([np.stack([m.motion_map() for m in messages[n]]) for n in CALIB_CLIPS])
    per_cell_row = grids.mean(axis=(0, 2))
    cell = height // len(per_cell_row)
    return np.repeat(per_cell_row, cell)[:height]


def main(model_dir: str = typer.Argument(..., help="Model directory (its card names the version cached)."),
         synthetic: str = typer.Option("enter", "--set", help="Synthetic set: enter (step 13), whole (step 1) or "
                                       "walker (step 14); margin_choice reads all three.")) -> None:
    """Cache Ped2 and the synthetic set ``--set`` for ``model_dir``."""
    from vigil.model.data import ped2_dir
    from vigil.model.replay import clip_messages, ped2_messages
    from vigil.model.streaming import StreamingPredictor

    if synthetic not in SETS:
        typer.echo(f"error: --set must be one of {sorted(SETS)}. Received: {synthetic}", err=True)
        raise typer.Exit(2)
    logging.basicConfig(level=logging.INFO)
    root = ped2_dir(None)
    predictor = StreamingPredictor.load(model_dir)
    msgs = ped2_messages(root, predictor, CACHE)
    h = predictor.input_shape[0]
    clips, labels = synthetic_clips(root, predictor.input_shape, row_weights(msgs, h), synthetic)
    np.savez(labels_file(predictor.model_id, synthetic), **labels)
    clip_messages(predictor, clips, warmup_frames=10, cache_dir=CACHE)
    print("done", predictor.model_id, synthetic, len(msgs), len(clips), flush=True)


if __name__ == "__main__":
    typer.run(main)
