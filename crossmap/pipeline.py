"""Compiler pipelines: a string spec of passes, each a dataclass of options with ``run(state)``.

Spec grammar: passes separated by ``,``; options in braces, ``name{key=value;key=value}``, e.g.
``binarize_deterministic,partition{copies=true},place{time_limit=10},route,emit``.
Pass names resolve through the explicit registry ``crossmap.passes.registry()``. The spec that
made a program, with every option spelled out, is stored in its manifest (``metadata.pipeline``)
and parses back to the same passes.

Every pass class declares what it ``reads`` and what it ``produces`` (names of ``ARTIFACTS``).
``parse_pipeline`` checks the whole spec against these declarations before any pass runs: a pass
whose input nothing earlier makes is refused with its position in the spec. ``run_pipeline``
checks after each pass that it made what it declared, and validates the IRs it holds.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Protocol

import numpy as np

from crossmap.chip import ChipSpec
from crossmap.deployed import DeployedNetwork
from crossmap.errors import PipelineError
from crossmap.ir import Network
from crossmap.memory import release_free_memory
from crossmap.program import Program

if TYPE_CHECKING:
    import networkx as nx

DEFAULT_PIPELINE = "binarize_deterministic,partition,place,route,emit"

# what passes hand to each other: name -> what it is (the words of a refused spec's message)
ARTIFACTS: dict[str, str] = {
    "network": "a float network (CompileState.network, imported from ONNX)",
    "calibration": "calibration inputs (CompileState.calibration)",
    "deployed": "a deployed network (CompileState.deployed)",
    "program": "a program of logical cores (CompileState.program)",
    "core_graph": "the core graph with measured traffic (CompileState.core_graph)",
    "placement": "final core coordinates (Program.core_xy)",
    "traffic": "the routed core-to-core traffic (Program.traffic)",
    "output": "a program directory on disk (CompileState.output_dir)",
}
COMPILE_INPUTS: tuple[str, ...] = ("network", "calibration")  # what crossmap.compile starts a pipeline with


@dataclass
class CompileState:
    """Everything the passes hand to each other. Each stage fills its own field:
    binarize -> ``deployed``; partition -> ``program`` (logical cores, provisional coordinates)
    and ``core_graph``; place -> ``program.core_xy``; route -> ``program.traffic`` (delays
    checked); emit -> writes ``output_dir``. ``reports`` holds each pass's report by pass name."""

    chip: ChipSpec
    seed: int = 0
    network: Network | None = None  # released once no later pass reads it (its weights can be gigabytes)
    input_shape: tuple[int, ...] | None = None  # the network's per-sample input shape, kept when it is released
    calibration: np.ndarray | None = None  # float inputs (batch, *input shape) for lsq and traffic
    deployed: DeployedNetwork | None = None
    program: Program | None = None
    core_graph: nx.DiGraph | None = None  # over logical cores, edge attr 'traffic' (spikes/sample)
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    output_dir: Path | None = None
    overwrite: bool = False
    progress: Callable[[str], None] | None = None
    jobs: int = 1  # processes a pass may use for independent work (results do not depend on it)
    # with release_inputs (crossmap.compile sets it), a pass may free the inputs in ``last_reads``
    # (those no later pass reads) as soon as it is done with them; a caller that looks at the
    # state afterwards leaves it off
    release_inputs: bool = False
    last_reads: tuple[str, ...] = ()

    def model_input_shape(self) -> tuple[int, ...] | None:
        """The per-sample input shape of the source model, when there is one."""
        if self.input_shape is None and self.network is not None:
            self.input_shape = tuple(self.network.input.shape)
        return self.input_shape

    def log(self, message: str) -> None:
        """Report progress if a progress callback was given."""
        if self.progress is not None:
            self.progress(message)

    def holds(self, artifact: str) -> bool:
        """Whether the state holds ``artifact`` (for artifacts that are a state or program field)."""
        if artifact in ("placement", "output"):
            return True  # coordinates always exist once there is a program; emit checks its own output
        if artifact == "traffic":
            return self.program is not None and self.program.traffic is not None
        return getattr(self, artifact) is not None


class Pass(Protocol):
    """What the registry's pass classes have: a spec name, the artifacts they read and produce,
    options as dataclass fields, and ``run``."""

    name: ClassVar[str]
    reads: ClassVar[tuple[str, ...]]
    produces: ClassVar[tuple[str, ...]]

    def run(self, state: CompileState) -> CompileState:
        """Do the pass's work on ``state``."""
        ...


def pass_class(name: str) -> type[Pass]:
    """The pass class called ``name`` (``partition`` -> ``crossmap.passes.partition.Partition``)."""
    from crossmap.passes import registry

    passes = registry()
    if name not in passes:
        raise PipelineError(f"unknown pass {name!r}; available passes: {', '.join(passes)}")
    return passes[name]


