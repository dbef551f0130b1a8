"""Inference runtimes for the streaming step: export it (SavedModel, ONNX, OpenVINO IR) and run it.

The streaming step (:func:`vigil.model.streaming.build_step_model`) is one graph with no loop inside:
``frames`` (uint8) and the cameras' states ``state_0 ... state_{k-1}`` in; ``prediction``, the error
features ``mse``, ``psnr``, ``patch_max``, ``heatmap`` and the new states ``new_state_0 ...`` out. Every
export names its inputs and outputs so; exported graphs list outputs in their own (sorted) order, so
outputs are always mapped **by name**. The batch dimension is dynamic in every export; OpenVINO compiles
one static-batch model per batch bucket on first use (its LATENCY hint is faster on static shapes).

A :class:`StepRuntime` takes the Keras step model's inputs (in order) and returns its outputs by name
(:meth:`StepRuntime.run`) or in the Keras order (:meth:`StepRuntime.predict_on_batch`, what
:class:`~vigil.model.streaming.StreamingPredictor` calls), so the rest of the step (motion, features,
states) is the same for every runtime. :class:`RuntimePredictor` is a streaming predictor on an exported
runtime: ``VIGIL_WORKER_PREDICTOR=vigil.model.runtimes:RuntimePredictor`` with ``VIGIL_RUNTIME_KIND=onnx``.

Quantisation (``quantize``): ``int8`` is ONNX Runtime's static QDQ quantisation of the convolutions below
the frame's resolution (per-channel int8 weights, uint8 activations, reduced range for CPUs without VNNI),
calibrated on real frames and states (:func:`calibration_feeds`); OpenVINO runs the same QDQ graph as int8.
``fp16`` is OpenVINO's fp16 weight compression. ``bf16`` is OpenVINO's fp32 graph compiled with bf16 inference
precision, which only CPUs with bf16 units (AMX, AVX-512 BF16) have: elsewhere it runs in fp32, with a warning. Export needs TensorFlow (and tf2onnx for ONNX); running needs only the runtime.

Example:
    >>> output_names(2)
    ('prediction', 'mse', 'psnr', 'patch_max', 'heatmap', 'new_state_0', 'new_state_1')
    >>> export_dir_for(Path(".state/export"), "prednet-ped2", "ab12", "onnx", "int8").as_posix()
    '.state/export/prednet-ped2-ab12/onnx-int8'
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from vigil.model.streaming import BUCKETS, DEFAULT_MODEL_DIR, StreamingPredictor, build_step_model

log = logging.getLogger(__name__)

FORMATS = ("saved_model", "onnx", "openvino")
"""What ``vigil export --format`` writes."""
RUNTIMES = ("keras", "onnx", "openvino", "xla")
"""What a worker can step with (``keras``: the model as loaded, TensorFlow or JAX; ``xla``: the same Keras
step compiled with XLA, no export needed)."""
EXPORTED_RUNTIMES = ("onnx", "openvino")
"""The runtimes that step an exported graph (``vigil export``)."""
QUANTIZE = ("none", "int8", "fp16", "bf16")
"""``none``: fp32; ``int8``: static QDQ int8 (ONNX Runtime, OpenVINO); ``fp16``: OpenVINO fp16 weights; ``bf16``:
OpenVINO's fp32 graph run with bf16 arithmetic on CPUs that have it (AMX / AVX-512 BF16), fp32 elsewhere."""
MANIFEST = "export.json"
"""The file beside an exported graph that says what it is and which weights it holds."""
GRAPH_FILES = {"saved_model": "saved_model", "onnx": "model.onnx", "openvino": "model.xml"}
OPSET = 17
FEATURE_OUTPUTS = ("prediction", "mse", "psnr", "patch_max", "heatmap")
"""The step's outputs before the new states, in the Keras model's order."""
PIP = {
    "onnxruntime": "pip install 'vigil[runtimes]'  (or: pip install onnxruntime)",
    "openvino": "pip install 'vigil[runtimes]'  (or: pip install openvino)",
    "tf2onnx": "pip install 'vigil[runtimes]'  (or: pip install tf2onnx onnx)",
    "onnx": "pip install 'vigil[runtimes]'  (or: pip install onnx)",
    "tensorflow": "pip install tensorflow-cpu  (exporting needs TensorFlow; running does not)",
}
Feed = list[np.ndarray]
"""One step's inputs in the Keras order: ``[frames, state_0, ..., state_{k-1}]``."""
Progress = Callable[[str], None]


class RuntimeMissingError(ImportError):
    """A runtime package is not installed; the message holds the pip command."""


def require(package: str) -> Any:
    """Import ``package`` or raise :class:`RuntimeMissingError` with the command that installs it."""
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise RuntimeMissingError(f"{package} is not installed: {PIP.get(package, f'pip install {package}')}") from exc


