"""Input encodings: float samples -> input spikes (batch, ticks, channels) for a deployed network.

An encoding is a JSON-able dict stored in the deployed network and in the program manifest:

- ``{"kind": "threshold", "threshold": t, "ticks": T}``: channel c spikes when x[c] > t (or
  ``>= t`` with ``"inclusive": true``), the same frame repeated on each of the T ticks; ``t`` may be
  a list with one threshold per channel. With ``"source": [c0, c1, ...]`` spike channel j reads data
  value ``source[j]``, so one value may drive several spike channels (a thermometer code: one pixel
  against several thresholds) and ``"threshold"`` has one entry per spike channel.
- ``{"kind": "rate", "ticks": T, "seed": s}``: Bernoulli rate coding, channel c spikes at tick k of
  sample n when ``draw(s, INPUT, n, k, 0, c, 0) < x[c] * 2**32`` (crossmap.prng), so the spikes of a
  sample do not depend on the batch it is in (pass the sample's global index as ``sample_offset``).
  Values must lie in [0, 1].
- ``{"kind": "ttfs", "ticks": T, "levels": [l1, ..., lL]}``: time-to-first-spike coding, one spike per
  channel at most. A value's level q is the number of ascending level bounds it exceeds (``>=`` with
  ``"inclusive": true``); a channel with q >= 1 spikes once, on tick ``L - q`` (earlier = larger),
  and a channel with q = 0 does not spike. The default bounds ``(m - 1/2) / L`` for m = 1..L round a
  value in [0, 1] to the nearest of L + 1 levels; L <= T (the ticks after the L-th are the window in
  which the network computes).
- ``{"kind": "regular", "ticks": T, "low": a, "high": b}``: deterministic rate coding, evenly
  spaced spikes: with r = clip((x - a) / (b - a), 0, 1) (``low`` 0 and ``high`` 1 by default),
  channel c spikes at tick k when ``floor((k + 1) * r + 1/2) > floor(k * r + 1/2)``, so it spikes
  ``round(T * r)`` times in T ticks, without the sampling noise of ``rate``.
- ``{"kind": "spikes"}``: the input already is binary spikes, (batch, T, channels) or
  (batch, channels) for one tick; values must be 0 or 1.

Optional keys of every kind: ``"channels"`` (the number of data channels a sample must have) and
``"bias_channel": true``, which appends one more channel that spikes on every input tick (the
always-on source that binarization uses for neurons that must fire without input).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from crossmap import prng
from crossmap.errors import InputError

KINDS = ("threshold", "rate", "regular", "ttfs", "spikes")
_TWO32 = float(2**32)


def make_encoding(kind: str, *, channels: int, ticks: int | None = None, threshold: Any = 0.5,
                  inclusive: bool = False, seed: int = 0, bias_channel: bool = False,
                  source: Any = None, levels: Any = None, low: float = 0.0, high: float = 1.0) -> dict[str, Any]:
    """A validated encoding dict (``ticks`` defaults to 1 for threshold, 16 for rate and the number of
    levels for ttfs); ``source`` (threshold only) gives the data value of each spike channel;
    ``levels`` (ttfs only) the ascending level bounds, or their number (default: ``ticks``); ``low``
    and ``high`` (regular only, 16 ticks by default) the values of no spike and of a spike every tick."""
    if kind not in KINDS:
        raise InputError(f"unknown input encoding {kind!r}; available: {', '.join(KINDS)}")
    enc: dict[str, Any] = {"kind": kind, "channels": int(channels)}
    if kind == "threshold":
        enc["threshold"] = float(threshold) if np.ndim(threshold) == 0 else [float(v) for v in np.ravel(threshold)]
        enc["inclusive"] = bool(inclusive)
        enc["ticks"] = int(ticks) if ticks is not None else 1
        if source is not None:
            enc["source"] = [int(c) for c in np.ravel(source)]
    elif kind == "rate":
        enc["ticks"] = int(ticks) if ticks is not None else 16
        enc["seed"] = int(seed)
    elif kind == "regular":
        enc["ticks"] = int(ticks) if ticks is not None else 16
        enc["low"], enc["high"] = float(low), float(high)
    elif kind == "ttfs":
        if levels is None or np.ndim(levels) == 0:
            count = int(levels if levels is not None else (ticks if ticks is not None else 8))
            if count < 1:
                raise InputError(f"ttfs encoding: {count} levels; need at least 1")
            levels = (np.arange(1, count + 1) - 0.5) / count
        enc["levels"] = [float(v) for v in np.ravel(levels)]
        enc["inclusive"] = bool(inclusive)
        enc["ticks"] = int(ticks) if ticks is not None else len(enc["levels"])
    else:
        enc["ticks"] = int(ticks) if ticks is not None else 1
    if bias_channel:
        enc["bias_channel"] = True
    return validate_encoding(enc)


def validate_encoding(encoding: dict[str, Any]) -> dict[str, Any]:
    """Check an encoding dict; raise ``InputError`` naming the bad key. Returns it unchanged."""
    if not isinstance(encoding, dict) or encoding.get("kind") not in KINDS:
        kind = encoding.get("kind") if isinstance(encoding, dict) else encoding
        raise InputError(f"input encoding {kind!r} is not one of {', '.join(KINDS)}; give a dict such as "
                         f"{{'kind': 'threshold', 'threshold': 0.5, 'ticks': 1}}")
    ticks = encoding.get("ticks", 1)
    if not isinstance(ticks, (int, np.integer)) or isinstance(ticks, bool) or ticks < 1:
        raise InputError(f"input encoding {encoding['kind']!r}: ticks = {ticks!r} must be an integer >= 1")
    channels = encoding.get("channels")
    if channels is not None and (not isinstance(channels, (int, np.integer)) or channels < 0):
        raise InputError(f"input encoding: channels = {channels!r} must be a non-negative integer")
    if encoding["kind"] == "threshold":
        try:
            t = np.asarray(encoding.get("threshold", 0.5), dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            raise InputError(f"threshold encoding: the threshold {str(encoding.get('threshold'))[:40]!r} must be a "
                             f"number or a list of numbers") from None
        if not np.all(np.isfinite(t)):
            raise InputError("threshold encoding: the threshold must be finite")
        source = encoding.get("source")
        spiking = channels if source is None else len(source)
        if t.ndim > 1 or (t.ndim == 1 and spiking is not None and t.size != spiking):
            raise InputError(f"threshold encoding: {t.size} per-channel thresholds for {spiking} spike channels; "
                             f"give one threshold or one per spike channel")
        if source is not None:
            _check_source(source, channels)
    if encoding["kind"] == "ttfs":
        _check_levels(encoding.get("levels"), ticks)
    if encoding["kind"] == "regular":
        low, high = encoding.get("low", 0.0), encoding.get("high", 1.0)
        if not (np.isfinite(low) and np.isfinite(high) and high > low):
            raise InputError(f"regular encoding: low = {low!r} and high = {high!r} must be finite with high > low")
    if encoding["kind"] == "rate" and not isinstance(encoding.get("seed", 0), (int, np.integer)):
        raise InputError(f"rate encoding: seed = {encoding.get('seed')!r} must be an integer")
    return encoding


def _check_levels(levels: Any, ticks: int) -> None:
    """``levels`` must be a non-empty ascending list of finite bounds, at most ``ticks`` of them."""
    bounds = np.asarray(levels if levels is not None else [], dtype=np.float64)
    if bounds.ndim != 1 or bounds.size == 0 or not np.all(np.isfinite(bounds)):
        raise InputError(f"ttfs encoding: 'levels' = {str(levels)[:60]} must be a non-empty list of finite level "
                         f"bounds, e.g. [0.25, 0.75]")
    if np.any(np.diff(bounds) <= 0):
        raise InputError(f"ttfs encoding: the level bounds {bounds.tolist()[:8]} must be strictly ascending")
    if bounds.size > ticks:
        raise InputError(f"ttfs encoding: {bounds.size} levels need {bounds.size} ticks, the encoding has {ticks}; "
                         f"give ticks >= {bounds.size}")


def ttfs_levels(encoding: dict[str, Any], flat: np.ndarray) -> np.ndarray:
    """The level q (0..L) of every value of ``flat`` under a ttfs encoding (int64, same shape)."""
    bounds = np.asarray(encoding["levels"], np.float64)
    side = "right" if encoding.get("inclusive") else "left"
    return np.searchsorted(bounds, flat, side=side).astype(np.int64)


def _check_source(source: Any, channels: int | None) -> None:
    """``source`` must be a list of data-value indices below ``channels``."""
    if channels is None:
        raise InputError("threshold encoding with a 'source' list needs 'channels', the values per sample")
    index = np.asarray(source)
    if index.ndim != 1 or (index.size and not np.issubdtype(index.dtype, np.integer)):
        raise InputError(f"threshold encoding: 'source' must be a list of integer data-value indices, got "
                         f"{str(source)[:60]}")
    if index.size and (index.min() < 0 or index.max() >= channels):
        raise InputError(f"threshold encoding: 'source' indices span [{index.min()}, {index.max()}], the samples "
                         f"have {channels} values; every index must lie in [0, {channels - 1}]")


def input_ticks(encoding: dict[str, Any]) -> int:
    """Ticks of input per sample."""
    return int(encoding.get("ticks", 1))


def spike_channels(encoding: dict[str, Any], data_channels: int) -> int:
    """Input channels of the spikes ``encode`` makes from ``data_channels`` values per sample."""
    spiking = len(encoding["source"]) if "source" in encoding else int(data_channels)
    return spiking + (1 if encoding.get("bias_channel") else 0)


def data_channels(encoding: dict[str, Any], num_inputs: int) -> int:
    """Values per sample a network with ``num_inputs`` input channels takes under ``encoding``."""
    if "source" in encoding:
        return int(encoding["channels"])
    return int(num_inputs) - (1 if encoding.get("bias_channel") else 0)


def encode(encoding: dict[str, Any], x: np.ndarray, sample_offset: int = 0) -> np.ndarray:
    """Input spikes (batch, T, channels) bool for float samples ``x`` (batch, ...) under ``encoding``.

    ``sample_offset`` is the global index of ``x[0]`` (rate coding draws per global sample)."""
    validate_encoding(encoding)
    kind = encoding["kind"]
    ticks = input_ticks(encoding)
    x = np.asarray(x)
    if kind == "spikes":
        spikes = _check_spikes(encoding, x)
    else:
        flat = _flatten(encoding, x)
        if kind == "threshold":
            t = np.asarray(encoding.get("threshold", 0.5), dtype=np.float64)
            if "source" in encoding:
                flat = flat[:, np.asarray(encoding["source"], np.int64)]
            hit = flat >= t if encoding.get("inclusive") else flat > t
            spikes = np.repeat(hit[:, None, :], ticks, axis=1)
        elif kind == "regular":
            spikes = _regular(flat, ticks, float(encoding.get("low", 0.0)), float(encoding.get("high", 1.0)))
        elif kind == "ttfs":
            spikes = _ttfs(ttfs_levels(encoding, flat), len(encoding["levels"]), ticks)
        else:
            spikes = _rate(flat, ticks, int(encoding.get("seed", 0)), int(sample_offset))
    if encoding.get("bias_channel"):
        spikes = np.concatenate([spikes, np.ones(spikes.shape[:2] + (1,), bool)], axis=2)
    return spikes


def _flatten(encoding: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """(batch, channels) float64 view of float samples, with shape and value checks."""
    if x.ndim < 2:
        raise InputError(f"input of shape {x.shape} has no batch dimension; give (batch, ...) samples, "
                         f"e.g. x[None] for one sample")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise InputError(f"input dtype {x.dtype} is not numeric; give float values")
    flat = x.reshape(x.shape[0], -1).astype(np.float64)
    want = encoding.get("channels")
    if want is not None and flat.shape[1] != want:
        raise InputError(f"input samples have {flat.shape[1]} values ({x.shape[1:]}), the encoding takes "
                         f"{want} channels; reshape or crop the inputs to the model's input size")
    if not np.all(np.isfinite(flat)):
        raise InputError(f"input contains {int(np.sum(~np.isfinite(flat)))} NaN or infinite values; "
                         f"clean the data before encoding")
    if encoding["kind"] == "rate" and flat.size and (flat.min() < 0 or flat.max() > 1):
        raise InputError(f"rate encoding needs values in [0, 1], the input spans [{flat.min():g}, "
                         f"{flat.max():g}]; scale the inputs to [0, 1] (e.g. divide pixels by 255)")
    return flat


def _ttfs(level: np.ndarray, count: int, ticks: int) -> np.ndarray:
    """One spike on tick ``count - q`` for every value of level q >= 1."""
    batch, channels = level.shape
    out = np.zeros((batch, ticks, channels), bool)
    sample, channel = np.nonzero(level > 0)
    out[sample, count - level[sample, channel], channel] = True
    return out


def _regular(flat: np.ndarray, ticks: int, low: float, high: float) -> np.ndarray:
    """Evenly spaced spikes: round(T * r) of them in T ticks, r = clip((x - low) / (high - low), 0, 1)."""
    r = np.clip((flat - low) / (high - low), 0.0, 1.0)
    k = np.arange(ticks + 1, dtype=np.float64)[None, :, None]
    level = np.floor(k * r[:, None, :] + 0.5)
    return np.diff(level, axis=1) > 0


def _rate(flat: np.ndarray, ticks: int, seed: int, offset: int) -> np.ndarray:
    """Bernoulli spikes from the counter-based PRNG, chunked over samples to bound memory."""
    batch, channels = flat.shape
    out = np.zeros((batch, ticks, channels), bool)
    chunk = max(1, 2_000_000 // max(1, ticks * channels))
    tick = np.arange(ticks)[None, :, None]
    channel = np.arange(channels)[None, None, :]
    for lo in range(0, batch, chunk):
        hi = min(batch, lo + chunk)
        sample = (offset + np.arange(lo, hi))[:, None, None]
        r = prng.draw(seed, prng.INPUT, sample, tick, 0, channel, 0)
        out[lo:hi] = r.astype(np.float64) < flat[lo:hi, None, :] * _TWO32
    return out


def _check_spikes(encoding: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """Validated binary spikes (batch, T, channels)."""
    if x.ndim == 2:
        x = x[:, None, :]
    if x.ndim != 3:
        raise InputError(f"spike input has shape {x.shape}; give (batch, ticks, channels) or (batch, channels)")
    want = encoding.get("channels")
    if want is not None and x.shape[2] != want:
        raise InputError(f"spike input has {x.shape[2]} channels, the encoding takes {want}; give one "
                         f"channel per model input")
    if "ticks" in encoding and x.shape[1] != encoding["ticks"]:
        raise InputError(f"spike input has {x.shape[1]} ticks, the encoding takes {encoding['ticks']}; "
                         f"give exactly that many ticks per sample")
    if x.dtype != bool:
        values = np.unique(x)
        if not np.all(np.isin(values, (0, 1))):
            raise InputError(f"spike input must be 0 or 1, found values such as "
                             f"{[v.item() for v in values[~np.isin(values, (0, 1))][:3]]}; "
                             f"use the threshold or rate encoding for float data")
    return x.astype(bool)