_ITEM = re.compile(r"\s*([a-z_]+)\s*(?:\{([^{}]*)\})?\s*(?:,|$)")


def _convert(raw: str, kind: Any, where: str) -> Any:
    raw = raw.strip()
    text = str(kind)
    try:
        if kind is bool or text == "bool":
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1")
        if kind is int or text == "int":
            return int(raw)
        if kind is float or text == "float":
            return float(raw)
        if "int | None" in text or "float | None" in text:
            return None if raw == "none" else (int(raw) if "int" in text else float(raw))
    except ValueError:
        raise PipelineError(f"{where}: value {raw!r} is not a valid {text}") from None
    return raw


def parse_pipeline(spec: str, given: Iterable[str] = COMPILE_INPUTS) -> list[Pass]:
    """Parse a spec into pass instances; unknown passes or options, and passes whose inputs
    nothing before them makes (from ``given`` onwards, see ``check_pipeline``), raise
    ``PipelineError``."""
    passes = []
    pos = 0
    spec = spec.strip()
    while pos < len(spec):
        match = _ITEM.match(spec, pos)
        if not match or match.end() == pos:
            raise PipelineError(f"cannot parse pipeline spec at character {pos}: {spec[pos:]!r}; expected "
                                f"'name' or 'name{{key=value;...}}' separated by commas")
        name, body = match.group(1), match.group(2)
        cls = pass_class(name)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        options = {}
        for item in filter(None, (body or "").split(";")):
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq or key not in fields:
                raise PipelineError(f"pass {name!r}: unknown option {key!r}; options: {sorted(fields) or 'none'}")
            options[key] = _convert(value, fields[key].type, f"pass {name!r} option {key!r}")
        passes.append(cls(**options))
        pos = match.end()
    if not passes:
        raise PipelineError("empty pipeline spec; the default is " + DEFAULT_PIPELINE)
    check_pipeline(passes, given)
    return passes


def check_pipeline(passes: list[Pass], given: Iterable[str] = COMPILE_INPUTS) -> None:
    """Raise ``PipelineError`` for the first pass that reads an artifact which neither ``given``
    nor an earlier pass produces, naming its position in the spec (1-based), what is missing
    and which passes make it."""
    from crossmap.passes import registry

    available = set(given)
    for position, p in enumerate(passes, start=1):
        missing = [a for a in p.reads if a not in available]
        if missing:
            what = missing[0]
            makers = [name for name, cls in registry().items() if what in cls.produces]
            remedy = (f"put {' or '.join(repr(m) for m in makers)} before it" if makers else
                      "the pipeline must start from it")
            raise PipelineError(f"pipeline position {position} ({p.name!r}) reads {ARTIFACTS.get(what, what)}, "
                                f"which nothing before it makes; {remedy}")
        available.update(p.produces)


def format_pipeline(passes: list[Pass]) -> str:
    """The canonical spec of pass instances, every option spelled out (round-trips)."""
    items = []
    for p in passes:
        opts = []
        for f in dataclasses.fields(p):
            value = getattr(p, f.name)
            text = "none" if value is None else (str(value).lower() if isinstance(value, bool) else str(value))
            opts.append(f"{f.name}={text}")
        items.append(p.name + ("{" + ";".join(opts) + "}" if opts else ""))
    return ",".join(items)


def run_pipeline(passes: list[Pass], state: CompileState,
                 before_emit: Callable[[CompileState], None] | None = None) -> CompileState:
    """Run the passes in order; after every pass check that it made what it declares and
    validate the deployed network and the program (``before_emit(state)`` runs right before an
    ``emit`` pass, or at the end when there is none). The float network is released after the
    last pass that reads it (its input shape is kept)."""
    for i, p in enumerate(passes):
        state.log(f"pass {p.name}")
        if p.name == "emit" and before_emit is not None:
            before_emit(state)
        later = {a for q in passes[i + 1:] for a in q.reads}
        state.last_reads = tuple(a for a in p.reads if a not in later) if state.release_inputs else ()
        state = p.run(state) or state
        missing = [a for a in p.produces if not state.holds(a)]
        if missing:
            raise PipelineError(f"pass {p.name!r} declares that it produces {ARTIFACTS.get(missing[0], missing[0])}, "
                                f"but the state holds none after it ran")
        if state.network is not None and not any("network" in q.reads for q in passes[i + 1:]):
            state.model_input_shape()
            state.network = None
        release_free_memory()  # what the pass freed goes back to the system
        if state.deployed is not None:
            state.deployed.validate()
        if state.program is not None:
            state.program.validate()
    if before_emit is not None and not any(p.name == "emit" for p in passes):
        before_emit(state)
    return state
