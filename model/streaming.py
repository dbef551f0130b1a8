"""Streaming step API: one model step for a batch of cameras, with their states kept outside.

Any registered architecture (:mod:`vigil.model.architectures`: PredNet, the ConvLSTM autoencoder) sits
behind it; a model directory's ``config.json`` says which.

The worker gathers the states of the cameras that have a new frame, calls
:meth:`StreamingPredictor.step` once, and scatters the new states back. The batch is padded to a
bucket size (1, 2, 3, 4, 6, 8, 12, ..., 64) so a changing camera count compiles at most twelve step functions,
and a batch is padded by at most half (a third above 2; powers of two alone padded 10 cameras to 16).

Example:
    >>> predictor = StreamingPredictor.build_untrained(PredNetConfig(height=16, width=24))
    >>> state = predictor.initial_state()
    >>> frame = np.zeros((1, *predictor.input_shape), np.uint8)
    >>> result = predictor.step(frame, [state])
    >>> result.predictions.shape, len(result.features), result.features.names()
    ((1, 16, 24, 1), 1, ('mse', 'psnr', 'patch_max', 'motion_max'))
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from vigil.model.config import PredNetConfig
from vigil.model.features import ErrorTensors, FrameFeatures, error_features
from vigil.model.motion import motion_maps, window_means

log = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = Path(str(resources.files("vigil.model") / "weights" / "ped2"))
"""The packaged Ped2 model (package data of ``vigil.model``)."""
BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
"""Batch sizes the step is compiled for: powers of two and the midpoints between them (issue #18 measured the
padding of 9-10 cameras to 16 as what kept a 2-core machine from 10 cameras)."""
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "prednet.weights.npz"
"""The weights file of a PredNet model directory (other architectures: ``Architecture.weights_file``)."""
CARD_FILE = "model_card.json"


@dataclass
class StepOutput:
    """Output of one streaming step for ``B`` cameras.

    Attributes:
        predictions: ``(B, H, W, C)`` float32 in [0, 1]: the prediction of this frame made from the
            state before it.
        features: The ``B`` frames' error features (``mse``, ``psnr``, ``patch_max`` from PredNet,
            ``motion_max`` from :mod:`vigil.model.motion`), each ``(B,)`` float32.
        heatmaps: ``(B, h, w)`` float32 squared-error heat map (1/8 of the frame each side).
        motion_maps: ``(B, h, w)`` float32 optical-flow speed on the heat map's grid (zeros when
            :attr:`StreamingPredictor.motion` is off).
        new_states: ``B`` per-camera states (lists of arrays without batch dimension: the PredNet
            model's states, then the frame itself, which the next step's motion feature needs).
    """

    predictions: np.ndarray
    features: FrameFeatures
    heatmaps: np.ndarray
    new_states: list[list[np.ndarray]]
    motion_maps: np.ndarray | None = None


def bucket_size(n: int) -> int:
    """Smallest bucket holding ``n`` cameras (``n`` <= 64).

    Example:
        >>> [bucket_size(n) for n in (1, 3, 5, 10, 33)]
        [1, 3, 6, 12, 48]
    """
    for size in BUCKETS:
        if n <= size:
            return size
    raise ValueError(f"At most {BUCKETS[-1]} cameras per bucket. Received: n={n}")


def weights_version(path: str | os.PathLike) -> str:
    """Short sha256 of a weights file, used as the model version."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def build_step_model(config: Any, cell: Any, arch: Any = None) -> Any:
    """A Keras model ``[frames uint8, *states] -> [prediction, *ErrorTensors, *new_states]`` for any
    registered architecture (``arch``: its :class:`~vigil.model.architectures.Architecture`, default the
    config's)."""
    import keras

    from vigil.model.architectures import arch_of_config, get_architecture

    arch = arch or get_architecture(arch_of_config(config))

    class _Step(keras.layers.Layer):
        """Step the architecture's core on the uint8 frames and compute the error features."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.cell = cell

        def call(self, frames: Any, states: list[Any]) -> list[Any]:
            prediction, error_map, new_states = arch.stream_step(self.cell, config, frames, list(states))
            errors = error_features(error_map, config.features, config.pixel_max)
            return [prediction, *errors, *new_states]

    frames = keras.Input(config.input_shape, dtype="uint8", name="frames")
    states = [keras.Input(shape, dtype=dtype, name=f"state_{i}") for i, (shape, dtype) in enumerate(arch.state_specs(cell))]
    name = f"{arch.name.replace('-', '_')}_step"
    return keras.Model([frames, *states], _Step(name=name)(frames, states), name=name)


class StreamingPredictor:
    """A model of any registered architecture (:mod:`vigil.model.architectures`) that steps many camera
    streams at once; the recurrent states live with the caller.

    Attributes:
        arch: The :class:`~vigil.model.architectures.Architecture` (``arch.name``: ``"prednet"``, ...).
        cell: The architecture's core layer (the ``PredNetCell`` of a PredNet).
        model_id: Model identifier, e.g. ``"prednet-ped2"``.
        model_version: Short hash of the weights file (or ``"untrained"``).
        input_shape: ``(H, W, C)`` the uint8 frames must have.
        heatmap_shape: ``(h, w)`` of the error heat map.
        config: The model configuration.
        card: The model card (training statistics for scoring, metrics), ``{}`` if untrained.
        motion: Compute ``motion_max`` (optical flow, ~3-5 ms of CPU per 120x180 frame). When False it
            is 0 for every frame: PredNet's features only, for a CPU-bound worker. The flow of a batch runs
            on a thread of its own while the model steps it (OpenCV and the runtimes release the GIL), so
            it costs the batch's latency only what the model leaves of the machine.
    """

    def __init__(self, config: Any, cell: Any, model_id: str, model_version: str,
                 card: dict[str, Any] | None = None) -> None:
        from vigil.model.architectures import arch_of_config, get_architecture

        self.arch = get_architecture(arch_of_config(config))
        self.config = config
        self.cell = cell
        self.model_id = model_id
        self.model_version = model_version
        self.card = card or {}
        self.input_shape: tuple[int, int, int] = config.input_shape
        self.heatmap_shape: tuple[int, int] = config.heatmap_shape
        self._state_specs = [(tuple(shape), np.dtype(dtype)) for shape, dtype in self.arch.state_specs(cell)]
        self._state_shapes = [shape for shape, _ in self._state_specs]
        self._model = build_step_model(config, cell, self.arch)
        self._runner: Any = self._model
        self.motion = True
        self._flow_pool: ThreadPoolExecutor | None = None

    @classmethod
    def build_untrained(cls, config: Any = None, seed: int = 0) -> StreamingPredictor:
        """A predictor with randomly initialised weights (for tests and plumbing); ``config`` of any
        architecture (default: a PredNet)."""
        import keras

        from vigil.model.architectures import arch_of_config, get_architecture

        config = config or PredNetConfig()
        arch = get_architecture(arch_of_config(config))
        keras.utils.set_random_seed(seed)
        return cls(config, arch.build_core(config), f"{arch.name}-untrained", "untrained")

    @classmethod
    def load(cls, path: str | os.PathLike = DEFAULT_MODEL_DIR) -> StreamingPredictor:
        """Load a model directory: ``config.json`` (its ``"arch"``, PredNet when absent), the architecture's
        weights file and ``model_card.json``."""
        from vigil.model.architectures import arch_of_dir, get_architecture

        path = Path(path)
        if not (path / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{path} is not a model directory (needs {CONFIG_FILE} and a weights file).")
        arch = get_architecture(arch_of_dir(path))
        weights = path / arch.weights_file
        if not weights.is_file():
            raise FileNotFoundError(f"{path} is not a model directory (needs {CONFIG_FILE} and {arch.weights_file}).")
        config = arch.load_config(path)
        card = json.loads((path / CARD_FILE).read_text()) if (path / CARD_FILE).is_file() else {}
        cell = arch.build_core(config)
        arch.load_weights(cell, weights)
        model_id = card.get("model_id", f"{arch.name}-{path.name}")
        log.info("loaded %s model %s from %s", arch.name, model_id, path)
        return cls(config, cell, model_id, weights_version(weights), card)

    def use_runtime(self, runtime: Any | None) -> None:
        """Run the step graph on ``runtime`` from now on (a :class:`vigil.model.runtimes.StepRuntime`: its
        ``predict_on_batch`` takes and returns the Keras step model's arrays, in order); None: back to Keras.
        The states are kept in the runtime's ``state_dtypes`` where it has them (OpenVINO bf16 keeps some in
        bf16), else in the model's own; call it before making camera states."""
        self._runner = runtime if runtime is not None else self._model
        dtypes = getattr(runtime, "state_dtypes", None) or [np.dtype(d) for _, d in self.arch.state_specs(self.cell)]
        self._state_specs = [(shape, np.dtype(d)) for (shape, _), d in zip(self._state_specs, dtypes, strict=True)]

    def initial_state(self) -> list[np.ndarray]:
        """One camera's zero state (arrays without batch dimension): the model's states, then a black
        previous frame (the first frame after a reset is a warm-up frame, so its motion is not used)."""
        return [np.zeros(shape, dtype) for shape, dtype in self._state_specs] + [np.zeros(self.input_shape, np.uint8)]

    def state_nbytes(self) -> int:
        """Bytes of one camera's state."""
        return sum(int(np.prod(s)) * d.itemsize for s, d in self._state_specs) + int(np.prod(self.input_shape))

    def step(self, frames: np.ndarray, states: list[list[np.ndarray]]) -> StepOutput:
        """Advance ``B`` cameras by one frame each.

        Args:
            frames: ``(B, H, W, C)`` uint8, one frame per camera, already at :attr:`input_shape`.
            states: ``B`` per-camera states, from :meth:`initial_state` or a previous step.

        Returns:
            The predictions, error features, heat maps and new states of the ``B`` cameras.
        """
        frames = self._check_frames(frames, states)
        results = [self._step_bucket(frames[i:i + BUCKETS[-1]], states[i:i + BUCKETS[-1]])
                   for i in range(0, len(frames), BUCKETS[-1])]
        if len(results) == 1:
            return results[0]
        return StepOutput(
            predictions=np.concatenate([r.predictions for r in results]),
            features=FrameFeatures.concat([r.features for r in results]),
            heatmaps=np.concatenate([r.heatmaps for r in results]),
            new_states=[s for r in results for s in r.new_states],
            motion_maps=np.concatenate([r.motion_maps for r in results]),
        )

    def _check_frames(self, frames: np.ndarray, states: list[list[np.ndarray]]) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != self.input_shape:
            raise ValueError(f"frames must be uint8 (B, {', '.join(map(str, self.input_shape))}). "
                             f"Received: dtype={frames.dtype}, shape={frames.shape}")
        if len(states) != len(frames) or len(frames) == 0:
            raise ValueError(f"Need one state per frame and B >= 1. Received: {len(frames)} frames, "
                             f"{len(states)} states")
        shapes = [*self._state_shapes, self.input_shape]
        for state in states:
            if (len(state) != len(shapes) or state[-1].dtype != np.uint8
                    or any(tuple(a.shape) != s for a, s in zip(state, shapes, strict=True))):
                raise ValueError(f"A state does not match the model; expected shapes {shapes} (cell states, "
                                 f"previous frame, uint8). Received: {[(tuple(a.shape), str(a.dtype)) for a in state]}")
        return frames

    def _start_flow(self, prev_frames: np.ndarray, frames: np.ndarray) -> Future[np.ndarray]:
        """The batch's motion maps, computed on the predictor's flow thread (started on first use)."""
        if self._flow_pool is None:
            self._flow_pool = ThreadPoolExecutor(1, thread_name_prefix="vigil-flow")
        return self._flow_pool.submit(motion_maps, prev_frames, frames, self.config.features.heatmap_stride)

    def _step_bucket(self, frames: np.ndarray, states: list[list[np.ndarray]]) -> StepOutput:
        n = len(frames)
        size = bucket_size(n)
        inputs = [_pad(frames, size)]
        inputs += [_stack_padded([s[k] for s in states], size, dtype) for k, (_, dtype) in enumerate(self._state_specs)]
        flow_job = self._start_flow(np.stack([s[-1] for s in states]), frames) if self.motion else None
        outputs = [np.asarray(o)[:n] for o in self._runner.predict_on_batch(inputs)]
        errors = ErrorTensors(*outputs[1:1 + len(ErrorTensors._fields)])
        new = [o.astype(d, copy=False) for o, (_, d) in zip(outputs[1 + len(ErrorTensors._fields):], self._state_specs,
                                                             strict=True)]
        heat = errors.heatmap.astype(np.float32, copy=False)
        flow = flow_job.result() if flow_job is not None else np.zeros_like(heat)
        speed = window_means(flow).max(axis=(1, 2)).astype(np.float32)
        return StepOutput(
            predictions=outputs[0].astype(np.float32, copy=False),
            features=FrameFeatures(mse=errors.mse.astype(np.float32), psnr=errors.psnr.astype(np.float32),
                                   patch_max=errors.patch_max.astype(np.float32), motion_max=speed),
            heatmaps=heat,
            new_states=[[*(arr[i] for arr in new), frames[i].copy()] for i in range(n)],
            motion_maps=flow,
        )


def _stack_padded(arrays: list[np.ndarray], size: int, dtype: Any) -> np.ndarray:
    """``np.stack(arrays)`` as ``dtype``, zero-padded to ``size`` rows, in one copy (the states are MiBs per
    camera: stacking then padding copied them twice).

    Example:
        >>> _stack_padded([np.ones(2), np.full(2, 2.0)], 3, np.float32).tolist()
        [[1.0, 1.0], [2.0, 2.0], [0.0, 0.0]]
    """
    out = np.empty((size, *np.shape(arrays[0])), dtype)
    np.stack(arrays, out=out[:len(arrays)], casting="unsafe")  # as astype(dtype) did
    out[len(arrays):] = 0
    return out


def _pad(batch: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad the batch dimension up to ``size``."""
    if len(batch) == size:
        return batch
    pad = np.zeros((size - len(batch), *batch.shape[1:]), batch.dtype)
    return np.concatenate([batch, pad])
