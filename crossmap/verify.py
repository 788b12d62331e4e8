"""``crossmap verify``: the emulator on a compiled program against onnxruntime on the deployed model.

The deployed network is rebuilt from the model with the binarize pass recorded in the program's
pipeline (same options and seed), exported with ``to_onnx`` and run in onnxruntime; the emulator
runs the program on the same encoded inputs. Class spike counts must be equal on every sample.
When they are not, the deployed network is simulated neuron by neuron and compared with the
emulator's spike counts per chip neuron (through the program's neuron_group / neuron_index
provenance) to name the first diverging layer and core.

With ``against_model`` the original model also runs in onnxruntime on the same float inputs, and
its predicted classes are compared with the emulator's: this catches what the first check cannot,
a binarize pass that changes what the network computes (the deployed network is built by the same
pass). Binarizing an exact step network must agree on every sample; approximate passes (``lsq``,
sampled ensembles) are given a ``tolerance``, the fraction of samples allowed to disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from crossmap.errors import CrossmapError

if TYPE_CHECKING:
    from crossmap.deployed import DeployedNetwork
    from crossmap.frontend.loading import ModelSource
    from crossmap.ir import Network
    from crossmap.program import Program


MAX_ONNX_BYTES = 1 << 30


@dataclass
class VerifyReport:
    """Outcome of a verification: per-sample agreement and, on a mismatch, where it starts."""

    samples: int
    matching: int
    first_bad_sample: int | None = None
    diverging_group: str | None = None
    diverging_cores: list[int] = field(default_factory=list)
    detail: str = ""
    reference: str = "onnxruntime on the deployed network's ONNX export"
    model_agreeing: int | None = None  # samples where the original model predicts the emulator's class
    first_model_disagreement: int | None = None
    tolerance: float = 0.0
    model_note: str | None = None  # set when the model is not (or cannot be shown to be) the program's source

    @property
    def model_ok(self) -> bool:
        """True when the original model was not asked for, or disagrees on at most ``tolerance`` of the samples."""
        if self.model_agreeing is None:
            return True
        return self.samples - self.model_agreeing <= self.tolerance * self.samples

    @property
    def ok(self) -> bool:
        """True when every sample matched the deployed network (and the original model, if asked)."""
        return self.matching == self.samples and self.model_ok

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary."""
        found = {"ok": self.ok, "samples": self.samples, "matching": self.matching,
                 "first_bad_sample": self.first_bad_sample, "diverging_layer": self.diverging_group,
                 "diverging_cores": self.diverging_cores, "detail": self.detail, "reference": self.reference,
                 "model_note": self.model_note}
        if self.model_agreeing is not None:
            found.update(model_agreeing=self.model_agreeing, first_model_disagreement=self.first_model_disagreement,
                         tolerance=self.tolerance, model_ok=self.model_ok)
        return found


def rebuild_deployed(program: Program, model: ModelSource,
                     calibration: np.ndarray | None = None) -> tuple[DeployedNetwork, Network]:
    """The deployed network of ``model`` made by the binarize pass recorded in ``program``
    (with the calibration inputs it was compiled with, if they were not the default ones)."""
    from crossmap.compiler import calibration_digest, calibration_inputs
    from crossmap.frontend import import_onnx
    from crossmap.pipeline import CompileState, parse_pipeline

    spec = program.metadata.get("pipeline")
    if not spec:
        raise CrossmapError("the program records no pipeline (metadata.pipeline), so its deployed network "
                            "cannot be rebuilt; recompile it with crossmap compile")
    binarize = [p for p in parse_pipeline(spec) if p.name.startswith("binarize")]
    if not binarize:
        raise CrossmapError(f"pipeline {spec!r} has no binarize pass; nothing to verify against")
    network = import_onnx(model)
    seed = int(program.metadata.get("seed", 0))
    recorded = program.metadata.get("calibration", "default")
    if calibration is None and recorded != "default":
        raise CrossmapError(f"the program was compiled with custom calibration inputs (sha256 {recorded[:12]}...), "
                            f"so its deployed network cannot be rebuilt without them; pass the same array as "
                            f"verify(..., calibration=...)")
    if calibration is not None and calibration_digest(calibration) != recorded:
        raise CrossmapError(f"the calibration inputs given (sha256 {calibration_digest(calibration)[:12]}...) are "
                            f"not those the program was compiled with ({recorded[:12]}...); pass the same array")
    state = CompileState(chip=program.chip, seed=seed, network=network,
                         calibration=calibration if calibration is not None else calibration_inputs(network, seed=seed))
    state = binarize[0].run(state) or state
    assert state.deployed is not None, f"{binarize[0].name} made no deployed network"
    return state.deployed, network


def model_sha256(model: ModelSource) -> str:
    """SHA-256 of a model as ``compile`` records it (``metadata.source_sha256``): of the file's
    bytes, or of a ModelProto's serialization, or of the bytes given."""
    import hashlib
    from pathlib import Path

    import onnx

    from crossmap.errors import ModelError

    if isinstance(model, onnx.ModelProto):
        return hashlib.sha256(model.SerializeToString()).hexdigest()
    if isinstance(model, (bytes, bytearray)):
        return hashlib.sha256(bytes(model)).hexdigest()
    path = Path(model)
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise ModelError(f"model file {str(path)!r} cannot be read ({exc.strerror}); remedy: check the path") from None


