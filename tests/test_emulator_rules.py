"""One hand-written program per rule of the chip model (DESIGN section 1), each run on every
backend (reference, numpy emulator on both paths, torch on both paths), which must agree, with
the expected spikes worked out by hand."""

import numpy as np
import pytest

import crossmap
from crossmap import prng
from crossmap.program import Program
from crossmap.testing import small_chip

CHIP = small_chip(v_min=-100, v_max=99, beta_max=300)


FAST_BACKENDS = [("emulator", "dense"), ("emulator", "event"), ("emulator", "sparse"), ("torch", "dense"),
                 ("torch", "sparse")]


def run_both(prog, inputs, ticks, **options):
    """Every backend with recording; they must agree exactly. Returns the last fast backend's result."""
    prog.validate()
    ref = crossmap.emulate(prog, inputs, ticks=ticks, backend="reference", record=True, **options)
    for backend, path in FAST_BACKENDS:
        emu = crossmap.emulate(prog, inputs, ticks=ticks, backend=backend, record=True, path=path, **options)
        np.testing.assert_array_equal(emu.spikes, ref.spikes)
        for key, value in ref.activity().items():
            np.testing.assert_array_equal(emu.activity()[key], value, err_msg=key)
        np.testing.assert_array_equal(emu.port_counts, ref.port_counts)
    return emu


def spike_ticks(result, core=0, neuron=0, sample=0):
    """Ticks at which a neuron fired."""
    return np.flatnonzero(result.spikes[:, sample, core, neuron]).tolist()


def one_neuron(chip=CHIP, cores=1, num_inputs=1, **params):
    """A program whose neuron (0, 0) has ``params``; input channel 0 drives axon 0 of core 0,
    which connects to neuron (0, 0) with the weight of axon type 0."""
    prog = Program.empty(chip, cores, num_inputs=num_inputs, num_classes=1)
    prog.input_channel = np.zeros(1, np.int32)
    prog.input_core = np.zeros(1, np.int32)
    prog.input_axon = np.zeros(1, np.int32)
    prog.crossbar[0, 0, 0] = True
    for name, value in params.items():
        getattr(prog, name)[0, 0] = value
    return prog


def no_input(ticks=1):
    return np.zeros((1, ticks, 1), bool)


@pytest.mark.parametrize("mode, expected", [
    (0, [1, 3, 5, 7]),        # V: 3, 6->1, 4, 7->1, 4, 7->1 ... reset to reset_value 1
    (1, [1, 3, 4, 6]),        # V: 3, 6->1, 4, 7->2, 5->0, 3, 6->1, 4 (linear: V -= alpha)
    (2, list(range(1, 8))),   # V: 3, 6, 9, ... fires every tick from 6 on (no reset)
])
def test_reset_modes(mode, expected):
    prog = one_neuron(leak=3, alpha=5, reset_mode=mode, reset_value=1)
    assert spike_ticks(run_both(prog, no_input(), 8)) == expected


def test_negative_threshold_floor():
    # leak -2 floors at -beta = -3; at tick 5 an input of weight 9 gives -3 + 9 - 2 = 4 >= 4.
    # Without the floor V would be -10 + 9 - 2 = -3 and the neuron would stay silent.
    prog = one_neuron(leak=-2, beta=3, alpha=4)
    prog.weight[0, 0, 0] = 9
    inputs = np.zeros((1, 6, 1), bool)
    inputs[0, 5, 0] = True
    assert spike_ticks(run_both(prog, inputs, 6)) == [5]


def test_reset_below_the_floor_is_kept_until_the_next_tick():
    # beta 0, reset value -50: t0 0 + 6 - 5 = 1 fires -> V = -50 (a firing neuron is not floored);
    # t1 -50 + 6 - 5 = -49 stays silent and floors to 0; t2 fires again. Flooring right after the
    # reset would make it fire every tick.
    prog = one_neuron(leak=-5, beta=0, alpha=1, reset_value=-50)
    prog.weight[0, 0, 0] = 6
    assert spike_ticks(run_both(prog, np.ones((1, 4, 1), bool), 4)) == [0, 2]


def test_saturation_at_v_max_before_leak():
    # weight 255 saturates V to v_max 99 before the leak: 99 - 60 = 39 >= 39 fires once (no reset),
    # then 39 - 60 = -21 stays silent. Unsaturated, 195, 135, 75 would fire three ticks.
    prog = one_neuron(leak=-60, alpha=39, reset_mode=2, beta=300)
    prog.weight[0, 0, 0] = 255
    inputs = np.zeros((1, 4, 1), bool)
    inputs[0, 0, 0] = True
    assert spike_ticks(run_both(prog, inputs, 4)) == [0]