def input_names(n_states: int) -> tuple[str, ...]:
    """The step's input names: ``frames``, then ``state_0 ...``."""
    return ("frames", *(f"state_{i}" for i in range(n_states)))


def output_names(n_states: int) -> tuple[str, ...]:
    """The step's output names in the Keras model's order (see :data:`FEATURE_OUTPUTS`)."""
    return (*FEATURE_OUTPUTS, *(f"new_state_{i}" for i in range(n_states)))


def export_dir_for(root: Path, model_id: str, model_version: str, fmt: str, quantize: str) -> Path:
    """Where ``vigil export`` puts a model's export by default, and where a worker looks for it."""
    return Path(root) / f"{model_id}-{model_version}" / f"{fmt}-{quantize}"


@dataclass(frozen=True)
class ExportInfo:
    """The manifest (:data:`MANIFEST`) of one export.

    Attributes:
        format: One of :data:`FORMATS`.
        quantize: One of :data:`QUANTIZE`.
        model_id: The exported model's id.
        model_version: Short hash of its weights file (a worker refuses an export of other weights).
        arch: Its architecture (``"prednet"``, ...).
        inputs: ``[name, shape without batch, dtype]`` of each input, in the Keras order.
        outputs: Output names in the Keras order.
        graph: File (or folder) of the graph, relative to the export folder.
        calibration: For ``int8``: what the ranges were calibrated on.
    """

    format: str
    quantize: str
    model_id: str
    model_version: str
    arch: str
    inputs: list[list[Any]]
    outputs: list[str]
    graph: str
    calibration: dict[str, Any]

    def save(self, folder: Path) -> Path:
        """Write the manifest into ``folder``."""
        path = Path(folder) / MANIFEST
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | os.PathLike) -> ExportInfo:
        """Read the manifest of an export folder."""
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not an export folder (no {MANIFEST}); make one with `vigil export`.")
        data = json.loads(path.read_text())
        if set(data) != {f for f in cls.__dataclass_fields__}:
            raise ValueError(f"{path} is not a Vigil export manifest. Received keys: {sorted(data)}")
        return cls(**data)

    def check(self, predictor: StreamingPredictor) -> None:
        """Raise ``ValueError`` unless this export holds ``predictor``'s weights and shapes."""
        want = _signature(predictor)
        if (self.model_id, self.model_version) != (predictor.model_id, predictor.model_version):
            raise ValueError(f"The export holds {self.model_id}:{self.model_version}, the model is "
                             f"{predictor.model_id}:{predictor.model_version}; re-run `vigil export`.")
        if [list(i[:2]) for i in self.inputs] != [list(i[:2]) for i in want]:
            raise ValueError(f"The export's inputs {self.inputs} do not match the model's {want}; re-run `vigil export`.")


def _signature(predictor: StreamingPredictor) -> list[list[Any]]:
    """``[name, shape without batch, dtype]`` of the step's inputs."""
    specs = [(list(predictor.input_shape), "uint8")]
    specs += [(list(shape), str(np.dtype(dtype))) for shape, dtype in predictor.arch.state_specs(predictor.cell)]
    return [[n, s, d] for n, (s, d) in zip(input_names(len(specs) - 1), specs, strict=True)]


# --- runtimes -----------------------------------------------------------------------------------------