def check_source_model(program: Program, model: ModelSource, any_model: bool = False) -> str | None:
    """Compare ``model`` with the model the program was compiled from (its SHA-256 in the
    manifest). Raise ``ModelError`` when they differ, unless ``any_model``; then, or when the
    program records no source model, return a note saying so (None when they are the same)."""
    from crossmap.errors import ModelError

    recorded = program.metadata.get("source_sha256")
    if not recorded:
        return "the program records no source model (metadata.source_sha256), so the model could not be checked"
    digest = model_sha256(model)
    if digest == recorded:
        return None
    name = program.metadata.get("source_model", "?")
    text = (f"this is not the model the program was compiled from (the program records {name!r}, sha256 "
            f"{recorded[:12]}...; the model given has sha256 {digest[:12]}...)")
    if not any_model:
        raise ModelError(f"{text}; pass the model it was compiled from, or --any-model (any_model=True) to compare "
                         f"anyway, knowing that differences are then expected")
    return text + "; compared anyway (--any-model): differences are expected and do not mean the chip is wrong"


def verify(program: Program, model: ModelSource, inputs: np.ndarray | None = None, limit: int = 64,
           calibration: np.ndarray | None = None, max_onnx_bytes: int = MAX_ONNX_BYTES,
           against_model: bool = False, tolerance: float = 0.0, any_model: bool = False) -> VerifyReport:
    """Compare the emulator on ``program`` with onnxruntime on the deployed ONNX of ``model`` on
    ``inputs`` (default: calibration-like inputs); ``calibration`` as given to compile, if any.
    When the export would hold more than ``max_onnx_bytes`` of dense weights (large conv
    networks), the reference is the deployed network's own sparse simulation instead. With
    ``against_model`` also compare the predicted classes with ``model`` itself in onnxruntime,
    allowing a ``tolerance`` fraction of the samples to differ. First the model is checked to be
    the one the program was compiled from (``ModelError`` when not, unless ``any_model``)."""
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise CrossmapError(f"limit {limit!r} must be a positive number of samples to compare")
    if not 0.0 <= tolerance <= 1.0:
        raise CrossmapError(f"tolerance {tolerance} must be a fraction of the samples, in [0, 1] "
                            f"(e.g. 0.02 lets 2% of the samples predict another class than the model)")
    from crossmap import emulate
    from crossmap.compiler import calibration_inputs
    from crossmap.deployed_onnx import export_bytes
    from crossmap.encoding import encode
    from crossmap.frontend.compare import onnxruntime_outputs

    model_note = check_source_model(program, model, any_model)
    deployed, network = rebuild_deployed(program, model, calibration)
    x = calibration_inputs(network, limit=limit, seed=1) if inputs is None else inputs[:limit]
    spikes = encode(program.encoding, x)
    size = export_bytes(deployed)
    if size <= max_onnx_bytes:
        expected = _onnxruntime_counts(deployed, spikes, program.total_ticks)
        reference = VerifyReport.reference
    else:
        expected = deployed.simulate(spikes, ticks=program.total_ticks)["class_counts"].astype(np.int64)
        reference = (f"the deployed network's simulation (its ONNX export would hold {size / 2 ** 30:.1f} GiB of "
                     f"dense weights, more than {max_onnx_bytes / 2 ** 30:.1f} GiB)")
    result = emulate(program, spikes, record=True)
    got = result.class_counts
    bad = np.flatnonzero((expected != got).any(axis=1))
    report = VerifyReport(samples=len(x), matching=int(len(x) - bad.size), reference=reference, tolerance=tolerance,
                          model_note=model_note)
    if against_model:
        wanted = np.asarray(onnxruntime_outputs(model, x)).reshape(len(x), -1).argmax(axis=1)
        differ = np.flatnonzero(wanted != got.argmax(axis=1))
        report.model_agreeing = int(len(x) - differ.size)
        report.first_model_disagreement = int(differ[0]) if differ.size else None
    if bad.size == 0:
        return report
    report.first_bad_sample = int(bad[0])
    sim = deployed.simulate(spikes[bad[:1]], ticks=program.total_ticks, record=True)
    chip_counts = result.spikes[:, bad[0]].sum(axis=0)  # (C, N) spikes of each chip neuron
    names = program.group_names
    for group in deployed.groups:
        if group.name not in names:
            continue
        gid = names.index(group.name)
        want = sim["spikes"][group.name][:, 0].sum(axis=0)  # (size,)
        mask = program.neuron_group == gid
        cores, neurons = np.nonzero(mask)
        idx = program.neuron_index[cores, neurons]
        diff = chip_counts[cores, neurons] != want[idx]
        if diff.any():
            report.diverging_group = group.name
            report.diverging_cores = sorted({int(c) for c in cores[diff]})
            j = int(np.flatnonzero(diff)[0])
            report.detail = (f"sample {bad[0]}: layer {group.name!r} neuron {int(idx[j])} on core {int(cores[j])} "
                             f"fired {int(chip_counts[cores[j], neurons[j]])} times on the chip, "
                             f"{int(want[idx[j]])} in the deployed network")
            return report
    report.detail = (f"sample {bad[0]}: class counts differ (reference {expected[bad[0]].tolist()}, emulator "
                     f"{got[bad[0]].tolist()}) but every mapped neuron agrees with the deployed simulation: "
                     f"the deployed ONNX export and the deployed network disagree")
    return report


def _onnxruntime_counts(deployed: DeployedNetwork, spikes: np.ndarray, ticks: int) -> np.ndarray:
    """Class counts of the deployed network's ONNX export run in onnxruntime."""
    import onnxruntime as ort

    onnx_model = deployed.to_onnx(ticks=ticks)
    session = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: spikes.astype(np.float32)}
    return np.rint(session.run(None, feed)[0]).astype(np.int64)
