"""Compile -> load -> emulate -> verify, through the Python API and the CLI, on small inline models.

The oracle: the emulated compiled program equals onnxruntime on the deployed model, sample by
sample, for deterministic and stochastic binarization and both input encodings, on chips small
enough that layers split over many cores."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

import crossmap
from crossmap.chip import ChipSpec
from crossmap.cli import main
from crossmap.errors import BinarizeError, CrossmapError, OutputExistsError
from crossmap.encoding import encode
from crossmap.runner import run_arrays
from crossmap.verify import verify

from crossmap.testing.onnx_models import binary_mlp, mlp

SMALL_CHIP = ChipSpec.truenorth().replace(axons_per_core=160, neurons_per_core=8, mesh_x=8, mesh_y=8)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "bmlp.onnx"
    onnx.save(binary_mlp((64, 32, 10), seed=3), str(path))
    return path


def binary_images(n: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, 64)) > 0.5).astype(np.float32)


@pytest.mark.parametrize("pipeline", [
    "binarize_deterministic,partition,place,route,emit",
    "binarize_deterministic{encoding=rate;ticks=4},partition{fanout=splitter},place,route,emit",
    "binarize_stochastic{ensemble=3},partition,place,route,emit",
])
def test_compiled_program_equals_onnxruntime_on_deployed_model(model_path, tmp_path, pipeline):
    program = crossmap.compile(model_path, tmp_path / "out", chip=SMALL_CHIP, pipeline=pipeline, seed=5)
    assert program.num_cores > 4  # the layers really split over cores
    loaded = crossmap.load(tmp_path / "out")
    assert loaded.checksum() == program.checksum()
    assert loaded.metadata["pipeline"].startswith(pipeline.split(",")[0].split("{")[0])
    report = verify(loaded, model_path, inputs=binary_images(48), limit=48)
    assert report.ok, report.detail
    assert report.samples == 48


def test_verify_names_the_diverging_layer_and_core(model_path, tmp_path):
    crossmap.compile(model_path, tmp_path / "out", chip=SMALL_CHIP, seed=1)
    program = crossmap.load(tmp_path / "out")
    # sabotage one neuron of the output layer: it can never fire
    gid = program.group_names.index(program.group_names[-1])
    cores, neurons = np.nonzero(program.neuron_group == gid)
    program.alpha[cores[0], neurons[0]] = program.chip.alpha_max
    report = verify(program, model_path, inputs=binary_images(64), limit=64)
    assert not report.ok
    assert report.diverging_group == program.group_names[gid]
    assert int(cores[0]) in report.diverging_cores


def test_verify_against_the_model_catches_a_binarize_pass_that_changes_the_network(model_path, tmp_path,
                                                                                  monkeypatch, capsys):
    """The exact step network agrees with its compiled program class for class. A binarize pass
    that negates every weight builds the program and the deployed network alike, so the first
    check passes; ``against_model`` sees the classes change."""
    import crossmap.passes.binarize.deterministic as deterministic

    x = binary_images(48, seed=2)
    crossmap.compile(model_path, tmp_path / "good", chip=SMALL_CHIP, seed=1)
    report = verify(crossmap.load(tmp_path / "good"), model_path, inputs=x, limit=48, against_model=True)
    assert report.ok and report.model_agreeing == 48 and report.first_model_disagreement is None

    type_columns = deterministic.type_columns

    def negated(layer, chip, **options):  # the lines and types of the negated weights
        layer.weights = -layer.weights
        return type_columns(layer, chip, **options)

    monkeypatch.setattr(deterministic, "type_columns", negated)
    crossmap.compile(model_path, tmp_path / "bad", chip=SMALL_CHIP, seed=1)
    program = crossmap.load(tmp_path / "bad")
    assert verify(program, model_path, inputs=x, limit=48).ok, "emulator and deployed network agree"
    report = verify(program, model_path, inputs=x, limit=48, against_model=True)
    assert not report.ok and report.matching == 48 and report.model_agreeing < 48
    assert report.to_dict()["model_ok"] is False
    loose = verify(program, model_path, inputs=x, limit=48, against_model=True, tolerance=1.0)
    assert loose.ok and loose.model_agreeing == report.model_agreeing
    with pytest.raises(CrossmapError, match="tolerance 1.5"):
        verify(program, model_path, inputs=x, limit=8, against_model=True, tolerance=1.5)
    assert main(["verify", str(tmp_path / "bad"), str(model_path), "--against-model", "--limit", "16"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("OK: the emulator equals") and "MISMATCH: the original model predicts" in out


def test_verify_against_the_deployed_simulation_when_the_export_is_too_big(model_path, tmp_path):
    crossmap.compile(model_path, tmp_path / "out", chip=SMALL_CHIP, seed=1)
    program = crossmap.load(tmp_path / "out")
    report = verify(program, model_path, inputs=binary_images(32), limit=32, max_onnx_bytes=0)
    assert report.ok and report.reference.startswith("the deployed network's simulation")
    gid = len(program.group_names) - 1
    cores, neurons = np.nonzero(program.neuron_group == gid)
    program.alpha[cores[0], neurons[0]] = program.chip.alpha_max
    report = verify(program, model_path, inputs=binary_images(64), limit=64, max_onnx_bytes=0)
    assert not report.ok and report.diverging_group == program.group_names[gid]


def ensemble_of_two(seed: int = 0) -> onnx.ModelProto:
    """Two binary MLPs side by side on one input; their 20 voters each are concatenated in front
    of one 0/1 readout (voter c counts for class c % 10), so the class counts add up."""
    from onnx import helper

    from crossmap.testing.onnx_models import make_model

    rng = np.random.default_rng(seed)
    nodes, inits, voters = [], {"zero": np.array(0.0, np.float32)}, []
    for k in range(2):
        current = "x"
        for i, (n_in, n_out) in enumerate([(64, 24), (24, 20)]):
            w, b = f"m{k}.w{i}", f"m{k}.b{i}"
            inits[w] = rng.choice(np.array([-1.0, 0.0, 1.0], np.float32), size=(n_in, n_out), p=[0.4, 0.2, 0.4])
            inits[b] = (rng.integers(-2, 3, size=n_out) + 0.5).astype(np.float32)
            nodes += [helper.make_node("Gemm", [current, w, b], [f"m{k}.z{i}"]),
                      helper.make_node("Greater", [f"m{k}.z{i}", "zero"], [f"m{k}.g{i}"]),
                      helper.make_node("Cast", [f"m{k}.g{i}"], [f"m{k}.h{i}"], to=onnx.TensorProto.FLOAT)]
            current = f"m{k}.h{i}"
        voters.append(current)
    readout = np.zeros((40, 10), np.float32)
    readout[np.arange(40), np.arange(40) % 10] = 1.0
    inits["readout"] = readout
    nodes += [helper.make_node("Concat", voters, ["votes"], axis=1), helper.make_node("MatMul", ["votes", "readout"], ["y"])]
    return make_model(nodes, ["N", 64], ["N", 10], inits)


def test_an_ensemble_of_separately_trained_copies_adds_its_votes(tmp_path):
    from crossmap.testing.onnx_models import run_onnxruntime

    model = ensemble_of_two()
    path = tmp_path / "ensemble.onnx"
    onnx.save(model, str(path))
    program = crossmap.compile(path, tmp_path / "out", chip=SMALL_CHIP, seed=2)
    x = binary_images(48, seed=4)
    want = run_onnxruntime(model, x)
    got = crossmap.emulate(program, encode(program.encoding, x)).class_counts
    np.testing.assert_array_equal(got, want)  # exact: the votes of both copies, summed
    assert verify(program, path, inputs=x, limit=48).ok


def test_same_seed_gives_byte_identical_programs(model_path, tmp_path):
    for name in ("a", "b"):
        crossmap.compile(model_path, tmp_path / name, chip=SMALL_CHIP, binarize="stochastic", ensemble=2, seed=9)
    for file in ("manifest.json", "arrays.npz"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()


def test_existing_output_refused_and_failed_compile_leaves_nothing(model_path, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OutputExistsError, match="already exists"):
        crossmap.compile(model_path, out, chip=SMALL_CHIP)
    float_model = tmp_path / "float.onnx"
    onnx.save(mlp((16, 8, 4), softmax=False), str(float_model))
    with pytest.raises(BinarizeError):  # the exact method refuses float weights
        crossmap.compile(float_model, tmp_path / "never", chip=SMALL_CHIP, binarize="deterministic")
    assert not (tmp_path / "never").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["float.onnx", "out"]  # no temp dirs left


def test_lsq_compiles_a_float_mlp(tmp_path):
    path = tmp_path / "float.onnx"
    onnx.save(mlp((16, 12, 4), seed=2), str(path))
    calibration = np.random.default_rng(0).random((64, 16)).astype(np.float32)
    program = crossmap.compile(path, tmp_path / "out", chip=SMALL_CHIP, binarize="lsq", calibration=calibration,
                               time_limit=2)
    assert program.input_ticks > 1 and "binarize_lsq" in program.reports
    with pytest.raises(CrossmapError, match="custom calibration inputs"):
        verify(program, path, limit=8)
    with pytest.raises(CrossmapError, match="not those the program was compiled with"):
        verify(program, path, limit=8, calibration=calibration[:10])
    report = verify(program, path, inputs=calibration, limit=16, calibration=calibration)
    assert report.ok, report.detail


def test_run_arrays_reports_accuracy_and_energy(model_path, tmp_path):
    program = crossmap.compile(model_path, None, chip=SMALL_CHIP)
    x = binary_images(40)
    labels = crossmap.emulate(program, encode(program.encoding, x)).predictions
    summary = run_arrays(program, x, labels, batch_size=16, show_progress=False)
    assert summary["accuracy"] == 1.0 and summary["samples"] == 40
    assert summary["energy_per_sample_uj"] > 0 and summary["spikes_per_sample"] > 0
    assert summary["energy_per_sample_uj"] == pytest.approx(sum(summary["energy_breakdown_uj"].values()))


def test_board_auto_grows_the_board_to_the_smallest_that_holds_the_program(model_path, tmp_path):
    tiny = SMALL_CHIP.replace(mesh_x=2, mesh_y=2)  # 4 cores per chip
    # refused right after import, from the binarization plan, before any binarization or packing
    with pytest.raises(CrossmapError, match=r"binarize_deterministic makes at least \d+ chip neurons, so the program "
                                            r"needs at least \d+ cores.*smallest board that fits"):
        crossmap.compile(model_path, None, chip=tiny, seed=5)
    program = crossmap.compile(model_path, tmp_path / "out", chip=tiny, seed=5,
                               pipeline="binarize_deterministic,partition{board=auto},place,route,emit")
    chips = program.chip.board_x * program.chip.board_y
    assert (chips - 1) * 4 < program.num_cores <= chips * 4  # the fewest chips that hold it
    assert program.reports["place"]["chips_used"] == chips
    assert verify(crossmap.load(tmp_path / "out"), model_path, inputs=binary_images(32), limit=32).ok
    one_chip = crossmap.compile(model_path, None, chip="truenorth-auto", seed=5)
    assert (one_chip.chip.board_x, one_chip.chip.board_y) == (1, 1)
    with pytest.raises(CrossmapError, match="board='big' is unknown; choose one of fixed, auto"):
        crossmap.compile(model_path, None, chip=tiny, pipeline="binarize_deterministic,partition{board=big}")


def test_run_arrays_in_worker_processes_gives_the_same_figures(model_path, tmp_path):
    program = crossmap.compile(model_path, None, chip=SMALL_CHIP, binarize="stochastic", ensemble=2, seed=3)
    x = binary_images(50, seed=8)
    labels = np.arange(50) % 10
    one = run_arrays(program, x, labels, batch_size=8, show_progress=False)
    two = run_arrays(program, x, labels, batch_size=8, show_progress=False, workers=2)
    assert two["workers"] == 2 and one["spikes_per_sample"] > 0
    for key in ("accuracy", "spikes_per_sample", "synaptic_events_per_sample", "energy_per_sample_uj",
                "activity_per_sample", "energy_breakdown_uj"):
        assert two[key] == one[key], key
    with pytest.raises(CrossmapError, match="workers 0 must be >= 1"):
        run_arrays(program, x, labels, workers=0)


FIGURES = ("accuracy", "spikes_per_sample", "synaptic_events_per_sample", "energy_per_sample_uj",
           "activity_per_sample", "energy_breakdown_uj")


def test_run_arrays_torch_backend_and_ray_give_the_same_figures(model_path, tmp_path):
    """The torch backend in one and in two processes, and the numpy emulator sharded over a local
    Ray of 2 CPUs, give the figures of the numpy emulator in one process, to the last bit."""
    ray = pytest.importorskip("ray")
    program = crossmap.compile(model_path, None, chip=SMALL_CHIP, binarize="stochastic", ensemble=2, seed=3)
    x = binary_images(60, seed=9)
    labels = np.arange(60) % 10
    one = run_arrays(program, x, labels, batch_size=8, show_progress=False)
    runs = {"torch": run_arrays(program, x, labels, batch_size=8, show_progress=False, backend="torch"),
            "torch sparse, 2 workers": run_arrays(program, x, labels, batch_size=8, show_progress=False,
                                                  backend="torch", workers=2, backend_options={"path": "sparse"})}
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        runs["ray"] = run_arrays(program, x, labels, batch_size=8, show_progress=False, ray_address="local")
    finally:
        ray.shutdown()
    assert runs["ray"]["workers"] == 2 and runs["ray"]["ray"] == "local" and one["spikes_per_sample"] > 0
    for name, other in runs.items():
        for key in FIGURES:
            assert other[key] == one[key], (name, key)
    with pytest.raises(CrossmapError, match="one process drives the GPU"):
        run_arrays(program, x, labels, backend="torch", workers=2, backend_options={"device": "cuda"})


def test_worker_processes_cap_their_blas_threads():
    """Each emulating worker runs BLAS on cpu_count / workers threads (at least 1)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from crossmap.runner import _limit_blas_threads

    with threadpool_limits(None):  # restores this process's limits afterwards
        _limit_blas_threads(1)
        blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
        assert blas and all(pool["num_threads"] == 1 for pool in blas)


def test_cli_compile_report_verify(model_path, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["compile", str(model_path), "-o", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)  # one JSON object on stdout; progress goes to stderr
    assert summary["cores"] >= 1 and summary["latency_ticks"] >= 1
    assert all(stage in captured.err for stage in ("pass partition", "measuring traffic", "place: best start",
                                                      "pass route", "emit: writing"))
    assert main(["compile", str(model_path), "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["compile", str(model_path), "-o", str(out), "--force", "-q"]) == 0
    capsys.readouterr()
    assert main(["verify", str(out), str(model_path), "--json", "--limit", "16"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    assert main(["report", str(out), "--json"]) == 0
    json.loads(capsys.readouterr().out)


def test_cli_missing_model_is_a_clear_error(tmp_path, capsys):
    code = main(["compile", str(tmp_path / "nope.onnx"), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code != 0 and "nope.onnx" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
