"""`VIGIL_WORKER_RUNTIME`: every runtime gives the Keras step's scores through the worker's own path (no Kafka).

The packaged Ped2 model, real Ped2-mini frames of five cameras, interleaved in one batch (so the engine plans
waves, pads the 5-camera step to the 6-bucket, gathers and scatters the states), through
:func:`vigil.services.worker.transport.build_engine` and :meth:`WorkerEngine.process`: the engine built for
each runtime must publish the Keras engine's score messages to the stated tolerance.

Stated tolerance, on every feature of every score (``mse``, ``psnr``, ``patch_max``, ``motion_max``) and on the
dequantised heat map: ``|a - b| <= ATOL + RTOL * |b|`` with ``RTOL = 1e-4``, ``ATOL = 2e-5`` (the fp32 tolerance of
tests/model/test_runtimes.py; each runtime follows its own recurrent states over all the frames, so an error in
the state path grows and shows). The heat map travels quantised to uint8 with a per-frame scale, so it is
compared to one quantisation step. The onnx and openvino exports are made on the fly by the worker (the
auto-export path) into a temporary export root.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_worker_logic import decode_scores, frame_record

from vigil.model import runtimes
from vigil.model.data import ped2_mini_dir, read_video
from vigil.services.worker.settings import WorkerSettings
from vigil.services.worker.transport import build_engine

RTOL, ATOL = 1e-4, 2e-5
N_CAMERAS, N_FRAMES = 5, 8
FEATURES = ("mse", "psnr", "patch_max", "motion_max")


@pytest.fixture(scope="module")
def records() -> list:
    """Five cameras' frames of the four Ped2-mini clips (the fifth plays the first from frame 3), interleaved
    camera by camera."""
    mini = ped2_mini_dir()
    if mini is None:
        pytest.fail("data/ped2-mini not found: run the tests from a Vigil checkout.")
    videos = sorted(mini.glob("*/*.mkv"))
    whole = [read_video(v, 120, 180, 1) for v in videos]
    clips = [whole[c % len(videos)][3 * (c // len(videos)):][:N_FRAMES] for c in range(N_CAMERAS)]
    return [frame_record(f"cam-{c}", t, clips[c][t]) for t in range(N_FRAMES) for c in range(N_CAMERAS)]


@pytest.fixture(scope="module")
def export_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for package in ("onnxruntime", "openvino", "tf2onnx", "onnx"):
        try:
            runtimes.require(package)
        except runtimes.RuntimeMissingError as err:
            pytest.fail(str(err))
    return tmp_path_factory.mktemp("exports")


def _scores(runtime: str, root: Path, records: list, quantize: str = "none") -> list:
    engine = build_engine(WorkerSettings(runtime=runtime, runtime_quantize=quantize, runtime_export_root=root,  # type: ignore[arg-type]
                                         runtime_threads=2, warmup_frames=0, staleness_s=0))  # fmt: skip
    [slot] = engine.models.slots()
    runner = slot.predictor._runner  # type: ignore[attr-defined]
    if runtime == "keras":
        assert runner is slot.predictor._model, f"keras: steps on {runner!r}"  # type: ignore[attr-defined]
    else:
        assert getattr(runner, "name", None) == runtime, f"{runtime}: steps on {runner!r}"
    if quantize == "bf16" and runner.precision == "bf16":  # the worker keeps R and E in bf16
        dtypes = [a.dtype.name for a in slot.predictor.initial_state()]  # type: ignore[attr-defined]
        assert dtypes[:9] == ["bfloat16"] * 3 + ["float32"] * 3 + ["bfloat16"] * 3, dtypes
    return sorted(decode_scores(engine.process(records)), key=lambda s: (s.camera_id, s.seq))


@pytest.fixture(scope="module")
def keras_scores(records: list, export_root: Path) -> list:
    return _scores("keras", export_root, records)


@pytest.mark.parametrize("runtime", ["onnx", "openvino", "xla"])
def test_runtime_scores_equal_keras_through_the_worker(runtime: str, records: list, export_root: Path,
                                                       keras_scores: list) -> None:
    got = _scores(runtime, export_root, records)
    assert [(s.camera_id, s.seq) for s in got] == [(s.camera_id, s.seq) for s in keras_scores]
    assert len(got) == N_CAMERAS * N_FRAMES
    for name in FEATURES:
        a = np.array([getattr(s.features, name) for s in got])
        b = np.array([getattr(s.features, name) for s in keras_scores])
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=f"{runtime}: {name}")
    assert max(s.features.motion_max for s in keras_scores) > 0.1, "the frames move: motion must be seen"
    for s, r in zip(got, keras_scores, strict=True):
        step = float(r.heatmap().max()) / 255 + 1e-12
        np.testing.assert_allclose(s.heatmap(), r.heatmap(), atol=1.01 * step + ATOL, err_msg=f"{runtime} heat map")
    if runtime != "xla":
        assert (export_root / f"{keras_scores[0].model_id}-{keras_scores[0].model_version}" / f"{runtime}-none"
                / runtimes.MANIFEST).is_file(), "the worker exported the model on the fly"


def test_missing_export_without_auto_export_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"vigil export --format openvino --quantize none --model .* --out "):
        build_engine(WorkerSettings(runtime="openvino", runtime_export_root=tmp_path, runtime_auto_export=False))
    with pytest.raises(FileNotFoundError, match="int8 is never exported on the fly"):
        build_engine(WorkerSettings(runtime="onnx", runtime_quantize="int8", runtime_export_root=tmp_path))


def test_openvino_bf16_scores_within_its_bounds_through_the_worker(records: list, export_root: Path,
                                                                   keras_scores: list) -> None:
    """The bf16 export through the worker (states kept in bf16 on a CPU with bf16 units): ``mse`` within 10% and
    ``psnr`` within 0.45 dB of Keras's, the bounds of tests/model/test_runtimes.py; ``motion_max`` is not the
    model's, so it is equal."""
    got = _scores("openvino", export_root, records, quantize="bf16")
    assert [(s.camera_id, s.seq) for s in got] == [(s.camera_id, s.seq) for s in keras_scores]
    feats = {n: (np.array([getattr(s.features, n) for s in got]), np.array([getattr(s.features, n) for s in keras_scores]))
             for n in FEATURES}
    np.testing.assert_allclose(*feats["mse"], rtol=0.10)
    np.testing.assert_allclose(*feats["psnr"], atol=0.45)
    np.testing.assert_allclose(*feats["motion_max"], rtol=RTOL, atol=ATOL)
