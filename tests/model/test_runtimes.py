"""Every inference runtime steps the packaged Ped2 model like Keras does, on real frames and states.

Stated tolerances (checked on every output of every step, each runtime following its OWN recurrent
states for ``STEPS`` steps, so an error in the state path would grow and show):

* fp32 runtimes (SavedModel through TensorFlow, ONNX Runtime, OpenVINO): ``|a - b| <= FP32_ATOL + FP32_RTOL * |b|``
  on the prediction, ``mse``, ``psnr``, ``patch_max``, the heat map and the new states (measured: at most
  ~1e-6 on the states, ~4e-6 dB on ``psnr``).
* int8 (ONNX Runtime static QDQ int8 of the convolutions below full resolution), on every step: ``mse`` and ``patch_max`` within ``INT8_REL``
  (relative) of Keras's, ``psnr`` within ``INT8_PSNR_DB``, heat maps correlated above ``INT8_HEATMAP_CORR``
  (measured on this model: ``mse`` and ``patch_max`` within 0.7%, ``psnr`` within 0.02 dB, correlation
  0.99998; ten times the measured error, so another CPU's rounding still passes).
* bf16 (OpenVINO's fp32 graph with bf16 arithmetic, where the CPU has bf16 units; f32 elsewhere): ``mse`` and
  ``patch_max`` within ``BF16_REL`` (relative), ``psnr`` within ``BF16_PSNR_DB`` (10 log10 of 1 + BF16_REL), heat
  maps as int8 (measured on an AMX Xeon over the 6 steps: ``mse`` within 2.2%, ``patch_max`` 0.6%, ``psnr``
  0.10 dB: the bf16 error grows with the recurrent state, so the bound is 4.5x the measured one, not 10x).

The runtime packages are dependencies of the ``runtimes`` extra (in ``dev``): a missing one FAILS with
the pip command that installs it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from vigil.model import runtimes
from vigil.model.data import ped2_mini_dir, read_video
from vigil.model.streaming import StreamingPredictor

STEPS = 6
FP32_RTOL, FP32_ATOL = 1e-4, 2e-5
INT8_REL, INT8_PSNR_DB, INT8_HEATMAP_CORR = 0.05, 0.25, 0.995
BF16_REL, BF16_PSNR_DB = 0.10, 0.45
FEATURES = ("prediction", "mse", "psnr", "patch_max", "heatmap")


def _require(*packages: str) -> None:
    for package in packages:
        try:
            runtimes.require(package)
        except runtimes.RuntimeMissingError as err:
            pytest.fail(str(err))


@pytest.fixture(scope="module")
def predictor() -> StreamingPredictor:
    return StreamingPredictor.load()


@pytest.fixture(scope="module")
def clips(predictor: StreamingPredictor) -> list[np.ndarray]:
    """The first frames of the two Ped2-mini test clips (real frames, at the model's input shape)."""
    mini = ped2_mini_dir()
    if mini is None:
        pytest.fail("data/ped2-mini not found: run the tests from a Vigil checkout.")
    h, w, c = predictor.input_shape
    return [read_video(mini / "test" / f"{name}.mkv", h, w, c)[:24] for name in ("Test001", "Test002")]


@pytest.fixture(scope="module")
def exports(predictor: StreamingPredictor, clips: list[np.ndarray], tmp_path_factory: pytest.TempPathFactory
            ) -> dict[str, Path]:
    """``{runtime: export folder}``: each format through :func:`runtimes.export`, int8 from the fp32 ONNX."""
    _require("onnxruntime", "openvino", "tf2onnx", "onnx")
    root = tmp_path_factory.mktemp("exports")
    out = {fmt: root / fmt for fmt in runtimes.FORMATS}
    for fmt, folder in out.items():
        runtimes.export(predictor, fmt, folder, progress=lambda _: None)
    int8 = _marked_copy(out["onnx"], root / "onnx-int8", "int8")
    feeds = runtimes.calibration_feeds(predictor, clips[1:], batch=2, steps=12, every=3)
    runtimes.quantize_onnx_int8(out["onnx"] / "model.onnx", int8 / "model.onnx", feeds)
    bf16 = _marked_copy(out["openvino"], root / "openvino-bf16", "bf16")  # the bf16 export is the fp32 IR
    return {**out, "onnx-int8": int8, "openvino-bf16": bf16}


def _marked_copy(source: Path, folder: Path, quantize: str) -> Path:
    """A copy of the export ``source`` whose manifest says ``quantize``."""
    shutil.copytree(source, folder)
    manifest = json.loads((folder / runtimes.MANIFEST).read_text())
    (folder / runtimes.MANIFEST).write_text(json.dumps({**manifest, "quantize": quantize}))
    return folder


class _SavedModelRuntime(runtimes._Named):
    """The SavedModel export loaded back by TensorFlow (its ``serve`` endpoint)."""

    name = "saved_model"

    def __init__(self, folder: Path, n_states: int) -> None:
        import tensorflow as tf

        self.loaded = tf.saved_model.load(str(folder / "saved_model"))  # keep it: it owns the variables
        self.input_names, self.output_names = runtimes.input_names(n_states), runtimes.output_names(n_states)

    def run(self, inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in self.loaded.serve(*inputs).items()}


def _open(kind: str, predictor: StreamingPredictor, exports: dict[str, Path]) -> runtimes.StepRuntime:
    if kind == "saved_model":
        return _SavedModelRuntime(exports["saved_model"], len(runtimes._signature(predictor)) - 1)
    if kind == "onnx-int8":
        return runtimes.OnnxRuntime(exports[kind] / "model.onnx", threads=2)
    return runtimes.open_runtime(kind.partition("-")[0], predictor, exports[kind], threads=2)


def _roll(runtime: runtimes.StepRuntime, predictor: StreamingPredictor, clips: list[np.ndarray],
          batch: int) -> list[dict[str, np.ndarray]]:
    """``STEPS`` steps of ``batch`` cameras (camera k plays clip k % 2 from frame 2k), each runtime on its own states."""
    states = [np.zeros((batch, *shape), dtype) for _, shape, dtype in runtimes._signature(predictor)[1:]]
    outs = []
    for t in range(STEPS):
        frames = np.stack([clips[k % 2][t + 2 * k] for k in range(batch)])
        out = runtime.run([frames, *states])
        states = [out[f"new_state_{i}"] for i in range(len(states))]
        outs.append(out)
    return outs


@pytest.fixture(scope="module")
def keras_steps(predictor: StreamingPredictor, clips: list[np.ndarray]) -> dict[int, list[dict[str, np.ndarray]]]:
    keras_rt = runtimes.KerasRuntime(predictor)
    return {batch: _roll(keras_rt, predictor, clips, batch) for batch in (1, 4)}


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("kind", ["saved_model", "onnx", "openvino"])
def test_fp32_runtimes_agree_with_keras(kind: str, batch: int, predictor: StreamingPredictor, clips: list[np.ndarray],
                                        exports: dict[str, Path], keras_steps: dict) -> None:
    got = _roll(_open(kind, predictor, exports), predictor, clips, batch)
    for t, (ref, out) in enumerate(zip(keras_steps[batch], got, strict=True)):
        assert set(out) == set(ref), f"{kind}: outputs {sorted(out)}"
        for name in ref:
            assert out[name].shape == ref[name].shape, f"{kind} step {t}: {name} shape"
            np.testing.assert_allclose(out[name], ref[name], rtol=FP32_RTOL, atol=FP32_ATOL,
                                       err_msg=f"{kind}, batch {batch}, step {t}: {name}")


def _assert_within(label: str, got: list[dict], want: list[dict], rel: float, psnr_db: float) -> None:
    """Every step: ``mse`` and ``patch_max`` within ``rel`` (relative), ``psnr`` within ``psnr_db``, heat maps
    correlated above ``INT8_HEATMAP_CORR``."""
    for t, (ref, out) in enumerate(zip(want, got, strict=True)):
        for name in ("mse", "patch_max"):
            np.testing.assert_allclose(out[name], ref[name], rtol=rel, err_msg=f"{label} step {t}: {name}")
        np.testing.assert_allclose(out["psnr"], ref["psnr"], atol=psnr_db, err_msg=f"{label} step {t}: psnr")
        corr = np.corrcoef(out["heatmap"].ravel(), ref["heatmap"].ravel())[0, 1]
        assert corr > INT8_HEATMAP_CORR, f"{label} step {t}: heat map correlation {corr:.4f}"


@pytest.mark.parametrize("batch", [1, 4])
def test_int8_runtime_within_its_stated_tolerance(batch: int, predictor: StreamingPredictor, clips: list[np.ndarray],
                                                  exports: dict[str, Path], keras_steps: dict) -> None:
    got = _roll(_open("onnx-int8", predictor, exports), predictor, clips, batch)
    _assert_within("int8", got, keras_steps[batch], INT8_REL, INT8_PSNR_DB)
    exact = max(float(np.max(np.abs(o["mse"] - r["mse"]))) for o, r in zip(got, keras_steps[batch], strict=True))
    assert exact > 0, "the int8 graph gave Keras's exact numbers: it is not quantised"


@pytest.mark.parametrize("batch", [1, 4])
def test_bf16_runtime_within_its_stated_tolerance(batch: int, predictor: StreamingPredictor, clips: list[np.ndarray],
                                                  exports: dict[str, Path], keras_steps: dict) -> None:
    runtime = _open("openvino-bf16", predictor, exports)
    has_bf16 = "BF16" in runtime.core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")  # type: ignore[attr-defined]
    assert runtime.precision == ("bf16" if has_bf16 else "f32")  # type: ignore[attr-defined]
    got = _roll(runtime, predictor, clips, batch)
    _assert_within("bf16", got, keras_steps[batch], BF16_REL, BF16_PSNR_DB)
    pairs = list(zip(got, keras_steps[batch], strict=True))
    worst = {n: max(float(np.max(np.abs(o[n] - r[n]) / np.abs(r[n]))) for o, r in pairs) for n in ("mse", "patch_max")}
    worst["psnr_db"] = max(float(np.max(np.abs(o["psnr"] - r["psnr"]))) for o, r in pairs)
    if has_bf16:
        assert worst["mse"] > FP32_RTOL, "the bf16 runtime gave Keras's fp32 numbers: it does not run in bf16"
    print(f"bf16 (CPU has it: {has_bf16}), batch {batch}: largest differences {worst}")


def test_openvino_splits_a_batch_into_requests_without_changing_it(predictor: StreamingPredictor,
                                                                  clips: list[np.ndarray],
                                                                  exports: dict[str, Path]) -> None:
    """Two requests of half a batch each (streams=2, OpenVINO's default on 2+ cores) give the numbers of one
    request on the whole batch; a batch that does not divide runs as one request."""
    graph = exports["openvino"] / "model.xml"
    split, whole = runtimes.OpenVinoRuntime(graph, threads=2, streams=2), runtimes.OpenVinoRuntime(graph, streams=1)
    assert (split.parts(4), split.parts(3), split.parts(1), whole.parts(4)) == (2, 1, 1, 1)
    assert [split.parts(b) for b in (8, 12, 16, 24, 32, 48, 64)] == [2, 2, 2, 4, 4, 8, 8]  # <= 8 cameras a request
    for batch, parts in ((4, 2), (24, 4)):  # 24: four requests of 6, queued two at a time
        feed = runtimes.calibration_feeds(predictor, clips, batch=batch, steps=4, every=4)[-1]
        a, b = split.run(feed), whole.run(feed)
        assert len(split._request(batch)) == parts  # type: ignore[attr-defined]
        for name in b:
            np.testing.assert_allclose(a[name], b[name], rtol=FP32_RTOL, atol=FP32_ATOL, err_msg=f"{batch}: {name}")
    assert not any(np.shares_memory(a[n], b[n]) for n in a), "two calls returned the same buffers"
    again = split.run(feed)
    assert not np.shares_memory(again["new_state_0"], a["new_state_0"]), "a call's outputs were overwritten"


def test_bf16_keeps_the_states_that_feed_only_convolutions_in_bf16(predictor: StreamingPredictor,
                                                                   clips: list[np.ndarray],
                                                                   exports: dict[str, Path]) -> None:
    """PredNet's R and E states (0-2 and 6-8) only enter convolutions, C (3-5) is multiplied: on a bf16 CPU the
    bf16 runtime keeps R and E in bf16 (half the bytes per camera), and a predictor on it keeps its camera
    states so and steps within the bf16 bounds of Keras's predictor."""
    import openvino as ov

    n = len(predictor.initial_state()) - 1
    conv_only = runtimes.conv_only_inputs(ov.Core().read_model(str(exports["openvino"] / "model.xml")))
    assert conv_only == {f"state_{i}" for i in (0, 1, 2, 6, 7, 8)}
    runtime = _open("openvino-bf16", predictor, exports)
    if runtime.precision != "bf16":  # type: ignore[attr-defined]
        assert runtime.state_dtypes is None
        return
    assert [d.name for d in runtime.state_dtypes or ()] == ["bfloat16"] * 3 + ["float32"] * 3 + ["bfloat16"] * 3
    on_bf16 = StreamingPredictor.load()
    on_bf16.use_runtime(runtime)
    assert on_bf16.state_nbytes() < 0.7 * predictor.state_nbytes()
    states_a, states_b = [predictor.initial_state() for _ in range(2)], [on_bf16.initial_state() for _ in range(2)]
    for t in range(STEPS):
        frames = np.stack([clips[k][t] for k in range(2)])
        a, b = predictor.step(frames, states_a), on_bf16.step(frames, states_b)
        assert [s.dtype.name for s in b.new_states[0][:n]] == [d.name for d in runtime.state_dtypes]
        np.testing.assert_allclose(b.features.mse, a.features.mse, rtol=BF16_REL, err_msg=f"step {t}")
        states_a, states_b = a.new_states, b.new_states


def test_predictor_on_a_runtime_steps_like_the_keras_predictor(predictor: StreamingPredictor, clips: list[np.ndarray],
                                                              exports: dict[str, Path]) -> None:
    settings = runtimes.RuntimeSettings(kind="onnx", export_dir=exports["onnx"], threads=2)
    on_onnx = runtimes.RuntimePredictor.load(settings=settings)
    assert on_onnx.runtime is not None and on_onnx.runtime.name == "onnx"
    states_a = states_b = [predictor.initial_state() for _ in range(5)]  # 5 cameras: padded to the 6-bucket
    for t in range(4):
        frames = np.stack([clips[k % 2][t + k] for k in range(5)])
        a, b = predictor.step(frames, states_a), on_onnx.step(frames, states_b)
        for name in a.features.names():
            np.testing.assert_allclose(getattr(b.features, name), getattr(a.features, name), rtol=FP32_RTOL,
                                       atol=FP32_ATOL, err_msg=f"step {t}: {name}")
        np.testing.assert_allclose(b.heatmaps, a.heatmaps, rtol=FP32_RTOL, atol=FP32_ATOL)
        states_a, states_b = a.new_states, b.new_states


def test_a_stale_or_missing_export_is_refused(predictor: StreamingPredictor, exports: dict[str, Path],
                                              tmp_path: Path) -> None:
    stale = tmp_path / "stale"
    shutil.copytree(exports["onnx"], stale)
    manifest = json.loads((stale / runtimes.MANIFEST).read_text())
    (stale / runtimes.MANIFEST).write_text(json.dumps({**manifest, "model_version": "000000000000"}))
    with pytest.raises(ValueError, match="re-run `vigil export`"):
        runtimes.open_runtime("onnx", predictor, stale)
    with pytest.raises(ValueError, match="holds a onnx export"):
        runtimes.open_runtime("openvino", predictor, exports["onnx"])
    with pytest.raises(FileNotFoundError, match="vigil export --format openvino --quantize int8"):
        runtimes.open_for_settings(runtimes.RuntimeSettings(kind="openvino", quantize="int8", export_root=tmp_path),
                                   predictor)


def test_unsupported_combinations_fail_before_any_work() -> None:
    from typer import Typer
    from typer.testing import CliRunner

    from vigil.model import export_cli

    for fmt, quantize in (("saved_model", "int8"), ("onnx", "fp16"), ("tflite", "none"), ("onnx", "int4"),
                          ("onnx", "bf16"), ("saved_model", "bf16")):
        with pytest.raises(ValueError):
            runtimes.check_combination(fmt, quantize)
    app = Typer()
    export_cli.register(app, Typer())
    app.command("noop")(lambda: None)  # two commands: `export` stays a subcommand
    result = CliRunner().invoke(app, ["export", "--format", "onnx", "--quantize", "fp16"])
    assert result.exit_code == 2 and "fp16 is offered for --format openvino only" in result.output
