"""The numpy emulator and the torch backend against the reference loop on random programs (bit for
bit), the backend registry, input checking, and the Result API."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crossmap
from crossmap.backends import get_backend
from crossmap.backends.tables import clear_cache
from crossmap.errors import CrossmapError, InputError
from crossmap.testing import random_inputs, random_program, small_chip

COUNTERS = ("port_counts", "class_counts", "predictions", "synaptic_events", "neuron_updates", "spike_count",
            "hops", "chip_crossings", "core_ticks")


def assert_same(expected, got):
    """Every count and every recorded spike equal."""
    for name in COUNTERS:
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), err_msg=name)
    if expected.spikes is not None:
        diff = np.argwhere(expected.spikes != got.spikes)
        assert diff.size == 0, f"first differing (tick, sample, core, neuron): {diff[0].tolist()}"


chips = st.builds(
    small_chip,
    axons_per_core=st.sampled_from([4, 8]),
    neurons_per_core=st.sampled_from([3, 8]),
    axon_types=st.integers(1, 4),
    v_min=st.sampled_from([-60, -300, -(2**19)]),
    v_max=st.sampled_from([59, 299, 2**19 - 1]),
    delay_max=st.sampled_from([1, 4, 15]),
    mesh_x=st.sampled_from([2, 4]),
    mesh_y=st.sampled_from([1, 3]),
)


@settings(max_examples=150)
@given(chip=chips, cores=st.integers(1, 4), seed=st.integers(0, 2**16), recurrent=st.booleans(),
       stochastic=st.booleans(), batch=st.sampled_from([1, 2, 3, 8, 9]), rate=st.sampled_from([0.05, 0.3, 0.8]),
       extra_ticks=st.integers(0, 6), path=st.sampled_from(["auto", "dense", "event", "sparse"]),
       offset=st.integers(0, 1000), density=st.sampled_from([0.1, 0.4, 0.9]),
       modes=st.sampled_from([(0, 1, 2), (0,), (1,), (2,), (0, 2)]), reset_values=st.booleans())
def test_emulator_equals_reference(chip, cores, seed, recurrent, stochastic, batch, rate, extra_ticks, path, offset,
                                   density, modes, reset_values):
    prog = random_program(chip, cores, seed, recurrent=recurrent, stochastic=stochastic, density=density,
                          input_ticks=3, latency=extra_ticks, reset_modes=modes, reset_values=reset_values)
    spikes = random_inputs(prog, batch, seed + 1, rate)
    expected = crossmap.emulate(prog, spikes, backend="reference", record=True, sample_offset=offset)
    got = crossmap.emulate(prog, spikes, record=True, sample_offset=offset, path=path)
    assert_same(expected, got)


def torch_devices():
    """cpu, and cuda where this machine has it (the same code runs on both)."""
    import torch

    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@settings(max_examples=80, deadline=None)
@given(chip=chips, cores=st.integers(1, 4), seed=st.integers(0, 2**16), recurrent=st.booleans(),
       stochastic=st.booleans(), batch=st.sampled_from([1, 2, 3, 8, 9]), rate=st.sampled_from([0.05, 0.3, 0.8]),
       extra_ticks=st.integers(0, 6), path=st.sampled_from(["auto", "dense", "sparse"]),
       offset=st.integers(0, 1000), density=st.sampled_from([0.1, 0.4, 0.9]),
       modes=st.sampled_from([(0, 1, 2), (0,), (1,), (2,), (0, 2)]), reset_values=st.booleans(),
       prng_seed=st.sampled_from([0, 7, 2**63 + 5, 2**64 - 1]))
def test_torch_equals_reference(chip, cores, seed, recurrent, stochastic, batch, rate, extra_ticks, path, offset,
                                density, modes, reset_values, prng_seed):
    prog = random_program(chip, cores, seed, recurrent=recurrent, stochastic=stochastic, density=density,
                          input_ticks=3, latency=extra_ticks, reset_modes=modes, reset_values=reset_values)
    spikes = random_inputs(prog, batch, seed + 1, rate)
    expected = crossmap.emulate(prog, spikes, backend="reference", record=True, sample_offset=offset, seed=prng_seed)
    for device in torch_devices():
        got = crossmap.emulate(prog, spikes, backend="torch", record=True, sample_offset=offset, seed=prng_seed,
                               path=path, device=device)
        assert got.backend == "torch"
        assert_same(expected, got)


def test_torch_prng_equals_numpy_prng():
    """The int64 SplitMix64 of the torch backend gives the uint32 draws of crossmap.prng, seeds
    and counters across the whole 64-bit range included."""
    import torch

    from crossmap import prng
    from crossmap.backends import torch_prng

    rng = np.random.default_rng(0)
    sample, core, neuron, axon = (rng.integers(0, hi, 500) for hi in (2**40, 10**4, 256, 256))
    for seed in (0, 1, 2**63 - 1, 2**63, 2**64 - 1):
        want = prng.draw(seed, prng.SYNAPSE, sample, 9, core, neuron, axon).astype(np.int64)
        got = torch_prng.draw(seed, prng.SYNAPSE, torch.from_numpy(sample), 9, torch.from_numpy(core),
                              torch.from_numpy(neuron), torch.from_numpy(axon))
        np.testing.assert_array_equal(got.numpy(), want)
    assert len(set(want.tolist())) > 490


@pytest.mark.parametrize("path", ["dense", "sparse", "auto"])
def test_torch_busy_recurrent_program(path):
    """A long recurrent run with every rule on, on each torch path."""
    prog = random_program(small_chip(), 5, 7, recurrent=True, stochastic=True, density=0.6, input_ticks=6,
                          latency=10)
    spikes = random_inputs(prog, 12, 3, 0.5)
    expected = crossmap.emulate(prog, spikes, backend="reference", record=True, seed=5)
    for device in torch_devices():
        got = crossmap.emulate(prog, spikes, backend="torch", record=True, seed=5, path=path, device=device)
        assert_same(expected, got)
    assert expected.spikes.sum() > 100


@pytest.mark.parametrize("backend", ["emulator", "torch"])
def test_blocks_of_cores_with_auto_choosing_sparse_for_some(monkeypatch, backend):
    """Cores in blocks of two (as big programs on the CPU), and auto choosing the sparse path for
    some blocks of a tick and the dense path for others: still the reference, bit for bit."""
    from crossmap.backends import emulator, torch_emulator

    prog = random_program(small_chip(), 5, 11, recurrent=True, stochastic=True, density=0.5, input_ticks=4,
                          latency=8)
    spikes = random_inputs(prog, 40, 4, 0.5)
    monkeypatch.setattr(torch_emulator, "CPU_BLOCK_BYTES", 2 * 40 * 8 * 4)
    monkeypatch.setattr(emulator, "BLOCK_BYTES", 2 * 40 * 8 * 4)
    torch_emulator.clear_cache()
    used = {"sparse": 0, "dense": 0}

    def spy(method, name):
        def counted(self, *args):
            used[name] += 1
            return method(self, *args)
        return counted

    if backend == "torch":
        monkeypatch.setattr(torch_emulator._Run, "gather_rows", spy(torch_emulator._Run.gather_rows, "sparse"))
        monkeypatch.setattr(torch_emulator._Run, "matmul", spy(torch_emulator._Run.matmul, "dense"))
    else:
        monkeypatch.setattr(emulator, "EVENT_MAX_ACTIVE_AXONS", 0.0)   # the dense path where not sparse
        monkeypatch.setattr(emulator._Run, "integrate_sparse", spy(emulator._Run.integrate_sparse, "sparse"))
        monkeypatch.setattr(emulator._Run, "integrate_dense", spy(emulator._Run.integrate_dense, "dense"))
    expected = crossmap.emulate(prog, spikes, backend="reference", record=True)
    assert_same(expected, crossmap.emulate(prog, spikes, backend=backend, record=True))
    assert used["sparse"] and used["dense"], used
    torch_emulator.clear_cache()


def test_torch_prepared_program_and_options(program):
    """A TorchEmulator prepared once runs batch after batch like the plain backend call; bad
    devices, precisions and paths are CrossmapErrors that say what to use."""
    import torch

    from crossmap.backends.torch_emulator import TorchEmulator

    spikes = random_inputs(program, 6, 0, 0.6)
    prepared = TorchEmulator(program, device="cpu")
    for lo in (0, 3):
        assert_same(crossmap.emulate(program, spikes[lo:lo + 3], backend="reference", sample_offset=lo),
                    prepared.run(spikes[lo:lo + 3], sample_offset=lo))
    with pytest.raises(CrossmapError, match="no option colour; its options are: seed, sample_offset, record, "
                                            "device, precision, path"):
        crossmap.emulate(program, spikes, backend="torch", colour=1)
    with pytest.raises(CrossmapError, match="path = 'event' is not one of auto, dense, sparse"):
        crossmap.emulate(program, spikes, backend="torch", path="event")
    with pytest.raises(CrossmapError, match="precision = 'fp8' is not one of float32, tf32, bfloat16"):
        crossmap.emulate(program, spikes, backend="torch", precision="fp8")
    with pytest.raises(CrossmapError, match="'bfloat16' needs a CUDA device"):
        crossmap.emulate(program, spikes, backend="torch", precision="bfloat16")
    with pytest.raises(CrossmapError, match="runs on 'cpu' or 'cuda'"):
        crossmap.emulate(program, spikes, backend="torch", device="meta")
    if not torch.cuda.is_available():
        with pytest.raises(CrossmapError, match="no CUDA device.*use device 'cpu'"):
            crossmap.emulate(program, spikes, backend="torch", device="cuda")


@pytest.mark.parametrize("path", ["dense", "event", "sparse", "auto"])
def test_busy_recurrent_program_all_paths(path):
    """A denser, longer run than the hypothesis examples, with every rule switched on."""
    prog = random_program(small_chip(), 5, 7, recurrent=True, stochastic=True, density=0.6, input_ticks=6,
                          latency=10)
    spikes = random_inputs(prog, 11, 3, 0.5)
    expected = crossmap.emulate(prog, spikes, backend="reference", record=True, seed=5)
    got = crossmap.emulate(prog, spikes, record=True, seed=5, path=path)
    assert expected.spikes.sum() > 100  # the comparison is not vacuous
    assert_same(expected, got)


def test_cached_tables_follow_program_changes():
    """The emulator caches per-program tables; changing an array in place must not reuse them."""
    clear_cache()
    prog = random_program(small_chip(), 2, 1, input_ticks=2, latency=4)
    spikes = random_inputs(prog, 2, 1, 0.5)
    crossmap.emulate(prog, spikes)
    prog.leak[:] = 7
    prog.alpha[:] = 3
    assert_same(crossmap.emulate(prog, spikes, backend="reference"), crossmap.emulate(prog, spikes))


def test_get_backend_names_and_unknown():
    assert all(callable(get_backend(name)) for name in ("emulator", "reference", "torch"))
    with pytest.raises(CrossmapError, match="available backends: emulator, reference, torch"):
        get_backend("gpu")


@pytest.fixture
def program():
    return random_program(small_chip(), 2, 3, num_inputs=5, input_ticks=2, latency=3)


@pytest.mark.parametrize("backend", ["emulator", "reference", "torch"])
def test_input_shapes_and_dtypes_accepted(program, backend):
    two_d = np.array([[1, 0, 1, 1, 0]], dtype=np.int64)
    a = crossmap.emulate(program, two_d, backend=backend)
    b = crossmap.emulate(program, two_d.astype(bool)[:, None, :], backend=backend)
    assert a.ticks == program.total_ticks
    np.testing.assert_array_equal(a.class_counts, b.class_counts)


@pytest.mark.parametrize("backend", ["emulator", "reference", "torch"])
@pytest.mark.parametrize("inputs, ticks, match", [
    (np.zeros((2, 2, 4), bool), None, r"shape \(2, 2, 4\).*5 input channels"),
    (np.zeros((2, 5), np.float32), None, "dtype float32; expected bool or integer"),
    (np.full((1, 5), 2), None, "must be 0 or 1; found 2"),
    (np.zeros((1, 6, 5), bool), None, "cover 6 ticks but the run is 5 ticks long"),
    (np.zeros((1, 1, 5), bool), 0, "ticks = 0 must be an integer >= 1"),
    (np.zeros((0, 1, 5), bool), None, "no samples"),
    (np.zeros((2, 2, 2, 5), bool), None, "shape"),
])
def test_bad_inputs_raise_input_error(program, backend, inputs, ticks, match):
    with pytest.raises(InputError, match=match):
        crossmap.emulate(program, inputs, ticks=ticks, backend=backend)


def test_bad_options(program):
    spikes = np.zeros((1, 5), bool)
    with pytest.raises(CrossmapError, match="no option colour; its options are: seed, sample_offset, record"):
        crossmap.emulate(program, spikes, colour=1)
    with pytest.raises(CrossmapError, match="path = 'fast' is not one of auto, dense, event"):
        crossmap.emulate(program, spikes, path="fast")
    with pytest.raises(CrossmapError, match="no option path"):
        crossmap.emulate(program, spikes, backend="reference", path="dense")
    with pytest.raises(InputError, match="seed = -1"):
        crossmap.emulate(program, spikes, seed=-1)
    with pytest.raises(InputError, match="sample_offset"):
        crossmap.emulate(program, spikes, sample_offset=1.5)
    with pytest.raises(InputError, match="record"):
        crossmap.emulate(program, spikes, record="yes")


def test_result_energy_and_summary(program):
    result = crossmap.emulate(program, random_inputs(program, 4, 0, 0.6))
    costs = program.chip.energy
    energy = result.energy()
    np.testing.assert_allclose(energy["synaptic_events"], result.synaptic_events * costs.synaptic_event_pj * 1e-12)
    np.testing.assert_allclose(energy["hops"], result.hops * costs.hop_pj * 1e-12)
    np.testing.assert_allclose(energy["static"], result.core_ticks * costs.static_core_tick_pj * 1e-12)
    parts = sum(v for k, v in energy.items() if k != "total")
    np.testing.assert_allclose(energy["total"], parts)
    assert set(result.activity()) == {"synaptic_events", "neuron_updates", "spikes", "hops", "chip_crossings",
                                      "core_ticks"}
    summary = json.loads(json.dumps(result.summary()))
    assert summary["samples"] == 4 and summary["backend"] == "emulator"
    assert summary["energy_per_sample_j"] == pytest.approx(float(energy["total"].mean()))
    assert summary["activity_per_sample"]["core_ticks"] == program.num_cores * program.total_ticks
    assert sum(summary["prediction_histogram"]) == 4


def test_recording_is_off_by_default(program):
    assert crossmap.emulate(program, np.zeros((1, 5), bool)).spikes is None


# ---------------------------------------------------------------------- crossmap emulate and the example
from crossmap.cli import main  # noqa: E402
from crossmap.commands.emulate import EXAMPLES_DIR  # noqa: E402
from crossmap.program import load  # noqa: E402
from crossmap.testing import bars_program, bars_samples  # noqa: E402


def test_shipped_example_is_the_documented_builder():
    shipped = load(EXAMPLES_DIR / "bars")
    assert shipped.checksum() == bars_program().checksum()
    spikes, labels = bars_samples(16, seed=0)
    np.testing.assert_array_equal(np.load(EXAMPLES_DIR / "bars" / "inputs.npy"), spikes)
    np.testing.assert_array_equal(np.load(EXAMPLES_DIR / "bars" / "labels.npy"), labels)


def test_bars_example_classifies_new_samples():
    spikes, labels = bars_samples(64, seed=123)
    result = crossmap.emulate(bars_program(), spikes)
    assert (result.predictions == labels).mean() >= 0.9


def test_cli_emulate_example_json(capsys):
    assert main(["emulate", "--example", "bars", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["summary"]["samples"] == 16 and out["summary"]["accuracy"] == 1.0
    spikes = np.load(EXAMPLES_DIR / "bars" / "inputs.npy")
    expected = crossmap.emulate(load(EXAMPLES_DIR / "bars"), spikes)
    assert [s["class_counts"] for s in out["samples"]] == expected.class_counts.tolist()
    assert [s["label"] for s in out["samples"]] == np.load(EXAMPLES_DIR / "bars" / "labels.npy").tolist()


def test_cli_emulate_text_random_and_inputs(capsys, tmp_path):
    prog_dir = bars_program().save(tmp_path / "prog")
    assert main(["emulate", str(prog_dir), "--random", "3", "--seed", "2", "--backend", "reference"]) == 0
    text = capsys.readouterr().out
    assert "3 samples x 5 ticks on the reference backend" in text and "energy" in text
    spikes = np.zeros((2, 4, 16), np.uint8)
    spikes[:, :, [0, 1, 2, 3]] = 1  # a full top row: horizontal
    np.save(tmp_path / "x.npy", spikes)
    assert main(["emulate", str(prog_dir), "--inputs", str(tmp_path / "x.npy"), "--json", "--ticks", "6"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [s["prediction"] for s in out["samples"]] == [0, 0] and out["summary"]["ticks"] == 6


@pytest.mark.parametrize("argv, message", [
    (["emulate"], "give a program directory or --example NAME (available: bars"),
    (["emulate", "--example", "nope"], "unknown example 'nope'; available examples: bars"),
    (["emulate", "--example", "bars", "--random", "2", "--inputs", "x.npy"], "not both"),
    (["emulate", "--example", "bars", "--inputs", "missing.npy"], "inputs file 'missing.npy' does not exist"),
    (["emulate", "--example", "bars", "--random", "0"], "argument --random: 0 is outside [1, 100000000]"),
    (["emulate", "--example", "bars", "--ticks", "2"], "cover 4 ticks but the run is 2 ticks long"),
])
def test_cli_emulate_errors_are_one_line(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_emulate_program_without_inputs(capsys, tmp_path):
    prog_dir = bars_program().save(tmp_path / "prog")
    assert main(["emulate", str(prog_dir)]) == 2
    assert "ships no inputs.npy; give --inputs FILE.npy or --random N" in capsys.readouterr().err
    np.save(tmp_path / "bad.npy", np.zeros((1, 16), np.float64))
    assert main(["emulate", str(prog_dir), "--inputs", str(tmp_path / "bad.npy")]) == 2
    assert "dtype float64" in capsys.readouterr().err


@pytest.mark.parametrize("batch", [64, 130])
def test_wide_batches(batch):
    """Spike rows of several bytes (8 per uint64 word at 64, 17 single bytes at 130)."""
    prog = random_program(small_chip(), 2, 4, recurrent=True, stochastic=True, input_ticks=2, latency=3)
    spikes = random_inputs(prog, batch, 5, 0.4)
    expected = crossmap.emulate(prog, spikes, backend="reference", record=True)
    for path in ("dense", "event", "sparse"):
        assert_same(expected, crossmap.emulate(prog, spikes, record=True, path=path))


def test_dense_path_skipping_idle_cores_equals_reference(monkeypatch):
    """Input reaches one core of four, so some ticks have busy and idle cores in one block: the
    dense path integrates only the busy ones and still equals the reference bit for bit."""
    from crossmap.backends import emulator

    prog = random_program(small_chip(), 4, 9, recurrent=False, density=0.5, input_ticks=2, latency=6)
    prog.input_core[:] = 0
    prog.validate()
    spikes = random_inputs(prog, 9, 2, 0.5)
    seen = []
    original = emulator._Run.integrate_dense

    def spy(self, slot, busy, c0, c1, S):
        seen.append((bool(busy.any()), bool(busy.all())))
        return original(self, slot, busy, c0, c1, S)

    monkeypatch.setattr(emulator._Run, "integrate_dense", spy)
    expected = crossmap.emulate(prog, spikes, backend="reference", record=True)
    assert_same(expected, crossmap.emulate(prog, spikes, record=True, path="dense"))
    assert (True, False) in seen, "a block with busy and idle cores"
    assert expected.spikes.sum() > 20


def test_torch_sparse_path_byte_and_float_tables(monkeypatch):
    """The CPU sparse path (torch and numpy emulator) reads W_eff from the byte table where every
    row spans at most 255 and from the float32 table otherwise; both give the reference's sums,
    counts and spikes."""
    from crossmap.backends import sparse, torch_emulator

    narrow = random_program(small_chip(weight_min=-100, weight_max=100), 4, 3, recurrent=True, stochastic=True,
                            density=0.5, input_ticks=4, latency=6)
    wide_range = random_program(small_chip(), 4, 3, density=0.9, input_ticks=4, latency=6)
    wide_range.weight[:, :, 0] = np.where(np.arange(8) % 2, 255, -255)   # every type-0 row spans 510
    for prog, byte_table in ((narrow, True), (wide_range, False)):
        spikes = random_inputs(prog, 10, 5, 0.3)
        expected = crossmap.emulate(prog, spikes, backend="reference", record=True, seed=3)
        emulator = torch_emulator.TorchEmulator(prog, path="sparse")
        assert_same(expected, emulator.run(spikes, record=True, seed=3))
        assert (emulator.tab.bags.byte_table() is not None) == byte_table
        numpy_sparse = crossmap.emulate(prog, spikes, record=True, seed=3, path="sparse")
        assert_same(expected, numpy_sparse)
    monkeypatch.setattr(sparse, "byte_rows", lambda weights: None)   # the float32 table throughout
    clear_cache()
    spikes = random_inputs(narrow, 10, 5, 0.3)
    emulator = torch_emulator.TorchEmulator(narrow, path="sparse")
    assert_same(crossmap.emulate(narrow, spikes, backend="reference", record=True, seed=3),
                emulator.run(spikes, record=True, seed=3))
    assert emulator.tab.bags.byte_table() is None


def test_byte_rows_hold_every_weight_exactly():
    """Every entry of a byte table row is w - min(w) of its W_eff row, then scale 1.0 and the
    minimum as float32; a row spanning 256 gives no table."""
    from crossmap.backends.sparse import byte_rows

    rng = np.random.default_rng(0)
    weights = rng.integers(-255, 1, (3, 8, 5)).astype(np.float32)
    weights[0, 0, :2] = (-255, 0)
    table = byte_rows(weights)
    flat = weights.reshape(24, 5)
    scale, bias = table[:, 5:9].copy().view(np.float32), table[:, 9:].copy().view(np.float32)
    np.testing.assert_array_equal(table[:, :5] * scale + bias, flat)
    weights[1, 2, :2] = (-255, 1)
    assert byte_rows(weights) is None


def test_torch_sparse_path_device_generic_bags_on_the_cpu(monkeypatch):
    """The sparse path's device-generic bags (torch nonzero and searchsorted, the code CUDA runs)
    equal the reference on the CPU, every rule on."""
    from crossmap.backends import torch_emulator

    monkeypatch.setattr(torch_emulator, "NUMPY_BAGS_ON_CPU", False)
    prog = random_program(small_chip(), 5, 17, recurrent=True, stochastic=True, density=0.5, input_ticks=4,
                          latency=8, reset_values=True)
    spikes = random_inputs(prog, 12, 6, 0.3)
    expected = crossmap.emulate(prog, spikes, backend="reference", record=True, seed=9, sample_offset=5)
    got = torch_emulator.TorchEmulator(prog, path="sparse").run(spikes, record=True, seed=9, sample_offset=5)
    assert_same(expected, got)
    assert expected.spikes.sum() > 50


@pytest.mark.parametrize("stochastic", [False, True])
def test_resting_cores_are_skipped_and_the_run_equals_reference(monkeypatch, stochastic):
    """A core whose axons were idle and whose state came out unchanged without a spike rests:
    its next idle ticks are skipped (blocks of one core here) until an axon is active again;
    leaks, resets, delays and stochastic thresholds (whose cores never rest) still give the
    reference bit for bit."""
    from crossmap.backends import emulator

    prog = random_program(small_chip(), 6, 23, recurrent=False, stochastic=stochastic, density=0.5, input_ticks=3,
                          latency=12, reset_values=True)
    prog.leak[:4], prog.reset_mode[:4] = 0, 0   # cores 0-3 can come to rest; 4 and 5 keep their random rules
    prog.reset_value[:4] = np.minimum(prog.reset_value[:4], prog.alpha[:4] - 1)
    prog.target_core[4:] = -1
    prog.threshold_mask[:4] = 0   # (stochastic thresholds only on cores 4 and 5, which never rest)
    spikes = random_inputs(prog, 10, 7, 0.3)
    monkeypatch.setattr(emulator, "BLOCK_BYTES", 10 * 8 * 4)
    updates = []
    original = emulator._Run.update_neurons

    def counted(self, S, c0, c1, stoch_thr, t):
        updates.append((t, c0))
        return original(self, S, c0, c1, stoch_thr, t)

    monkeypatch.setattr(emulator._Run, "update_neurons", counted)
    expected = crossmap.emulate(prog, spikes, backend="reference", record=True, seed=4)
    for path in ("dense", "event", "sparse"):
        updates.clear()
        assert_same(expected, crossmap.emulate(prog, spikes, record=True, seed=4, path=path))
        assert len(updates) < prog.num_cores * prog.total_ticks, "some core-ticks were skipped"
    assert expected.spikes.sum() > 20
