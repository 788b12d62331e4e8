"""The compiled program: every core as flat arrays (struct of arrays), the input map, the output
ports, the chip spec and how the program was made. ``save`` writes a directory atomically;
``load`` reads it back without pickle and validates it against its chip spec.

On disk a program directory holds ``manifest.json`` (schema ``crossmap/schema/program.schema.json``)
and ``arrays.npz``; crossbars are bit-packed and a SHA-256 of the arrays is kept in the manifest.
A compiled program also carries its passes' reports and the core-to-core traffic the compiler
measured (``Program.reports``, ``Program.traffic``), written to ``report.json`` beside them: every
pass's report under its name, the traffic as the route report's ``edges`` ([src core, dst core,
spikes per sample] rows).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crossmap.chip import ChipSpec
from crossmap.errors import CrossmapError, InputError, ProgramError, ProgramFormatError
from crossmap.jsonio import dumps
from crossmap.limits import MAX_CLASSES, MAX_INPUTS, MAX_TICKS
from crossmap.outdir import write_directory_atomically
from crossmap.program_files import (REMEDY, check_manifest_digest, expected_shapes, file_digest, manifest_digest,
                                    read_arrays, read_json_file, report_type_problem, write_arrays)

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
ARRAYS = "arrays.npz"
REPORT_FILE = "report.json"
TRAFFIC_REPORT = "route"  # the pass report that holds the traffic in report.json, as its 'edges'
MEASURED = "spikes per sample"
CONNECTIONS = "routed neurons per core pair (no traffic measured)"

# name -> (dtype, shape in symbols: C cores, A axons, N neurons, G axon types, M input map, P ports)
ARRAY_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "crossbar": ("bool", ("C", "A", "N")),
    "axon_type": ("int32", ("C", "A")),
    "weight": ("int32", ("C", "N", "G")),
    "alpha": ("int32", ("C", "N")),
    "beta": ("int32", ("C", "N")),
    "leak": ("int32", ("C", "N")),
    "reset_mode": ("int32", ("C", "N")),
    "reset_value": ("int32", ("C", "N")),
    "initial_v": ("int32", ("C", "N")),
    "threshold_mask": ("int32", ("C", "N")),
    "stochastic_synapse": ("bool", ("C", "N", "G")),
    "target_core": ("int32", ("C", "N")),
    "target_axon": ("int32", ("C", "N")),
    "target_delay": ("int32", ("C", "N")),
    "output_port": ("int32", ("C", "N")),
    "core_xy": ("int32", ("C", "2")),
    "input_channel": ("int32", ("M",)),
    "input_core": ("int32", ("M",)),
    "input_axon": ("int32", ("M",)),
    "port_class": ("int32", ("P",)),
    # provenance, for debugging and `crossmap verify`: the deployed group (index into group_names)
    # and neuron each chip neuron implements, -1 where none (idle, splitter, relay)
    "neuron_group": ("int32", ("C", "N")),
    "neuron_index": ("int32", ("C", "N")),
}

RESET_TO_VALUE, RESET_LINEAR, RESET_NONE = 0, 1, 2


@dataclass
class CoreTraffic:
    """Spikes per sample that core ``src[e]`` sends to core ``dst[e]`` (a core's spikes to its own
    axons included), as the compiler measured them on its calibration inputs; or, when nothing was
    measured (``measured`` False), the number of routed neurons per core pair."""

    src: np.ndarray
    dst: np.ndarray
    spikes: np.ndarray
    measured: bool = True

    def __post_init__(self) -> None:
        self.src = np.asarray(self.src, np.int64).reshape(-1)
        self.dst = np.asarray(self.dst, np.int64).reshape(-1)
        self.spikes = np.asarray(self.spikes, np.float64).reshape(-1)
        if not self.src.size == self.dst.size == self.spikes.size:
            raise ProgramError(f"core traffic has {self.src.size} sources, {self.dst.size} targets and "
                               f"{self.spikes.size} rates; give one of each per core pair")

    @property
    def kind(self) -> str:
        """What the numbers count: spikes per sample, or routed neurons per core pair."""
        return MEASURED if self.measured else CONNECTIONS

    def edges(self) -> list[list[int | float]]:
        """[src core, dst core, spikes per sample] rows (the on-disk form)."""
        return [[s, d, t] for s, d, t in zip(self.src.tolist(), self.dst.tolist(), self.spikes.tolist())]


@dataclass
class Program:
    """A compiled program for one chip spec (see docs/chip-model.md for the meaning of each array).

    Neuron ``(c, j)`` sends its spikes to ``(target_core, target_axon)`` after ``target_delay``
    ticks when ``target_core >= 0``, or records them on ``output_port`` when that is >= 0, or
    nowhere. Input channel ``input_channel[m]`` drives axon ``input_axon[m]`` of core
    ``input_core[m]``. Port ``p`` votes for class ``port_class[p]``.
    """

    chip: ChipSpec
    crossbar: np.ndarray
    axon_type: np.ndarray
    weight: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    leak: np.ndarray
    reset_mode: np.ndarray
    reset_value: np.ndarray
    initial_v: np.ndarray
    threshold_mask: np.ndarray
    stochastic_synapse: np.ndarray
    target_core: np.ndarray
    target_axon: np.ndarray
    target_delay: np.ndarray
    output_port: np.ndarray
    core_xy: np.ndarray
    input_channel: np.ndarray
    input_core: np.ndarray
    input_axon: np.ndarray
    port_class: np.ndarray
    num_inputs: int
    num_classes: int
    input_ticks: int = 1
    latency: int = 0
    encoding: dict[str, Any] = field(default_factory=lambda: {"kind": "spikes"})
    core_labels: list[str] = field(default_factory=list)
    group_names: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    neuron_group: np.ndarray | None = None
    neuron_index: np.ndarray | None = None
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)  # each pass's report, by pass name
    traffic: CoreTraffic | None = None  # core-to-core traffic, set by the route pass

    def __post_init__(self) -> None:
        shape = self.alpha.shape if isinstance(self.alpha, np.ndarray) else (0, 0)
        if self.neuron_group is None:
            self.neuron_group = np.full(shape, -1, np.int32)
        if self.neuron_index is None:
            self.neuron_index = np.full(shape, -1, np.int32)

    # ------------------------------------------------------------------ construction
    @classmethod
    def empty(cls, chip: ChipSpec, num_cores: int, num_inputs: int = 0, num_classes: int = 1,
              **kwargs: Any) -> "Program":
        """A program of ``num_cores`` idle cores: no synapses, no targets, alpha = alpha_min,
        everything else zero. Fill the arrays in place, then call ``validate``."""
        C, A, N, G = num_cores, chip.axons_per_core, chip.neurons_per_core, chip.axon_types
        arrays = {
            "crossbar": np.zeros((C, A, N), bool),
            "axon_type": np.zeros((C, A), np.int32),
            "weight": np.zeros((C, N, G), np.int32),
            "alpha": np.full((C, N), chip.alpha_min, np.int32),
            "beta": np.zeros((C, N), np.int32),
            "leak": np.zeros((C, N), np.int32),
            "reset_mode": np.zeros((C, N), np.int32),
            "reset_value": np.zeros((C, N), np.int32),
            "initial_v": np.zeros((C, N), np.int32),
            "threshold_mask": np.zeros((C, N), np.int32),
            "stochastic_synapse": np.zeros((C, N, G), bool),
            "target_core": np.full((C, N), -1, np.int32),
            "target_axon": np.zeros((C, N), np.int32),
            "target_delay": np.ones((C, N), np.int32) * chip.delay_min,
            "output_port": np.full((C, N), -1, np.int32),
            "core_xy": np.stack([np.arange(C) % chip.grid_x, np.arange(C) // chip.grid_x], 1).astype(np.int32),
            "input_channel": np.zeros(0, np.int32),
            "input_core": np.zeros(0, np.int32),
            "input_axon": np.zeros(0, np.int32),
            "port_class": np.zeros(0, np.int32),
        }
        arrays.update(kwargs)
        return cls(chip=chip, num_inputs=num_inputs, num_classes=num_classes, **arrays)

    # ------------------------------------------------------------------ sizes
    @property
    def num_cores(self) -> int:
        """Number of cores the program uses."""
        return int(self.crossbar.shape[0])

    @property
    def num_ports(self) -> int:
        """Number of output ports."""
        return int(self.port_class.shape[0])

    @property
    def total_ticks(self) -> int:
        """Ticks an emulation runs by default: the input ticks plus the pipeline latency."""
        return int(self.input_ticks) + int(self.latency)

    def used_neurons(self) -> np.ndarray:
        """(cores, N) bool: the neurons the program uses. A neuron is used when it implements a
        deployed neuron, has a synapse, or sends spikes (to a core axon or an output port, e.g. a
        splitter or relay); every other neuron is idle."""
        return ((self.neuron_group >= 0) | self.crossbar.any(axis=1) | (self.target_core >= 0)
                | (self.output_port >= 0))

    def arrays(self) -> dict[str, np.ndarray]:
        """The array fields by name."""
        return {name: getattr(self, name) for name in ARRAY_FIELDS}

    def checksum(self) -> str:
        """SHA-256 over every array (name, dtype, shape, bytes) in a fixed order."""
        digest = hashlib.sha256()
        for name, (dtype, _) in ARRAY_FIELDS.items():
            arr = np.ascontiguousarray(getattr(self, name), dtype=dtype)
            digest.update(f"{name}:{dtype}:{arr.shape};".encode())
            digest.update(arr.tobytes())
        return digest.hexdigest()

    # ------------------------------------------------------------------ validation
    def validate(self) -> "Program":
        """Check every shape and range against the chip spec; raise ``ProgramError`` naming the
        field, the offending core/neuron, the value and the allowed range. Returns self."""
        chip = self.chip
        C = self.crossbar.shape[0] if self.crossbar.ndim == 3 else -1
        dims = {"C": C, "A": chip.axons_per_core, "N": chip.neurons_per_core, "G": chip.axon_types,
                "M": self.input_channel.shape[0] if self.input_channel.ndim == 1 else -1,
                "P": self.port_class.shape[0] if self.port_class.ndim == 1 else -1, "2": 2}
        for name, (dtype, symbols) in ARRAY_FIELDS.items():
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray):
                raise ProgramError(f"program field {name!r} must be a numpy array, got {type(arr).__name__}")
            want = tuple(dims[s] for s in symbols)
            if arr.shape != want:
                raise ProgramError(f"program field {name!r} has shape {arr.shape}, the chip spec "
                                   f"{chip.name!r} needs {want} ({' x '.join(symbols)})")
            if dtype == "bool" and arr.dtype != bool:
                raise ProgramError(f"program field {name!r} must be bool, got {arr.dtype}")
            if dtype != "bool" and not np.issubdtype(arr.dtype, np.integer):
                raise ProgramError(f"program field {name!r} must be integer, got {arr.dtype}")
        if C > chip.max_cores:
            raise ProgramError(f"program uses {C} cores, chip spec {chip.name!r} has {chip.max_cores} "
                               f"({chip.board_x} x {chip.board_y} chips); use a larger board")

        def check_range(name: str, lo: int, hi: int, mask: np.ndarray | None = None) -> None:
            arr = getattr(self, name)
            bad = (arr < lo) | (arr > hi)
            if mask is not None:
                bad &= mask
            if bad.any():
                where = tuple(int(i) for i in np.argwhere(bad)[0])
                raise ProgramError(f"program field {name!r} at {where} = {int(arr[where])} is outside "
                                   f"[{lo}, {hi}] of chip spec {chip.name!r} ({int(bad.sum())} values out of range)")

        check_range("axon_type", 0, chip.axon_types - 1)
        check_range("weight", chip.weight_min, chip.weight_max)
        check_range("alpha", chip.alpha_min, chip.alpha_max)
        check_range("beta", chip.beta_min, chip.beta_max)
        check_range("leak", chip.leak_min, chip.leak_max)
        check_range("reset_mode", 0, 2)
        check_range("reset_value", chip.v_min, chip.v_max)
        check_range("initial_v", chip.v_min, chip.v_max)
        check_range("threshold_mask", 0, chip.alpha_max)
        check_range("target_core", -1, C - 1)
        routed = self.target_core >= 0
        check_range("target_axon", 0, chip.axons_per_core - 1, routed)
        check_range("target_delay", chip.delay_min, chip.delay_max, routed)
        check_range("output_port", -1, self.num_ports - 1)
        both = routed & (self.output_port >= 0)
        if both.any():
            where = tuple(int(i) for i in np.argwhere(both)[0])
            raise ProgramError(f"neuron {where} has both a target core and an output port; a neuron "
                               f"has one target: a core axon, an output port, or none")
        ports = self.output_port[self.output_port >= 0]
        if np.unique(ports).size != ports.size:
            raise ProgramError("several neurons write the same output port; give each neuron its own port "
                               "and let ports share a class")
        check_range("core_xy", 0, max(chip.grid_x, chip.grid_y) - 1)
        if C and ((self.core_xy[:, 0] >= chip.grid_x).any() or (self.core_xy[:, 1] >= chip.grid_y).any()):
            raise ProgramError(f"a core coordinate lies outside the {chip.grid_x} x {chip.grid_y} board mesh")
        if C and np.unique(self.core_xy[:, 1] * chip.grid_x + self.core_xy[:, 0]).size != C:
            raise ProgramError("two cores share a mesh position; every core needs its own (x, y)")
        if not 0 <= self.num_inputs <= MAX_INPUTS or not 1 <= self.num_classes <= MAX_CLASSES:
            raise ProgramError(f"num_inputs = {self.num_inputs} must be in [0, {MAX_INPUTS}] and num_classes = "
                               f"{self.num_classes} in [1, {MAX_CLASSES}]")
        check_range("input_channel", 0, self.num_inputs - 1)
        check_range("input_core", 0, C - 1)
        check_range("input_axon", 0, chip.axons_per_core - 1)
        check_range("port_class", 0, self.num_classes - 1)
        check_range("neuron_group", -1, len(self.group_names) - 1)
        check_range("neuron_index", -1, 2**31 - 1)
        if not 1 <= self.input_ticks <= MAX_TICKS or not 0 <= self.latency <= MAX_TICKS:
            raise ProgramError(f"input_ticks = {self.input_ticks} must be in [1, {MAX_TICKS}] and latency = "
                               f"{self.latency} in [0, {MAX_TICKS}]")
        if self.core_labels and len(self.core_labels) != C:
            raise ProgramError(f"core_labels has {len(self.core_labels)} entries for {C} cores")
        if self.traffic is not None:
            ends = np.concatenate([self.traffic.src, self.traffic.dst])
            if ends.size and (ends.min() < 0 or ends.max() >= C):
                raise ProgramError(f"the core traffic names core {int(ends.min() if ends.min() < 0 else ends.max())}, "
                                   f"the program has cores 0..{C - 1}")
        return self

    # ------------------------------------------------------------------ disk
    def manifest(self) -> dict[str, Any]:
        """The JSON manifest written beside the arrays."""
        from crossmap import __version__

        meta = dict(self.metadata)
        meta.setdefault("crossmap_version", __version__)
        return {
            "schema_version": SCHEMA_VERSION,
            "format": "crossmap-program",
            "chip": self.chip.to_dict(),
            "num_cores": self.num_cores,
            "num_inputs": int(self.num_inputs),
            "num_classes": int(self.num_classes),
            "num_ports": self.num_ports,
            "input_ticks": int(self.input_ticks),
            "latency": int(self.latency),
            "encoding": self.encoding,
            "core_labels": list(self.core_labels),
            "group_names": list(self.group_names),
            "metadata": meta,
            "arrays": {name: {"dtype": dtype, "shape": list(getattr(self, name).shape)}
                       for name, (dtype, _) in ARRAY_FIELDS.items()},
            "checksum": self.checksum(),
        }

    def save(self, directory: str | os.PathLike, overwrite: bool = False,
             extra_files: dict[str, str | bytes] | None = None) -> Path:
        """Validate, then write ``directory`` atomically (a temp dir renamed into place).
        An existing directory is refused unless ``overwrite``, and even then only a program
        directory or an empty directory is replaced (``crossmap.outdir``). The reports and the
        traffic go to ``report.json`` when there are any. ``extra_files`` (plain file name -> text
        or bytes) are written in the same atomic step."""
        self.validate()
        extra = dict(extra_files or {})
        for name in extra:
            if name in (MANIFEST, ARRAYS, REPORT_FILE) or Path(name).name != name or name in ("", ".", ".."):
                raise ProgramError(f"extra file name {name!r} must be a plain file name other than "
                                   f"{MANIFEST}, {ARRAYS} and {REPORT_FILE}; rename it")
        report = self.report_json()
        if report is not None:
            extra[REPORT_FILE] = report
        target = Path(directory)
        write_directory_atomically(target, lambda tmp: self._write_into(tmp, extra), overwrite)
        return target

    def report_json(self) -> str | None:
        """The text of ``report.json``: the reports, with the traffic as the route report's
        ``edges``; None when the program has neither."""
        reports = {name: dict(report) for name, report in self.reports.items()}
        if self.traffic is not None:
            route = reports.setdefault(TRAFFIC_REPORT, {})
            route.setdefault("traffic", self.traffic.kind)
            route["edges"] = self.traffic.edges()
        return dumps(reports) + "\n" if reports else None

    def _write_into(self, tmp: Path, extra_files: dict[str, str | bytes] | None = None) -> None:
        files = {}
        for name, content in (extra_files or {}).items():
            data = content if isinstance(content, bytes) else content.encode()
            (tmp / name).write_bytes(data)
            files[name] = file_digest(data)
        arrays = {}
        for name, (dtype, _) in ARRAY_FIELDS.items():
            arr = np.ascontiguousarray(getattr(self, name), dtype=dtype)
            arrays[name] = np.packbits(arr.reshape(-1)) if name == "crossbar" else arr
        write_arrays(tmp / ARRAYS, arrays)
        manifest = self.manifest()
        manifest["files"] = files
        manifest["manifest_checksum"] = manifest_digest(manifest)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False) + "\n")


def _schema() -> dict[str, Any]:
    return json.loads((Path(__file__).parent / "schema" / "program.schema.json").read_text())


def load(directory: str | os.PathLike) -> Program:
    """Read and validate a program directory written by ``Program.save``. Every way the directory
    can be broken (missing, truncated, corrupt, edited, hostile) raises ``ProgramFormatError`` or
    ``ProgramError`` (exit code 3) naming the file and the field or member."""
    root = Path(directory)
    if not root.is_dir():
        raise ProgramFormatError(f"program directory {str(root)!r} does not exist; compile one with "
                                 f"'crossmap compile MODEL.onnx -o {root}'")
    try:
        return _load(root)
    except (ProgramError, ProgramFormatError):
        raise
    except Exception as exc:  # a safety net: the checks above should leave nothing to fail here
        raise ProgramFormatError(f"{root}: cannot load the program ({type(exc).__name__}: {str(exc)[:200]}); "
                                 f"{REMEDY}") from None


def _load(root: Path) -> Program:
    manifest_path = root / MANIFEST
    manifest = read_json_file(manifest_path, "the directory is not a crossmap program")
    version = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise ProgramFormatError(f"{manifest_path}: schema_version {version} was written by a newer crossmap; "
                                 f"this one reads up to {SCHEMA_VERSION}. Upgrade crossmap or recompile")
    if not isinstance(manifest, dict):
        raise ProgramFormatError(f"{manifest_path}: holds a JSON {type(manifest).__name__}, not a program manifest; "
                                 f"{REMEDY}")
    check_manifest_digest(manifest, manifest_path)
    _check_schema(manifest, manifest_path)
    try:
        chip = ChipSpec.from_dict(manifest["chip"])
    except CrossmapError as exc:
        raise ProgramFormatError(f"{manifest_path}: field 'chip' is invalid: {exc}; {REMEDY}") from None
    try:
        encoding = check_program_encoding(manifest["encoding"], manifest["num_inputs"], manifest["input_ticks"])
    except CrossmapError as exc:
        raise ProgramFormatError(f"{manifest_path}: field 'encoding' is invalid: {exc}; {REMEDY}") from None
    shapes = expected_shapes(manifest, ARRAY_FIELDS, chip, manifest_path)
    arrays = read_arrays(root / ARRAYS, shapes, ARRAY_FIELDS)
    arrays["crossbar"] = np.unpackbits(arrays["crossbar"], count=int(np.prod(shapes["crossbar"]))) \
        .astype(bool).reshape(shapes["crossbar"])
    program = Program(
        chip=chip, num_inputs=manifest["num_inputs"], num_classes=manifest["num_classes"],
        input_ticks=manifest["input_ticks"], latency=manifest["latency"], encoding=encoding,
        core_labels=manifest["core_labels"], group_names=manifest["group_names"], metadata=manifest["metadata"], **arrays)
    if program.checksum() != manifest["checksum"]:
        raise ProgramFormatError(f"{root / ARRAYS}: checksum mismatch (manifest {manifest['checksum'][:12]}..., "
                                 f"arrays {program.checksum()[:12]}...); the file was modified or corrupted, "
                                 f"recompile the program")
    try:
        program.validate()
    except ProgramError as exc:
        raise ProgramError(f"{root}: {exc}; {REMEDY}") from None
    listed = manifest.get("files") or {}
    program.reports, program.traffic = read_reports(root / REPORT_FILE, program.num_cores, listed.get(REPORT_FILE))
    return program


def read_reports(path: Path, num_cores: int, digest: str | None = None) -> tuple[dict[str, dict[str, Any]],
                                                                                CoreTraffic | None]:
    """The reports and the traffic in a program's ``report.json``; ({}, None) when there is none.
    ``digest`` is the file's SHA-256 as the manifest lists it: a file that does not match it, or
    whose reports hold values of the wrong kind, raises ``ProgramFormatError`` (the report would
    show figures nobody computed); a file the manifest does not list, or traffic naming cores the
    program lacks, is ignored with a warning: the program itself is complete without it."""
    if not path.is_file():
        return {}, None
    if digest is None:
        warnings.warn(f"{path}: not written with the program (the manifest lists no checksum of it); the program "
                      f"is loaded without its compiler report", UserWarning, stacklevel=3)
        return {}, None
    try:
        actual = file_digest(path.read_bytes())
    except OSError as exc:
        raise ProgramFormatError(f"{path}: cannot be read ({exc.strerror}); check its permissions") from None
    if actual != digest:
        raise ProgramFormatError(f"{path}: checksum mismatch with the manifest's field 'files'; the file was "
                                 f"modified or corrupted, {REMEDY}")
    reports = read_json_file(path, "", max_bytes=2**30)
    if not isinstance(reports, dict) or not all(isinstance(r, dict) for r in reports.values()):
        raise ProgramFormatError(f"{path}: not an object of pass reports (each a JSON object); {REMEDY}")
    problem = report_type_problem(reports)
    if problem:
        raise ProgramFormatError(f"{path}: {problem}; {REMEDY}")
    route = reports.get(TRAFFIC_REPORT)
    if route is None or "edges" not in route:
        return reports, None
    edges = route.pop("edges")
    try:
        rows = np.asarray(edges, dtype=np.float64).reshape(-1, 3)
    except (TypeError, ValueError):
        rows = None
    if rows is None or not np.isfinite(rows).all() or (rows[:, :2] < 0).any() or (rows[:, :2] >= num_cores).any() \
            or (rows[:, :2] != np.round(rows[:, :2])).any():
        warnings.warn(f"{path}: the route report's traffic is not [core, core, spikes] rows of this program's "
                      f"{num_cores} cores; it is left out", UserWarning, stacklevel=3)
        return reports, None
    traffic = CoreTraffic(rows[:, 0], rows[:, 1], rows[:, 2], measured=route.get("traffic") == MEASURED)
    return reports, traffic


def check_program_encoding(encoding: Any, num_inputs: int, input_ticks: int) -> dict[str, Any]:
    """A program's input encoding, checked on its own and against the program's input channels
    and input ticks; raise ``InputError`` naming the disagreement."""
    from crossmap.encoding import spike_channels, validate_encoding

    validate_encoding(encoding)
    ticks = encoding.get("ticks", input_ticks)
    if ticks != input_ticks:
        raise InputError(f"encoding ticks = {ticks} but the program's input_ticks = {input_ticks}")
    channels = encoding.get("channels")
    if channels is not None or "source" in encoding or encoding.get("bias_channel"):
        data = channels if channels is not None else num_inputs - (1 if encoding.get("bias_channel") else 0)
        if data < 0 or spike_channels(encoding, data) != num_inputs:
            raise InputError(f"the encoding makes {spike_channels(encoding, max(data, 0))} spike channels, the "
                             f"program has num_inputs = {num_inputs}")
    return encoding


def _check_schema(manifest: Any, path: Path) -> None:
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - jsonschema is a dependency
        return
    try:
        jsonschema.validate(manifest, _schema())
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise ProgramFormatError(f"{path}: field {where!r}: {str(exc.message)[:300]}; the manifest does not match "
                                 f"schema version {SCHEMA_VERSION}, recompile the program") from None