class StepRuntime(Protocol):
    """Runs the streaming step graph: the Keras step model's inputs in, its outputs out (by name)."""

    name: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    state_dtypes: tuple[np.dtype, ...] | None
    """The dtype each state is kept in between steps, when the runtime keeps some in other than the model's
    own (``None``: the model's)."""

    def run(self, inputs: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """``{output name: array}`` for one batch (inputs in the Keras order, any batch size)."""
        ...

    def predict_on_batch(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The outputs in the Keras model's order (what ``StreamingPredictor`` steps with)."""
        ...


class _Named:
    """:meth:`predict_on_batch` and input checks from :meth:`run`."""

    name = "base"
    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()
    state_dtypes: tuple[np.dtype, ...] | None = None

    def run(self, inputs: Sequence[np.ndarray]) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict_on_batch(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The outputs in the Keras model's order."""
        out = self.run(inputs)
        return [out[n] for n in self.output_names]

    def _feeds(self, inputs: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        if len(inputs) != len(self.input_names):
            raise ValueError(f"The {self.name} step takes {len(self.input_names)} inputs {self.input_names}. "
                             f"Received: {len(inputs)}")
        return {n: np.ascontiguousarray(a) for n, a in zip(self.input_names, inputs, strict=True)}


class KerasRuntime(_Named):
    """The step as loaded (TensorFlow or JAX backend): today's path.

    Args:
        predictor: The streaming predictor whose step model runs.
    """

    name = "keras"

    def __init__(self, predictor: StreamingPredictor) -> None:
        self.model = build_step_model(predictor.config, predictor.cell, predictor.arch)
        self.input_names = input_names(len(self.model.inputs) - 1)
        self.output_names = output_names(len(self.model.inputs) - 1)

    def run(self, inputs: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """``{output name: array}``."""
        self._feeds(inputs)
        out = self.model.predict_on_batch(list(inputs))
        return {n: np.asarray(o) for n, o in zip(self.output_names, out, strict=True)}


class XlaRuntime(KerasRuntime):
    """The Keras step compiled by XLA (``jit_compile=True``): no export needed.

    On the TensorFlow backend this is ``tf.function(jit_compile=True)`` per batch bucket (compiled on first
    use of a bucket, a few seconds each); on JAX, Keras' step is already XLA, so it equals ``keras``.

    Args:
        predictor: The streaming predictor whose step model runs.
    """

    name = "xla"

    def __init__(self, predictor: StreamingPredictor) -> None:
        super().__init__(predictor)
        self.model.compile(jit_compile=True)


class OnnxRuntime(_Named):
    """ONNX Runtime (CPU execution provider) on an exported ``model.onnx``.

    Args:
        path: The ``.onnx`` file.
        threads: Intra-op threads (0: ONNX Runtime's default, one per physical core).
    """

    name = "onnx"

    def __init__(self, path: str | os.PathLike, threads: int = 0) -> None:
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        names = {o.name for o in self.session.get_outputs()}
        self.output_names = output_names(len(self.input_names) - 1)
        if names != set(self.output_names):
            raise ValueError(f"{path} is not a Vigil step graph: outputs {sorted(names)}")

    def run(self, inputs: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """``{output name: array}``."""
        outs = self.session.run(list(self.output_names), self._feeds(inputs))
        return dict(zip(self.output_names, outs, strict=True))


class OpenVinoRuntime(_Named):
    """OpenVINO (CPU) on an exported IR, one static-batch compiled model per batch size seen.

    A batch that divides evenly into :attr:`streams` parts runs as that many infer requests at once, one per
    OpenVINO stream (each on its share of the cores), or as more requests of at most :attr:`max_request`
    cameras that queue for the streams (:meth:`parts`); others run as one request on all cores (LATENCY hint).
    Every call writes its outputs straight into new arrays that the caller owns (no copy out of OpenVINO's
    buffers) and reads its inputs in place.

    In bf16, the states that feed only convolutions (:func:`conv_only_inputs`: PredNet's ``R`` and ``E``),
    which OpenVINO rounds to bf16 before any use, are taken and returned in bf16 (``ml_dtypes.bfloat16``,
    :attr:`state_dtypes`): the same numbers, half the bytes to convert, copy and keep per camera.

    Args:
        path: The ``model.xml`` file (or any file ``openvino.Core.read_model`` reads, e.g. ``.onnx``).
        threads: Inference threads in all (0: OpenVINO's default, one per core).
        hint: ``"LATENCY"`` (faster for one request at a time on this workload) or ``"THROUGHPUT"``, for batches
            that run as one request.
        max_compiled: Most compiled batch sizes kept (oldest dropped first; default: one per step bucket).
        precision: ``"f32"`` or ``"bf16"`` (the inference precision; bf16 only where the CPU has it, else f32
            with a warning: :attr:`precision` says which one runs).
        streams: Requests run at once, one per OpenVINO stream (0: :func:`default_streams`; 1: never split).
        max_request: Most cameras per request when a batch is split (measured on 2 cores, bf16, batches 24-64:
            requests of at most 8 stepped 11-22% more frames/s than two of half the batch; docs/benchmarks.md).
    """

    name = "openvino"

    def __init__(self, path: str | os.PathLike, threads: int = 0, hint: str = "LATENCY", max_compiled: int = len(BUCKETS),
                 precision: Literal["f32", "bf16"] = "f32", streams: int = 0, max_request: int = 8) -> None:
        ov = require("openvino")
        self.core = ov.Core()
        self.model = self.core.read_model(str(path))
        self.precision = _cpu_precision(self.core, precision)
        self.streams = min(streams or default_streams(), threads or 64)  # a stream needs a thread of its own
        self.max_request = max_request
        # f32 unless asked: on CPUs with AMX / AVX-512 BF16, OpenVINO's CPU plugin otherwise infers in bf16 by
        # default, and the features then drift by ~1% from Keras' (measured on such a Xeon; the `bf16` export
        # asks for it, docs/runtimes.md); an int8 model keeps its int8 ops.
        self.config: dict[str, Any] = {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": self.precision}
        self.split_config: dict[str, Any] = {"NUM_STREAMS": self.streams, "INFERENCE_PRECISION_HINT": self.precision}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = threads
            self.split_config["INFERENCE_NUM_THREADS"] = threads
        self.input_names = tuple(i.get_any_name() for i in self.model.inputs)
        self.output_names = output_names(len(self.input_names) - 1)
        self.state_dtypes = self._bf16_states() if self.precision == "bf16" else None
        self.max_compiled = max_compiled
        self._requests: OrderedDict[int, list[Any]] = OrderedDict()

    def _bf16_states(self) -> tuple[np.dtype, ...] | None:
        """Make the states that feed only convolutions bf16 at the model's edge; their dtypes (None: none)."""
        ov = require("openvino")
        low = conv_only_inputs(self.model) & set(self.input_names[1:])
        if not low:
            return None
        from openvino.preprocess import PrePostProcessor

        bf16 = np.dtype(require("ml_dtypes").bfloat16)
        ppp = PrePostProcessor(self.model)
        for name in low:
            ppp.input(name).tensor().set_element_type(ov.Type.bf16)
            ppp.output(f"new_{name}").tensor().set_element_type(ov.Type.bf16)
        self.model = ppp.build()
        return tuple(bf16 if n in low else np.dtype(np.float32) for n in self.input_names[1:])

    def parts(self, batch: int) -> int:
        """How many requests a batch of ``batch`` runs as: one if it does not divide into :attr:`streams`, else
        :attr:`streams`, doubled while a request would hold more than :attr:`max_request` cameras and the batch
        still divides (the requests beyond the streams queue for them)."""
        if self.streams <= 1 or batch % self.streams:
            return 1
        parts = self.streams
        while batch // parts > self.max_request and batch % (2 * parts) == 0:
            parts *= 2
        return parts

    def _compile(self, batch: int) -> list[Any]:
        """The infer requests of a batch of ``batch``: one per part, each compiled for ``batch / parts``."""
        parts = self.parts(batch)
        model = self.model.clone()
        model.reshape({n: [batch // parts, *model.input(n).get_partial_shape()[1:]] for n in self.input_names})
        compiled = self.core.compile_model(model, "CPU", self.config if parts == 1 else self.split_config)
        return [compiled.create_infer_request() for _ in range(parts)]

    def _request(self, batch: int) -> list[Any]:
        if batch in self._requests:
            self._requests.move_to_end(batch)
            return self._requests[batch]
        self._requests[batch] = requests = self._compile(batch)
        while len(self._requests) > self.max_compiled:
            self._requests.popitem(last=False)
        return requests

    def run(self, inputs: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """``{output name: array}``, in new arrays the requests write into (the default, copying each input in
        and each output out twice, cost about 12% of the worker's busy time at 10 cameras). States may come in
        the model's dtype or in :attr:`state_dtypes` (no copy)."""
        ov = require("openvino")
        feeds = self._feeds(inputs)
        if self.state_dtypes is not None:  # states given in the model's dtype are rounded here (a copy)
            for name, dtype in zip(self.input_names[1:], self.state_dtypes, strict=True):
                feeds[name] = feeds[name].astype(dtype, copy=False)
        batch = len(inputs[0])
        requests = self._request(batch)
        size = batch // len(requests)
        ports = requests[0].model_outputs
        outs = [np.empty((batch, *p.get_partial_shape().to_shape()[1:]), _numpy_dtype(p.get_element_type()))
                for p in ports]
        started = []
        try:
            for k, request in enumerate(requests):
                rows = slice(k * size, (k + 1) * size)
                for i, out in enumerate(outs):
                    request.set_output_tensor(i, _ov_tensor(ov, out[rows]))
                request.start_async({n: _ov_tensor(ov, a[rows]) for n, a in feeds.items()}, share_inputs=True)
                started.append(request)
        finally:  # every started request ends before its arrays are released or it is used again
            for request in started:
                request.wait()
        return {p.get_any_name(): out for p, out in zip(ports, outs, strict=True)}


_LAYOUT_OPS = frozenset({"Transpose", "Concat", "Reshape", "Squeeze", "Unsqueeze", "Interpolate", "Tile", "Broadcast"})
"""OpenVINO ops that move values without computing on them (:func:`conv_only_inputs` looks through them)."""


def conv_only_inputs(model: Any) -> set[str]:
    """Names of the inputs of an ``openvino.Model`` whose every use, through ops that only move values
    (:data:`_LAYOUT_OPS`), is as the data input of a ``Convolution``: with bf16 inference precision, OpenVINO
    rounds them to bf16 before anything computes on them."""

    def only_convs(output: Any) -> bool:
        for target in output.get_target_inputs():
            node = target.get_node()
            if node.get_type_name() == "Convolution" and target.get_index() == 0:
                continue
            if node.get_type_name() not in _LAYOUT_OPS or not all(only_convs(o) for o in node.outputs()):
                return False
        return True

    return {p.get_friendly_name() for p in model.get_parameters() if only_convs(p.output(0))}


def _numpy_dtype(element_type: Any) -> np.dtype:
    """The numpy dtype of an OpenVINO element type (bf16: ``ml_dtypes.bfloat16``)."""
    if element_type.get_type_name() == "bf16":
        return np.dtype(require("ml_dtypes").bfloat16)
    return np.dtype(element_type.to_dtype())


def _ov_tensor(ov: Any, array: np.ndarray) -> Any:
    """An ``openvino.Tensor`` on ``array``'s memory (bf16 arrays are passed as their 16-bit patterns)."""
    if array.dtype.name == "bfloat16":
        return ov.Tensor(array.view(np.uint16), list(array.shape), ov.Type.bf16)
    return ov.Tensor(array, shared_memory=True)


def default_streams() -> int:
    """OpenVINO streams (requests run at once) by default: 2 where the process may use 2 or more cores, else 1.

    Measured on 2 cores (docs/benchmarks.md): two requests of half a batch, one per core, stepped 7-15% more
    frames/s at batches 2-32 than one request on both cores, whose single-threaded reference kernels (channel split and concat of the
    small PredNet layers) leave a core idle. Set ``streams`` (``VIGIL_WORKER_RUNTIME_STREAMS``) on bigger machines
    by measurement (`vigil bench runtime --streams`).
    """
    return 2 if len(os.sched_getaffinity(0)) >= 2 else 1


def _cpu_precision(core: Any, precision: str) -> str:
    """``precision`` if the CPU runs it, else ``"f32"`` (with a warning naming what the CPU lacks)."""
    if precision == "f32":
        return precision
    if precision != "bf16":
        raise ValueError(f"Unknown OpenVINO precision; expected 'f32' or 'bf16'. Received: {precision!r}")
    caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if "BF16" in caps:
        return precision
    log.warning("the bf16 export runs in f32 here: this CPU has no bf16 units (AMX or AVX-512 BF16; OpenVINO "
                "lists %s); use the fp32 or int8 export on it", ", ".join(caps))
    return "f32"


def open_runtime(kind: str, predictor: StreamingPredictor, export: str | os.PathLike | None = None,
                 threads: int = 0, streams: int = 0) -> StepRuntime:
    """The runtime ``kind`` (one of :data:`RUNTIMES`) for ``predictor``; ``export``: its export folder
    (checked against the predictor's weights), not needed for ``keras``; ``streams``: OpenVINO's
    (:class:`OpenVinoRuntime`)."""
    if kind == "keras":
        return KerasRuntime(predictor)
    if kind == "xla":
        return XlaRuntime(predictor)
    if kind not in RUNTIMES:
        raise ValueError(f"Unknown runtime; expected one of {RUNTIMES}. Received: {kind!r}")
    if export is None:
        raise ValueError(f"The {kind} runtime needs an export folder (`vigil export --format {kind}`).")
    info = ExportInfo.load(export)
    info.check(predictor)
    if info.format != kind:
        raise ValueError(f"{export} holds a {info.format} export, not {kind}.")
    graph = Path(export) / info.graph
    if kind == "onnx":
        return OnnxRuntime(graph, threads)
    return OpenVinoRuntime(graph, threads, precision="bf16" if info.quantize == "bf16" else "f32", streams=streams)


# --- export -------------------------------------------------------------------------------------------


def serving_function(predictor: StreamingPredictor) -> tuple[Any, Any, list[Any]]:
    """``(keras model, tf.function, input specs)``: the step with named inputs and a dict of named outputs
    and a dynamic batch dimension (needs the TensorFlow backend)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(f"Exporting needs KERAS_BACKEND=tensorflow. Received: {keras.backend.backend()}")
    tf = require("tensorflow")
    model = build_step_model(predictor.config, predictor.cell, predictor.arch)
    sig = _signature(predictor)
    specs = [tf.TensorSpec((None, *shape), dtype, name=name) for name, shape, dtype in sig]
    names = output_names(len(sig) - 1)

    @tf.function(input_signature=specs)
    def serve(*args: Any) -> dict[str, Any]:
        outs = model(list(args), training=False)
        return {n: tf.identity(o, name=n) for n, o in zip(names, outs, strict=True)}

    return model, serve, specs


def export_saved_model(predictor: StreamingPredictor, folder: Path) -> Path:
    """Write the step as a TensorFlow SavedModel (endpoint ``serve``) into ``folder``."""
    import keras

    model, serve, _ = serving_function(predictor)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", serve)
    archive.write_out(str(folder), verbose=False)
    return folder


def export_onnx(predictor: StreamingPredictor, path: Path, opset: int = OPSET) -> Path:
    """Write the step as ONNX (tf2onnx, ``opset``) to ``path``."""
    tf2onnx = require("tf2onnx")
    require("onnx")
    _, serve, specs = serving_function(predictor)
    tf2onnx.convert.from_function(serve, input_signature=specs, opset=opset, output_path=str(path))
    return path


def calibration_feeds(predictor: StreamingPredictor, clips: Sequence[np.ndarray], batch: int = 4, steps: int = 48,
                      every: int = 4) -> list[Feed]:
    """Real step inputs for int8 calibration: ``batch`` cameras stepped ``steps`` frames from a zero state
    through the Keras step (camera ``k`` plays clip ``k % len(clips)``, offset by ``k`` frames), keeping
    the first ``every`` steps (the states right after a reset are unlike later ones: without them int8 was
    6-30% off on the second frame) and then every ``every``-th step's frames and states."""
    if not clips:
        raise ValueError("Calibration needs at least one clip of frames.")
    runtime = KerasRuntime(predictor)
    state = [np.zeros((batch, *shape), dtype) for _, shape, dtype in _signature(predictor)[1:]]
    feeds: list[Feed] = []
    for t in range(steps):
        frames = np.stack([clips[k % len(clips)][(t + k) % len(clips[k % len(clips)])] for k in range(batch)])
        feed = [frames, *state]
        if t < every or t % every == every - 1:
            feeds.append(feed)
        out = runtime.run(feed)
        state = [out[f"new_state_{i}"] for i in range(len(state))]
    return feeds


def quantize_onnx_int8(src: Path, dst: Path, feeds: Sequence[Feed]) -> Path:
    """ONNX Runtime static int8 quantisation (QDQ) of the convolutions below full resolution, calibrated on ``feeds``.

    The error features (squared differences, means, log) stay fp32: quantising them would swamp the small
    prediction errors they measure. The convolutions at the frame's full resolution stay fp32 too
    (:func:`full_resolution_convs`): they have few channels, so int8 gains little there and its
    quantise/dequantise passes over full-size maps cost more than it saves, and they make the prediction
    itself (int8 there raised the frame ``mse`` by ~15% on Ped2, without them by ~0.2%). Weights are
    per-channel int8, activations uint8 with the reduced 7-bit range that keeps AVX2 CPUs without VNNI from
    saturating.
    """
    quant = require("onnxruntime.quantization")
    from onnxruntime.quantization.shape_inference import quant_pre_process

    names = input_names(len(feeds[0]) - 1)

    class _Reader(quant.CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            feed = next(self._it, None)
            return None if feed is None else dict(zip(names, feed, strict=True))

    pre = dst.with_suffix(".pre.onnx")
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    keep = full_resolution_convs(pre, feeds[0][0].shape[1:3])
    quant.quantize_static(str(pre), str(dst), _Reader(), quant_format=quant.QuantFormat.QDQ,
                          op_types_to_quantize=["Conv"], per_channel=True, reduce_range=True, nodes_to_exclude=keep,
                          activation_type=quant.QuantType.QUInt8, weight_type=quant.QuantType.QInt8)
    pre.unlink(missing_ok=True)
    return dst


def full_resolution_convs(path: Path, frame_hw: tuple[int, ...]) -> list[str]:
    """Names of the ``Conv`` nodes of an ONNX graph whose output has the frame's height and width (NCHW)."""
    onnx = require("onnx")
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    shapes = {v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim)
              for v in [*model.graph.value_info, *model.graph.output]}
    return [n.name for n in model.graph.node
            if n.op_type == "Conv" and shapes.get(n.output[0], ())[2:] == tuple(frame_hw)]


def export_openvino(predictor: StreamingPredictor, path: Path, quantize: str, feeds: Sequence[Feed] | None,
                    work: Path) -> Path:
    """Write the step as OpenVINO IR (``model.xml`` + ``.bin``) to ``path``, converted from the ONNX export
    (so both runtimes run the same graph; a SavedModel converts too, but slower).

    ``none``/``fp16``/``bf16``: from the fp32 graph (``fp16``: weights stored as fp16; ``bf16``: the fp32 graph,
    which :class:`OpenVinoRuntime` compiles with bf16 precision). ``int8``: from ONNX Runtime's
    QDQ int8 graph (:func:`quantize_onnx_int8`), which OpenVINO runs as int8; NNCF's own int8 of this graph
    (convolutions only) raised the frame error 4-6x on this model, so it is not used.
    """
    ov = require("openvino")
    source = export_onnx(predictor, work / "fp32.onnx")
    if quantize == "int8":
        if not feeds:
            raise ValueError("int8 needs calibration feeds.")
        source = quantize_onnx_int8(source, work / "int8.onnx", feeds)
    ov.save_model(ov.convert_model(str(source)), str(path), compress_to_fp16=quantize == "fp16")
    return path


def check_combination(fmt: str, quantize: str) -> None:
    """Raise ``ValueError`` for a format or quantisation that is not offered."""
    if fmt not in FORMATS:
        raise ValueError(f"Unknown export format; expected one of {FORMATS}. Received: {fmt!r}")
    if quantize not in QUANTIZE:
        raise ValueError(f"Unknown quantisation; expected one of {QUANTIZE}. Received: {quantize!r}")
    if fmt == "saved_model" and quantize != "none":
        raise ValueError("A SavedModel is exported in fp32 only; quantise with --format onnx or openvino.")
    if fmt == "onnx" and quantize == "fp16":
        raise ValueError("fp16 is offered for --format openvino only: ONNX Runtime's CPU provider has no fp16 "
                         "convolutions, so an fp16 ONNX graph runs slower than fp32 on a CPU.")
    if fmt != "openvino" and quantize == "bf16":
        raise ValueError("bf16 is offered for --format openvino only (OpenVINO runs the fp32 graph with bf16 "
                         "arithmetic on CPUs with AMX or AVX-512 BF16).")


def export(predictor: StreamingPredictor, fmt: str, out: str | os.PathLike, quantize: str = "none",
           calibration: Sequence[np.ndarray] | None = None, calibration_source: str = "",
           progress: Progress = log.info) -> ExportInfo:
    """Export the streaming step of ``predictor`` to the folder ``out`` (replaced) with its manifest.

    Args:
        predictor: The loaded model.
        fmt: One of :data:`FORMATS`.
        out: The export folder (written next to it first, then renamed into place).
        quantize: One of :data:`QUANTIZE` (see :func:`check_combination`).
        calibration: For ``int8``: clips ``(T, H, W, C)`` uint8 of normal footage at the model's input shape.
        calibration_source: What the clips are (written to the manifest).
        progress: Called with one line per stage.
    """
    check_combination(fmt, quantize)
    if quantize == "int8" and not calibration:
        raise ValueError("--quantize int8 needs normal footage to calibrate on (--calib-data).")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        graph = _export_into(predictor, fmt, quantize, staging, calibration, progress)
        calib = {"source": calibration_source, "clips": len(calibration or [])} if quantize == "int8" else {}
        info = ExportInfo(fmt, quantize, predictor.model_id, predictor.model_version, predictor.arch.name,
                          _signature(predictor), list(output_names(len(_signature(predictor)) - 1)), graph, calib)
        info.save(staging)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    progress(f"wrote {out / graph} ({_size_mib(out / graph):.1f} MiB) and {out / MANIFEST}")
    return info


def _export_into(predictor: StreamingPredictor, fmt: str, quantize: str, folder: Path,
                 calibration: Sequence[np.ndarray] | None, progress: Progress) -> str:
    """Write the graph into ``folder`` (scratch files under ``folder/.work``, removed); returns its name."""
    work = folder / ".work"
    work.mkdir()
    feeds = None
    if quantize == "int8":
        progress(f"calibrating int8 ranges on {len(calibration or [])} clips (Keras step, real frames and states)")
        feeds = calibration_feeds(predictor, calibration or [])
    name = GRAPH_FILES[fmt]
    progress(f"exporting the {predictor.arch.name} step to {fmt} ({quantize})")
    if fmt == "saved_model":
        export_saved_model(predictor, folder / name)
    elif fmt == "onnx":
        onnx_path = export_onnx(predictor, work / "fp32.onnx" if feeds else folder / name)
        if feeds:
            quantize_onnx_int8(onnx_path, folder / name, feeds)
    else:
        export_openvino(predictor, folder / name, quantize, feeds, work)
    shutil.rmtree(work)
    return name


def _size_mib(path: Path) -> float:
    files = [p for p in path.parent.iterdir() if p.is_file()] if path.is_file() else list(path.rglob("*"))
    return sum(p.stat().st_size for p in files if p.is_file()) / 2**20


# --- a streaming predictor on a runtime -----------------------------------------------------------------


class RuntimeSettings(BaseSettings):
    """Which runtime a :class:`RuntimePredictor` steps with (environment prefix ``VIGIL_RUNTIME_``).

    The worker has the same settings as first-class ``VIGIL_WORKER_RUNTIME*`` variables; these remain for
    :class:`RuntimePredictor` users (``vigil bench runtime``, scripts).
    """

    model_config = SettingsConfigDict(env_prefix="VIGIL_RUNTIME_", extra="ignore")

    kind: Literal["keras", "onnx", "openvino", "xla"] = Field("keras", description="Runtime of the model step")
    quantize: Literal["none", "int8", "fp16", "bf16"] = Field("none", description="Which export to use (see `vigil export`)")
    export_dir: Path | None = Field(None, description="The export folder; None: EXPORT_ROOT/<model_id>-<version>/<kind>-<quantize>")
    export_root: Path = Field(Path(".state/export"), description="Where `vigil export` puts exports by default")
    threads: int = Field(0, ge=0, le=256, description="Intra-op threads of the runtime (0: its default)")
    streams: int = Field(0, ge=0, le=64, description="OpenVINO streams: requests run at once; an even batch is "
                                                     "split across them (0: default_streams(); 1: never split)")
    auto_export: bool = Field(False, description="Export on the fly into EXPORT_ROOT when the export is missing "
                                                 "(fp32, fp16 and bf16 only; needs TensorFlow and tf2onnx)")


def export_command(kind: str, quantize: str, folder: Path, model_dir: str | os.PathLike | None = None) -> str:
    """The ``vigil export`` command that writes the export a worker looks for at ``folder``."""
    model = f" --model {model_dir}" if model_dir is not None else ""
    calib = " --calib-data DIR_OF_NORMAL_VIDEOS" if quantize == "int8" else ""
    return f"vigil export --format {kind} --quantize {quantize}{model}{calib} --out {folder}"


def ensure_export(predictor: StreamingPredictor, kind: str, quantize: str, folder: Path, auto_export: bool,
                  model_dir: str | os.PathLike | None = None, progress: Progress = log.info) -> Path:
    """The export folder of ``predictor`` for runtime ``kind``: ``folder`` when it holds a manifest, else
    exported there now when ``auto_export`` (fp32/fp16/bf16 only: int8 needs the site's normal footage), else
    ``FileNotFoundError`` naming the ``vigil export`` command. Concurrent workers exporting the same model
    serialise on a lock file beside the folder, so the second reuses the first one's export."""
    folder = Path(folder)
    if (folder / MANIFEST).is_file():
        return folder
    cmd = export_command(kind, quantize, folder, model_dir)
    if not auto_export or quantize == "int8":
        why = ("int8 is never exported on the fly (it needs normal footage of the scene to calibrate on)"
               if auto_export else "auto-export is off")
        raise FileNotFoundError(f"No {kind} ({quantize}) export of {predictor.model_id}:{predictor.model_version} at "
                                f"{folder}; {why}. Make it with `{cmd}`.")
    import fcntl

    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / MANIFEST).is_file():  # another process may have exported it while we waited
            progress(f"exporting {predictor.model_id}:{predictor.model_version} for the {kind} runtime into {folder} "
                     f"(once per weights version; `{cmd}` does the same ahead of time)")
            try:
                export(predictor, kind, folder, quantize, progress=progress)
            except (RuntimeError, ImportError) as exc:
                raise RuntimeError(f"Exporting for the {kind} runtime failed ({exc}); run `{cmd}` where TensorFlow "
                                   "and tf2onnx are installed, and point the worker at that folder.") from exc
    return folder


def open_for_settings(settings: RuntimeSettings, predictor: StreamingPredictor,
                      model_dir: str | os.PathLike | None = None) -> StepRuntime:
    """The runtime ``settings`` name for ``predictor`` (its export looked up as :func:`export_dir_for` says,
    and made there when ``settings.auto_export``)."""
    if settings.kind not in EXPORTED_RUNTIMES:
        return open_runtime(settings.kind, predictor)
    folder = settings.export_dir or export_dir_for(settings.export_root, predictor.model_id, predictor.model_version,
                                                   settings.kind, settings.quantize)
    folder = ensure_export(predictor, settings.kind, settings.quantize, Path(folder), settings.auto_export, model_dir)
    return open_runtime(settings.kind, predictor, folder, settings.threads, settings.streams)


class RuntimePredictor(StreamingPredictor):
    """A :class:`~vigil.model.streaming.StreamingPredictor` whose step graph runs on a :class:`StepRuntime`;
    everything around the graph (motion, features, states, buckets) is the predictor's own.

    A worker uses it with ``VIGIL_WORKER_PREDICTOR=vigil.model.runtimes:RuntimePredictor`` and
    :class:`RuntimeSettings` (``VIGIL_RUNTIME_KIND=onnx``, ...).
    """

    runtime: StepRuntime | None = None

    @classmethod
    def load(cls, path: str | os.PathLike = DEFAULT_MODEL_DIR,
             settings: RuntimeSettings | None = None) -> RuntimePredictor:
        """Load a model directory and open its runtime (``settings``: default from the environment)."""
        predictor = super().load(path)
        if not isinstance(predictor, RuntimePredictor):  # StreamingPredictor.load builds ``cls``
            raise TypeError(f"Expected a RuntimePredictor. Received: {type(predictor).__name__}")
        predictor.use_step_runtime(open_for_settings(settings or RuntimeSettings(), predictor, path))
        return predictor

    def use_step_runtime(self, runtime: StepRuntime) -> None:
        """Step with ``runtime`` from now on."""
        self.runtime = runtime
        self.use_runtime(runtime)
        log.info("model %s steps on %s", self.model_id, runtime.name)
