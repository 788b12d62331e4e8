"""crossmap: compile ONNX networks to TrueNorth-like neuromorphic chips and emulate them."""

from __future__ import annotations

__version__ = "0.1.0"

from crossmap.chip import ChipSpec, EnergyModel  # noqa: E402
from crossmap.errors import CrossmapError  # noqa: E402
from crossmap.program import Program, load  # noqa: E402


def emulate(program, inputs, ticks=None, backend: str = "emulator", **options):
    """Run ``program`` on input spikes ``inputs`` (batch, ticks, channels) or (batch, channels)
    with the named backend (``emulator`` or ``reference``); returns a ``Result``."""
    from crossmap.backends import get_backend

    return get_backend(backend)(program, inputs, ticks=ticks, **options)


def encode(program, x, sample_offset: int = 0):
    """Input spikes (batch, ticks, channels) for float samples ``x`` (batch, ...) under the program's
    own input encoding (threshold, rate, regular...), ready for ``emulate``. ``sample_offset`` is the
    global index of ``x[0]`` (rate coding draws per sample)."""
    from crossmap.encoding import encode as encode_samples

    return encode_samples(program.encoding, x, sample_offset=sample_offset)


def compile(model, output=None, **options):
    """Compile an ONNX model (path or ModelProto) to a Program, written to ``output`` if given.
    Options: chip, binarize, ensemble, encoding, ticks, pipeline, seed, time_limit, calibration,
    overwrite, progress (see ``crossmap.compiler.compile``)."""
    from crossmap.compiler import compile as compile_model

    return compile_model(model, output, **options)


__all__ = ["compile", "encode", "ChipSpec", "EnergyModel", "CrossmapError", "Program", "load", "emulate", "__version__"]
