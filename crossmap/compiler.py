"""``crossmap.compile``: ONNX model -> placed, routed program on disk, through a pipeline of passes."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike

from crossmap.chip import ChipSpec
from crossmap.errors import CrossmapError, InputError, PipelineError
from crossmap.limits import MAX_SEED
from crossmap.outdir import check_output
from crossmap.pipeline import CompileState, Pass, format_pipeline, parse_pipeline, run_pipeline

if TYPE_CHECKING:  # imported where used, to keep start-up fast
    from crossmap.frontend.loading import ModelSource
    from crossmap.ir import Network
    from crossmap.program import Program

class MissingCalibration(UserWarning):
    """A float model compiled without calibration data of its own."""


BINARIZE_METHODS = ("auto", "deterministic", "stochastic", "lsq", "ttfs", "rate")


def auto_binarize(network: Network, chip: ChipSpec | None = None) -> str:
    """The binarization ``auto`` picks: ``deterministic`` for chip-ready networks (every layer of
    step neurons, or max pooling of them, with a step output or class readout) whose weights have an
    exact chip form (per neuron, a scale times few small integers); ``stochastic`` for step networks
    with real-valued weights (connection probabilities, Esser et al. 2015: sampled binary copies);
    else ``rate`` (float ReLU networks)."""
    from crossmap.passes.binarize.analysis import plan_network

    try:
        plan = plan_network(network, method="deterministic")
    except CrossmapError:
        return "rate"
    if not all(layer.pop.activation == "step" or layer.pop.reduce == "max" for layer in plan.layers):
        return "rate"
    chip = chip or ChipSpec.truenorth()
    exact = all(_few_level(layer.weight(), chip) for layer in plan.layers if layer.pop.reduce != "max")  # one at a time
    return "deterministic" if exact else "stochastic"


AUTO_REASONS = {
    "deterministic": "a chip-ready step network",
    "stochastic": "a step network with real-valued weights: sampled binary copies voting together; "
                  "--ensemble N sets how many",
    "rate": "a float network",
}


def _few_level(w: sp.csr_matrix, chip: ChipSpec) -> bool:
    """Whether every row of ``w`` is a scale times integers of at most ``chip.weight_max`` with at
    most ``chip.axon_types`` distinct values: the form the deterministic method maps exactly."""
    from crossmap.passes.binarize.axon_types import distinct_per_row
    from crossmap.passes.binarize.deterministic import BinarizeDeterministic
    from crossmap.passes.binarize.levels import row_scales

    if not w.nnz:
        return True
    _, data, exact = row_scales(w, chip.weight_max, BinarizeDeterministic.tolerance)
    if not exact.all():
        return False
    ints = sp.csr_matrix((data, w.indices, w.indptr), shape=w.shape)
    return bool((distinct_per_row(ints) <= chip.axon_types).all())


def default_pipeline(binarize: str = "deterministic", **binarize_options: str | int | float | bool | None) -> str:
    """The pipeline spec for a binarization method, with the given options on the binarize pass
    (options that method does not have are left out; ``auto`` must be resolved first, see
    ``auto_binarize``)."""
    if binarize not in BINARIZE_METHODS or binarize == "auto":
        raise PipelineError(f"unknown binarization {binarize!r}; choose one of {', '.join(BINARIZE_METHODS)}")
    from crossmap.pipeline import pass_class

    cls = pass_class(f"binarize_{binarize}")
    names = {f.name for f in dataclasses.fields(cls)}
    wanted = {k: v for k, v in binarize_options.items() if v is not None}
    unknown = sorted(set(wanted) - names)
    if unknown:
        raise PipelineError(f"binarization {binarize!r} has no option(s) {unknown}; its options: {sorted(names)}")
    opts = ";".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in wanted.items())
    return f"binarize_{binarize}" + (f"{{{opts}}}" if opts else "") + ",partition,place,route,emit"


def calibration_inputs(network: Network, limit: int = 256, seed: int = 0) -> np.ndarray:
    """Float inputs to calibrate binarization and measure traffic: the bundled MNIST calibration
    sample (held-out training images) when the network takes 28x28 images, else uniform random
    values in [0, 1)."""
    shape = tuple(network.input.shape)
    if int(np.prod(shape)) == 784:
        try:
            from crossmap.datasets import load_calibration_sample

            images = load_calibration_sample()
            return images[:limit].reshape((-1,) + shape).astype(np.float32)
        except (ImportError, CrossmapError):
            pass
    return np.random.default_rng(seed).random((min(limit, 64),) + shape).astype(np.float32)



def check_seed(seed: int) -> None:
    """Raise ``InputError`` unless ``seed`` is an integer in [0, 2^31 - 1]."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"seed {seed!r} must be an integer in [0, {MAX_SEED}]; pass e.g. --seed 0")


