"""Compiler pipelines: a string spec of passes, each a dataclass of options with ``run(state)``.

Spec grammar: passes separated by ``,``; options in braces, ``name{key=value;key=value}``, e.g.
``binarize_deterministic,partition{copies=true},place{time_limit=10},route,emit``.
Pass names resolve through the explicit registry ``crossmap.passes.registry()``. The spec that
made a program, with every option spelled out, is stored in its manifest (``metadata.pipeline``)
and parses back to the same passes.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from crossmap.chip import ChipSpec
from crossmap.errors import PipelineError

DEFAULT_PIPELINE = "binarize_deterministic,partition,place,route,emit"


@dataclass
class CompileState:
    """Everything the passes hand to each other. Each stage fills its own field:
    binarize -> ``deployed``; partition -> ``program`` (logical cores, provisional coordinates)
    and ``core_graph``; place -> ``program.core_xy``; route -> ``program`` delays checked and
    ``reports['route']``; emit -> writes ``output_dir``."""

    chip: ChipSpec
    seed: int = 0
    network: Any = None  # crossmap.ir.Network
    calibration: np.ndarray | None = None  # float inputs (batch, *input shape) for lsq and traffic
    deployed: Any = None  # crossmap.deployed.DeployedNetwork
    program: Any = None  # crossmap.program.Program
    core_graph: Any = None  # networkx.DiGraph over logical cores, edge attr 'traffic' (spikes/sample)
    reports: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    output_dir: Path | None = None
    overwrite: bool = False
    progress: Callable[[str], None] | None = None

    def log(self, message: str) -> None:
        """Report progress if a progress callback was given."""
        if self.progress is not None:
            self.progress(message)


def pass_class(name: str) -> type:
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


def parse_pipeline(spec: str) -> list[Any]:
    """Parse a spec into pass instances; unknown passes or options raise ``PipelineError``."""
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
    return passes


def format_pipeline(passes: list[Any]) -> str:
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


def run_pipeline(passes: list[Any], state: CompileState,
                 before_emit: Callable[[CompileState], None] | None = None) -> CompileState:
    """Run the passes in order, calling each stage's verifier after every pass (and
    ``before_emit(state)`` right before an ``emit`` pass)."""
    for p in passes:
        state.log(f"pass {p.name}")
        if p.name == "emit" and before_emit is not None:
            before_emit(state)
        state = p.run(state) or state
        for obj in (state.deployed, state.program):
            if obj is not None and hasattr(obj, "validate"):
                obj.validate()
    if before_emit is not None and not any(p.name == "emit" for p in passes):
        before_emit(state)
    return state