def test_saturation_at_v_min():
    # weight -255 saturates V to v_min -100: -100 + 70 = -30, then 40 fires at tick 1.
    # Unsaturated, -185, -115, -45, 25, 95 would fire only at tick 4.
    prog = one_neuron(leak=70, alpha=40, reset_mode=2, beta=300)
    prog.weight[0, 0, 0] = -255
    inputs = np.zeros((1, 5, 1), bool)
    inputs[0, 0, 0] = True
    assert spike_ticks(run_both(prog, inputs, 5))[:1] == [1]


def test_leak_saturates_too():
    # initial V at v_max with a positive leak stays at v_max (99 >= 99 fires every tick, no reset)
    prog = one_neuron(leak=50, alpha=99, reset_mode=2, initial_v=99)
    assert spike_ticks(run_both(prog, no_input(), 3)) == [0, 1, 2]
    prog.alpha[0, 0] = 100  # above v_max: can never fire
    assert spike_ticks(run_both(prog, no_input(), 3)) == []


def test_leak_integrates_every_tick():
    prog = one_neuron(leak=3, alpha=10)
    assert spike_ticks(run_both(prog, no_input(), 9)) == [3, 7]  # 3, 6, 9, 12 -> 0, 3, ...


def relay(delay, chip=CHIP):
    """Input -> neuron (0, 0) -> after ``delay`` axon 2 of core 1 -> neuron (1, 0) on port 0."""
    prog = one_neuron(chip=chip, cores=2, alpha=1)
    prog.weight[0, 0, 0] = 1
    prog.target_core[0, 0], prog.target_axon[0, 0], prog.target_delay[0, 0] = 1, 2, delay
    prog.crossbar[1, 2, 0] = True
    prog.weight[1, 0, 0] = 1
    prog.output_port[1, 0] = 0
    prog.port_class = np.zeros(1, np.int32)
    return prog


@pytest.mark.parametrize("delay", [1, 7, 15])
def test_delays(delay):
    inputs = np.zeros((1, 2, 1), bool)
    inputs[0, 1, 0] = True
    result = run_both(relay(delay, small_chip(delay_max=15)), inputs, 20)
    assert spike_ticks(result, 0, 0) == [1]
    assert spike_ticks(result, 1, 0) == [1 + delay]
    assert result.class_counts.tolist() == [[1]]


def test_or_merge_on_one_axon():
    # neurons (0, 0) and (0, 1) both fire at tick 0 and both target axon 3 of core 1 with delay 2;
    # input channels 1 and 2 both drive axon 4 of core 1 at tick 2. The target neuron sums each
    # axon once: weights 1 (axon 3, type 0) + 10 (axon 4, type 1) = 11 < alpha 12 stays silent,
    # while counting each source would give 1 + 1 + 10 + 10 = 22.
    prog = Program.empty(CHIP, 2, num_inputs=3, num_classes=1)
    prog.leak[0, :2] = 1
    prog.alpha[0, :2] = 1
    prog.target_core[0, :2], prog.target_axon[0, :2], prog.target_delay[0, :2] = 1, 3, 2
    prog.input_channel = np.array([1, 2], np.int32)
    prog.input_core = np.array([1, 1], np.int32)
    prog.input_axon = np.array([4, 4], np.int32)
    prog.crossbar[1, [3, 4], 0] = True
    prog.axon_type[1, 4] = 1
    prog.weight[1, 0] = [1, 10, 0]
    prog.alpha[1, 0] = 12
    prog.reset_mode[0, :2] = 0
    inputs = np.zeros((1, 3, 3), bool)
    inputs[0, 2, 1:] = True
    result = run_both(prog, inputs, 3)
    assert spike_ticks(result, 1, 0) == []
    assert result.synaptic_events.tolist() == [2]  # two active axons, one synapse each
    prog.alpha[1, 0] = 11
    assert spike_ticks(run_both(prog, inputs, 3), 1, 0) == [2]


def ports_program(leaks, port_class, num_classes):
    """Neuron j of core 0 has leak ``leaks[j]``, alpha 4 and output port j (of class port_class[j])."""
    prog = Program.empty(CHIP, 1, num_inputs=0, num_classes=num_classes)
    n = len(leaks)
    prog.leak[0, :n] = leaks
    prog.alpha[0, :n] = 4
    prog.output_port[0, :n] = np.arange(n)
    prog.port_class = np.array(port_class, np.int32)
    return prog