def check_jobs(jobs: int | None) -> int:
    """The number of processes to use: ``jobs``, or every core when None; ``InputError`` unless
    it is an integer from 1 to MAX_WORKERS."""
    from crossmap.limits import MAX_WORKERS

    if jobs is None:
        return max(1, min(os.cpu_count() or 1, MAX_WORKERS))
    if isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer)) or not 1 <= jobs <= MAX_WORKERS:
        raise InputError(f"jobs {jobs!r} must be an integer in [1, {MAX_WORKERS}]; pass e.g. --jobs 2")
    return int(jobs)


AUTO_BOARD = "-auto"  # chip name suffix: the smallest board of that chip holding the program


def compile(model: ModelSource, output: str | os.PathLike | None = None, *, chip: ChipSpec | str = "truenorth",
            binarize: str = "auto", ensemble: int | None = None, encoding: str | None = None,
            ticks: int | None = None, pipeline: str | None = None, seed: int = 0,
            time_limit: float | None = None, calibration: np.ndarray | None = None,
            overwrite: bool = False, progress: Callable[[str], None] | None = None,
            output_name: str | None = None, jobs: int | None = None) -> Program:
    """Compile an ONNX model (path or ModelProto) to a Program; with ``output`` it is written there
    atomically (nothing is left behind on failure). Returns the Program with its passes' reports.
    ``chip`` is a ChipSpec, a name (``truenorth``, ``truenorth-2x2``), a JSON path, or a name ending
    in ``-auto`` (``truenorth-auto``): that chip on the smallest board that holds the program.
    ``binarize="auto"`` maps chip-ready step networks exactly and float networks by rate coding.
    ``output_name`` picks the model output to compile when it has several (default: the class scores).
    ``jobs`` processes pack independent work in parallel (default: every core); the program is the
    same for any number."""
    from crossmap.frontend import import_onnx

    grow_board = isinstance(chip, str) and chip.endswith(AUTO_BOARD)
    chip_spec = chip if isinstance(chip, ChipSpec) else ChipSpec.named(chip.removesuffix(AUTO_BOARD) or "truenorth")
    check_seed(seed)
    jobs = check_jobs(jobs)
    if output is not None:
        check_output(output, overwrite)
    if pipeline is not None or binarize != "auto":  # a spec is checked before any work
        pipeline = pipeline or default_pipeline(binarize, ensemble=ensemble, encoding=encoding, ticks=ticks)
        passes = parse_pipeline(pipeline)
    network = import_onnx(model, output=output_name)
    if calibration is not None:
        calibration = check_calibration(network, calibration)
    if pipeline is None:
        binarize = auto_binarize(network, chip_spec)
        if progress is not None:
            progress(f"binarize auto: {binarize} ({AUTO_REASONS[binarize]})")
        passes = parse_pipeline(default_pipeline(binarize, ensemble=ensemble, encoding=encoding, ticks=ticks))
    if time_limit is not None:
        for p in passes:
            if hasattr(p, "time_limit"):
                p.time_limit = float(time_limit)
    if grow_board:
        for p in passes:
            if p.name == "partition":
                p.board = "auto"
    if output is None:
        passes = [p for p in passes if p.name != "emit"]
    check_capacity(network, passes, chip_spec)  # before any heavy binarization or packing work
    custom = calibration is not None
    calibrated = any("calibration" in p.reads and p.name.startswith("binarize") for p in passes)
    if not custom and calibrated and int(np.prod(network.input.shape)) != 784:
        warnings.warn(MissingCalibration(
            f"no calibration data for a float model with input {tuple(network.input.shape)}: binarization "
            f"sets every layer's scale from 64 uniform random inputs, which usually costs accuracy (a scikit-learn "
            f"digits MLP: 77.6% on the chip calibrated this way, 91.7% on 128 real samples, float 92.9%); pass "
            f"calibration=samples (--calibration FILE: an .npz with x or an .npy of ~256 training samples)"),
            stacklevel=2)
    state = CompileState(chip=chip_spec, seed=seed, network=network,
                         calibration=calibration if custom else calibration_inputs(network, seed=seed),
                         output_dir=Path(output) if output is not None else None, overwrite=overwrite,
                         progress=progress, jobs=jobs, release_inputs=True)
    state.metadata.update({"pipeline": format_pipeline(passes), "seed": int(seed),
                           "source_sha256": network.metadata["sha256"],
                           "source_model": Path(model).name if isinstance(model, (str, os.PathLike)) else "<ModelProto>",
                           "calibration": calibration_digest(state.calibration) if custom else "default"})
    del network  # the state holds it until binarization is done with it
    state = run_pipeline(passes, state, before_emit=_stamp)
    program = state.program
    program.reports = state.reports
    return program


