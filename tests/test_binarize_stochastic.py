"""binarize_stochastic: reproducible ensembles whose class votes add up."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from crossmap.testing.binarize_nets import binary_inputs, readout_matrix, state_for, step_mlp, step_pop

from crossmap.deployed import DeployedNetwork
from crossmap.encoding import encode
from crossmap.errors import BinarizeError
from crossmap.ir import INPUT, Network, Population, Projection
from crossmap.passes.binarize.stochastic import BinarizeStochastic


def probability_mlp(seed: int = 0, sizes=(16, 12, 8), classes: int = 2, scale: float = 1.0) -> Network:
    """Step MLP whose weights are signed probabilities times ``scale``."""
    rng = np.random.default_rng(seed)
    pops, projs, prev = [Population(INPUT, (sizes[0],))], [], INPUT
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = rng.random((b, a)) * rng.choice([-1.0, 1.0], (b, a)) * scale
        pops.append(step_pop(f"h{i}", b, -rng.random(b) * scale))
        projs.append(Projection(prev, f"h{i}", sp.csr_matrix(w)))
        prev = f"h{i}"
    pops.append(Population("y", (classes,)))
    projs.append(Projection(prev, "y", readout_matrix(sizes[-1], classes)))
    return Network(pops, projs, "y")


def sample(net, seed=0, **options):
    state = state_for(net, seed=seed)
    BinarizeStochastic(**options).run(state)
    return state.deployed, state.reports["binarize_stochastic"]


def fingerprint(deployed):
    parts = [g.weight.tobytes() + g.alpha.tobytes() + g.leak.tobytes() for g in deployed.groups]
    parts += [l.source_index.tobytes() + l.axon_type.tobytes() + l.synapses.toarray().tobytes() for l in deployed.lines]
    return b"".join(parts)


def test_same_seed_same_ensemble_other_seed_other_ensemble():
    net = probability_mlp()
    a, _ = sample(net, seed=5, ensemble=3)
    b, _ = sample(net, seed=5, ensemble=3)
    c, _ = sample(net, seed=6, ensemble=3)
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(c)
    copies = [sample(net, seed=5, ensemble=1)[0]]
    assert fingerprint(copies[0]) != fingerprint(sample(net, seed=6, ensemble=1)[0])


def test_copies_have_own_groups_shared_inputs_and_votes_add_up():
    net = probability_mlp(seed=1)
    deployed, report = sample(net, seed=2, ensemble=3)
    copies = sorted({g.copy for g in deployed.groups if not g.name.startswith("relay")})
    assert copies == [0, 1, 2]
    assert sum(1 for l in deployed.lines if l.source == "input") >= 3
    x = binary_inputs(80, 16, seed=3)
    spikes = encode(deployed.encoding, x)
    total = deployed.simulate(spikes)["class_counts"]
    parts = 0
    for k in copies:
        keep = {g.name for g in deployed.groups if g.copy == k and not g.name.startswith("relay")}
        keep |= {g.name for g in deployed.groups if g.name.startswith("relay")}
        sub = DeployedNetwork(chip=deployed.chip, num_inputs=deployed.num_inputs,
                              groups=[g for g in deployed.groups if g.name in keep],
                              lines=[l for l in deployed.lines if l.target in keep], num_classes=2,
                              encoding=deployed.encoding)
        parts = parts + sub.simulate(spikes)["class_counts"]
    assert np.array_equal(total, parts)
    assert len(report["layers"][0]["copies"]) == 3 and report["layers"][0]["approximation_error"] > 0


def test_certain_connections_reproduce_the_float_network_in_every_copy():
    net = step_mlp([12, 10, 6], seed=4, levels=(-1, 0, 1), classes=3, per_neuron_scale=False)
    for p in net.projections[:2]:
        p.weight = sp.csr_matrix(np.sign(p.weight.toarray()))  # probabilities 0 or 1
    deployed, _ = sample(net, ensemble=4)
    x = binary_inputs(100, 12, seed=5)
    assert np.array_equal(deployed.simulate(encode(deployed.encoding, x))["class_counts"], 4 * net.evaluate(x))


def test_ensemble_tracks_the_expected_network():
    """Neurons whose expected pre-activation is clearly positive fire in most copies, clearly
    negative ones in few."""
    net = probability_mlp(seed=7, sizes=(30, 20), classes=2)
    copies = 24
    deployed, _ = sample(net, ensemble=copies)
    x = binary_inputs(150, 30, seed=8)
    counts = deployed.simulate(encode(deployed.encoding, x))["output_counts"]
    fraction = sum(counts[f"h0@{k}"] for k in range(copies)) / copies  # (batch, 20)
    z = x @ net.projections[0].weight.toarray().T + net.populations[1].bias
    on, off = z > 1.5, z < -1.5
    assert on.sum() > 50 and off.sum() > 50
    assert fraction[on].mean() > 0.8 and fraction[off].mean() < 0.2


def test_weights_above_one_need_scaling():
    net = probability_mlp(seed=0, scale=3.0)
    with pytest.raises(BinarizeError, match=r"connection probabilities must lie in \[-1, 1\]"):
        sample(net, scaling="none")
    _, report = sample(net, scaling="neuron", ensemble=1)
    assert report["layers"][0]["rescaled_neurons"] > 0


def test_relu_and_bad_options_are_refused():
    net = probability_mlp()
    net.populations[1].activation = "relu"
    with pytest.raises(BinarizeError, match="--binarize lsq"):
        sample(net)
    with pytest.raises(BinarizeError, match="at least one copy"):
        sample(probability_mlp(), ensemble=0)