def test_output_ports_classes_and_ensemble_voting():
    # leaks 4, 2, 1, 4 fire 8, 4, 2, 8 times in 8 ticks (alpha 4, reset to 0);
    # ports 0..3 vote for classes 0, 1, 1, 2: class counts 8, 6, 8 -> tie of 0 and 2 -> class 0
    prog = ports_program([4, 2, 1, 4], [0, 1, 1, 2], 3)
    result = run_both(prog, np.zeros((2, 0 + 1, 0), bool), 8)
    assert result.port_counts.tolist() == [[8, 4, 2, 8]] * 2
    assert result.class_counts.tolist() == [[8, 6, 8]] * 2
    assert result.predictions.tolist() == [0, 0]
    # two ports of class 2 firing 6 times each (leak 3, linear reset) outvote one port firing 8 times
    prog = ports_program([4, 3, 3], [0, 2, 2], 3)
    prog.reset_mode[0, 1:3] = 1
    result = run_both(prog, np.zeros((1, 1, 0), bool), 8)
    assert result.port_counts.tolist() == [[8, 6, 6]]
    assert result.class_counts.tolist() == [[8, 0, 12]] and result.predictions.tolist() == [2]


def test_no_output_spikes_predicts_class_zero():
    prog = ports_program([0, 0], [1, 0], 2)
    result = run_both(prog, np.zeros((1, 1, 0), bool), 4)
    assert result.class_counts.tolist() == [[0, 0]] and result.predictions.tolist() == [0]


def test_activity_counters_hops_and_chip_crossings():
    # chips of 4 x 3 cores on a 2 x 3 board; core 0 at (1, 1) on chip (0, 0), core 1 at (6, 7) on
    # chip (1, 2): every spike of neuron (0, 0) travels 5 + 6 = 11 hops, crossing 1 + 2 chip boundaries
    prog = relay(1, small_chip(mesh_x=4, mesh_y=3, board_x=2, board_y=3))
    prog.core_xy = np.array([[1, 1], [6, 7]], np.int32)
    inputs = np.ones((3, 4, 1), bool)
    result = run_both(prog, inputs, 5)
    fired = result.spikes[:, :, 0, 0].sum(axis=0)            # per sample
    np.testing.assert_array_equal(fired, [4, 4, 4])
    np.testing.assert_array_equal(result.hops, 11 * fired)
    np.testing.assert_array_equal(result.chip_crossings, 3 * fired)
    np.testing.assert_array_equal(result.spike_count, fired + result.port_counts[:, 0])
    np.testing.assert_array_equal(result.core_ticks, [2 * 5] * 3)
    np.testing.assert_array_equal(result.neuron_updates, [2 * 5] * 3)   # two neurons in use
    np.testing.assert_array_equal(result.synaptic_events, [4 + 4] * 3)         # one synapse per neuron


def test_neurons_in_use_are_the_programs_used_neurons():
    # neuron (0, 1) implements a deployed neuron but has no synapse and no target: the emulators
    # count it as in use, as Program.used_neurons and the report's energy estimate do
    prog = relay(1)
    prog.group_names = ["hidden"]
    prog.neuron_group[0, 1] = 0
    result = run_both(prog, np.ones((2, 3, 1), bool), 3)
    used = int(np.count_nonzero(prog.used_neurons()))
    assert used == 3
    np.testing.assert_array_equal(result.neuron_updates, [used * 3] * 2)


def stochastic_threshold_program():
    """Neuron (0, j), j < 8: leak 4, alpha 1, mask 7, reset to 0: fires when 4 >= 1 + (r & 7)."""
    prog = Program.empty(CHIP, 1, num_inputs=1, num_classes=1)
    prog.leak[0] = 4
    prog.alpha[0] = 1
    prog.threshold_mask[0] = 7
    prog.beta[0] = 0
    return prog


def expected_threshold_spikes(seed, ticks, samples, sample_offset=0):
    """Spikes by the documented rule, written independently of both backends: V = 4 after a spike
    (reset to 0 + leak), else V + 4; fire when V >= 1 + (r & 7)."""
    out = np.zeros((ticks, samples, 8), bool)
    for b in range(samples):
        for j in range(8):
            v = 0
            for t in range(ticks):
                v = min(v + 4, CHIP.v_max)
                r = int(prng.draw(seed, prng.THRESHOLD, sample_offset + b, t, 0, j, 0))
                if v >= 1 + (r & 7):
                    out[t, b, j], v = True, 0
    return out