def check_capacity(network: Network, passes: list[Pass], chip: ChipSpec) -> None:
    """Raise ``ResourceError`` when the network, binarized by the pipeline's binarize pass, cannot
    fit the chip (see ``crossmap.passes.binarize.capacity``); a partition pass with a board other
    than ``fixed`` (``auto`` grows it; an unknown value is the pass's own error) checks the fan-in only."""
    binarize = next((p for p in passes if p.name.startswith("binarize_")), None)
    if binarize is None:
        return
    from crossmap.passes.binarize.capacity import check_plan_capacity

    grow = any(p.name == "partition" and getattr(p, "board", "fixed") != "fixed" for p in passes)
    check_plan_capacity(network, binarize.name.removeprefix("binarize_"), chip, grow_board=grow,
                        ensemble=getattr(binarize, "ensemble", 1), bits=getattr(binarize, "bits", 4),
                        output_copies=getattr(binarize, "output_copies", 8))


def check_calibration(network: Network, calibration: ArrayLike) -> np.ndarray:
    """Calibration samples as float32 (batch, *input shape); ``InputError`` when they do not fit."""
    shape = tuple(network.input.shape)
    size = int(np.prod(shape))
    x = np.asarray(calibration)
    if x.ndim < 2 or len(x) == 0 or not np.issubdtype(x.dtype, np.number):
        raise InputError(f"calibration data of shape {x.shape} and dtype {x.dtype}: give a numeric array of "
                         f"samples (batch, {', '.join(map(str, shape))}), at least one sample")
    if int(np.prod(x.shape[1:])) != size:
        raise InputError(f"calibration samples have {int(np.prod(x.shape[1:]))} values each (shape {x.shape[1:]}), "
                         f"the model's input {shape} takes {size}; give samples of the model's input shape")
    x = x.reshape((len(x),) + shape).astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise InputError(f"calibration data holds {int(np.sum(~np.isfinite(x)))} NaN or infinite values; clean it")
    return x


def calibration_digest(calibration: np.ndarray) -> str:
    """SHA-256 of calibration inputs (float32, C order), recorded so ``verify`` can check them."""
    return hashlib.sha256(np.ascontiguousarray(calibration, dtype=np.float32).tobytes()).hexdigest()


def _stamp(state: CompileState) -> None:
    """Write how the program was made into its metadata (runs before emit)."""
    if state.program is not None:
        state.program.metadata.update(state.metadata)


def stderr_progress(message: str) -> None:
    """A progress callback printing each stage's messages to stderr, one line each (so a log
    that is not a terminal shows them too), with the seconds since the first message."""
    global _progress_started
    if _progress_started is None:
        _progress_started = time.perf_counter()
    print(f"  [{time.perf_counter() - _progress_started:7.1f} s] {message}", file=sys.stderr, flush=True)


_progress_started: float | None = None
