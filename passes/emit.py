"""Stage 6, ``emit``: write the program directory atomically, with every pass's report and the
core traffic in ``report.json`` inside it (part of the same atomic write: a failed emit leaves
nothing)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from crossmap.errors import PipelineError
from crossmap.pipeline import CompileState


@dataclass
class Emit:
    """Writes ``state.program`` to ``state.output_dir`` (``state.overwrite`` replaces an existing one)."""

    name: ClassVar[str] = "emit"
    reads: ClassVar[tuple[str, ...]] = ("program",)
    produces: ClassVar[tuple[str, ...]] = ("output",)

    def run(self, state: CompileState) -> CompileState:
        """Attach the passes' reports to the program and save it."""
        if state.program is None:
            raise PipelineError("pass 'emit' has no program to write; put 'partition' (and 'place', 'route') "
                                "before 'emit'")
        if state.output_dir is None:
            raise PipelineError("pass 'emit' needs an output directory; pass -o OUT on the command line or "
                                "output= to crossmap.compile, or leave 'emit' out of the pipeline")
        state.log(f"emit: writing {state.output_dir}")
        state.program.reports = state.reports
        state.program.save(state.output_dir, overwrite=state.overwrite)
        return state