def test_stochastic_threshold_rule_and_seed():
    prog = stochastic_threshold_program()
    inputs = np.zeros((3, 1, 1), bool)
    a = run_both(prog, inputs, 12, seed=11)
    np.testing.assert_array_equal(a.spikes[:, :, 0], expected_threshold_spikes(11, 12, 3))
    again = run_both(prog, inputs, 12, seed=11)
    np.testing.assert_array_equal(a.spikes, again.spikes)
    other = run_both(prog, inputs, 12, seed=12)
    assert (other.spikes != a.spikes).any()
    assert 0 < a.spikes.mean() < 1
    # the program's metadata seed is the default
    prog.metadata["seed"] = 11
    np.testing.assert_array_equal(run_both(prog, inputs, 12).spikes, a.spikes)


def stochastic_synapse_program(weight):
    """Axons 0..7 of core 0 (input channels 0..7) each connect to neuron j = axon with a stochastic
    synapse of ``weight``; alpha 1, reset to 0, leak 0."""
    prog = Program.empty(CHIP, 1, num_inputs=8, num_classes=1)
    prog.input_channel = np.arange(8, dtype=np.int32)
    prog.input_core = np.zeros(8, np.int32)
    prog.input_axon = np.arange(8, dtype=np.int32)
    prog.crossbar[0, np.arange(8), np.arange(8)] = True
    prog.weight[0, :, 0] = weight
    prog.stochastic_synapse[0, :, 0] = True
    return prog


def test_stochastic_synapse_rule_seed_and_exact_boundary():
    # an active stochastic synapse of weight 64 adds 1 when (r & 0xFF) < 64, so the neuron fires
    # exactly on those ticks (V = 0 otherwise, and 1 resets to 0)
    prog = stochastic_synapse_program(64)
    ticks, samples, seed = 40, 6, 3
    inputs = np.ones((samples, ticks, 8), bool)
    result = run_both(prog, inputs, ticks, seed=seed)
    t, b, j = np.meshgrid(np.arange(ticks), np.arange(samples), np.arange(8), indexing="ij")
    r = prng.draw(seed, prng.SYNAPSE, b, t, 0, j, j) & 0xFF
    np.testing.assert_array_equal(result.spikes[:, :, 0, :8], r < 64)
    assert (r == 64).any()  # the boundary case occurs: < (not <=) is checked
    assert result.synaptic_events.tolist() == [ticks * 8] * samples
    other = run_both(prog, inputs, ticks, seed=seed + 1)
    assert (other.spikes != result.spikes).any()


def test_negative_stochastic_synapse_subtracts_one():
    # weight -200 subtracts 1 with probability 200/256; leak 1 and alpha 1: fires when no draw hits
    prog = stochastic_synapse_program(-200)
    prog.leak[0, :8] = 1
    ticks, seed = 30, 9
    result = run_both(prog, np.ones((1, ticks, 8), bool), ticks, seed=seed)
    t, j = np.meshgrid(np.arange(ticks), np.arange(8), indexing="ij")
    hit = (prng.draw(seed, prng.SYNAPSE, 0, t, 0, j, j) & 0xFF) < 200
    v, expected = np.zeros(8, int), np.zeros((ticks, 8), bool)
    for k in range(ticks):
        v = np.maximum(v - hit[k] + 1, 0)  # beta 0 floors at 0
        expected[k] = v >= 1
        v[expected[k]] = 0
    np.testing.assert_array_equal(result.spikes[:, 0, 0, :8], expected)


@pytest.mark.parametrize("backend", ["emulator", "reference", "torch"])
def test_stochastic_results_do_not_depend_on_batch_split(backend):
    prog = stochastic_synapse_program(100)
    prog.threshold_mask[0, :8] = 1
    rng = np.random.default_rng(0)
    inputs = rng.random((6, 10, 8)) < 0.7
    whole = crossmap.emulate(prog, inputs, backend=backend, seed=4, record=True, sample_offset=10, ticks=10)
    first = crossmap.emulate(prog, inputs[:2], backend=backend, seed=4, record=True, sample_offset=10, ticks=10)
    rest = crossmap.emulate(prog, inputs[2:], backend=backend, seed=4, record=True, sample_offset=12, ticks=10)
    np.testing.assert_array_equal(whole.spikes, np.concatenate([first.spikes, rest.spikes], axis=1))
    np.testing.assert_array_equal(whole.class_counts, np.concatenate([first.class_counts, rest.class_counts]))
    shifted = crossmap.emulate(prog, inputs[2:], backend=backend, seed=4, record=True, sample_offset=10, ticks=10)
    assert (shifted.spikes != rest.spikes).any()  # the sample counter matters
