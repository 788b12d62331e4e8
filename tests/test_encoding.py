"""Input encodings: threshold, rate (counter-based, batch independent), spikes, bias channel."""

from __future__ import annotations

import numpy as np
import pytest

from crossmap import prng
from crossmap.encoding import data_channels, encode, make_encoding, spike_channels
from crossmap.errors import InputError


def test_threshold_strict_inclusive_and_repeated_ticks():
    x = np.array([[0.2, 0.5, 0.7]])
    assert encode(make_encoding("threshold", channels=3), x).tolist() == [[[False, False, True]]]
    enc = make_encoding("threshold", channels=3, threshold=0.5, inclusive=True, ticks=3)
    out = encode(enc, x)
    assert out.shape == (1, 3, 3) and out.dtype == bool
    assert out[0].tolist() == [[False, True, True]] * 3


def test_threshold_per_channel_and_image_shapes():
    enc = make_encoding("threshold", channels=4, threshold=[0.0, 0.5, 1.0, 2.0])
    x = np.full((2, 1, 2, 2), 0.75)
    assert encode(enc, x)[:, 0].tolist() == [[True, True, False, False]] * 2


def test_threshold_with_a_source_drives_several_spike_channels_from_one_value():
    enc = make_encoding("threshold", channels=2, threshold=[0.25, 0.75, 0.25, 0.75], source=[0, 0, 1, 1])
    x = np.array([[0.5, 0.9], [0.1, 0.3]])
    assert encode(enc, x)[:, 0].tolist() == [[True, False, True, True], [False, False, True, False]]
    assert spike_channels(enc, 2) == 4 and data_channels(enc, 4) == 2
    enc["bias_channel"] = True
    assert spike_channels(enc, 2) == 5 and data_channels(enc, 5) == 2
    with pytest.raises(InputError, match=r"indices span \[0, 2\], the samples have 2 values"):
        make_encoding("threshold", channels=2, source=[0, 2])
    with pytest.raises(InputError, match="3 per-channel thresholds for 2 spike channels"):
        make_encoding("threshold", channels=2, threshold=[0.1, 0.2, 0.3], source=[1, 0])
    with pytest.raises(InputError, match="samples have 3 values"):
        encode(make_encoding("threshold", channels=2, source=[0, 1, 1]), np.zeros((1, 3)))


def test_rate_uses_the_documented_counter_draws():
    enc = make_encoding("rate", channels=3, ticks=5, seed=7)
    x = np.array([[0.0, 0.3, 1.0], [0.9, 0.5, 0.1]])
    out = encode(enc, x, sample_offset=10)
    for n in range(2):
        for t in range(5):
            for c in range(3):
                r = int(prng.draw(7, prng.INPUT, 10 + n, t, 0, c, 0))
                assert out[n, t, c] == (r < x[n, c] * 2**32)
    assert not out[0, :, 0].any() and out[0, :, 2].all()


def test_rate_is_independent_of_batching_and_follows_the_rate():
    enc = make_encoding("rate", channels=4, ticks=400, seed=3)
    x = np.random.default_rng(0).random((6, 4))
    whole = encode(enc, x)
    parts = np.concatenate([encode(enc, x[:2]), encode(enc, x[2:], sample_offset=2)])
    assert np.array_equal(whole, parts)
    assert np.abs(whole.mean(axis=1) - x).max() < 0.1
    other_seed = encode(make_encoding("rate", channels=4, ticks=400, seed=4), x)
    assert not np.array_equal(whole, other_seed)


def test_spikes_are_validated_and_bias_channel_appended():
    enc = {"kind": "spikes", "channels": 3, "bias_channel": True}
    out = encode(enc, np.array([[1, 0, 1]]))
    assert out.tolist() == [[[True, False, True, True]]]
    assert spike_channels(enc, 3) == 4 and data_channels(enc, 4) == 3
    with pytest.raises(InputError, match="must be 0 or 1"):
        encode(enc, np.array([[0.5, 0, 1]]))
    with pytest.raises(InputError, match="4 channels, the encoding takes 3"):
        encode(enc, np.zeros((1, 2, 4)))
    made = make_encoding("spikes", channels=2, ticks=3)
    assert encode(made, np.ones((1, 3, 2))).shape == (1, 3, 2)
    with pytest.raises(InputError, match="2 ticks, the encoding takes 3"):
        encode(made, np.ones((1, 2, 2)))


@pytest.mark.parametrize("encoding, x, message", [
    ({"kind": "rate", "ticks": 2}, np.array([[0.5, 1.5]]), r"values in \[0, 1\].*\[0.5, 1.5\]"),
    ({"kind": "threshold"}, np.array([[np.nan, 1.0]]), "NaN"),
    ({"kind": "threshold", "channels": 3}, np.zeros((2, 4)), "4 values.*3 channels"),
    ({"kind": "threshold"}, np.zeros(4), "no batch dimension"),
    ({"kind": "poisson"}, np.zeros((1, 4)), "not one of threshold, rate, regular, ttfs, spikes"),
    ({"kind": "rate", "ticks": 0}, np.zeros((1, 4)), "ticks = 0"),
    ({"kind": "threshold", "threshold": [0.5, 0.5], "channels": 3}, np.zeros((1, 3)), "2 per-channel thresholds"),
])
def test_bad_inputs_raise_input_error(encoding, x, message):
    with pytest.raises(InputError, match=message):
        encode(encoding, x)
