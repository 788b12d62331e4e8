"""The chip model of docs/chip-model.md: every limit of the hardware is a field of ``ChipSpec``.

Nothing else in crossmap repeats one of these numbers; passes and backends read them from the
spec they are given.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from crossmap.errors import ChipSpecError, ResourceError

if TYPE_CHECKING:
    import numpy as np

    from crossmap.program import Program


MAX_EVENT_PJ = 1e12  # an energy cost per event above a joule is a typo, not a chip
# upper bounds of the chip's sizes: far beyond any real chip, low enough that every derived size
# (cores on the board, a core's crossbar) stays a sane allocation
SIZE_LIMITS = {"axons_per_core": 2**16, "neurons_per_core": 2**16, "mesh_x": 2**12, "mesh_y": 2**12,
               "board_x": 2**10, "board_y": 2**10, "synapse_prob_den": 2**16, "alpha_min": 2**31 - 1,
               "delay_min": 127}


@dataclass(frozen=True)
class EnergyModel:
    """Per-event energy costs in picojoules, each default with its source.

    The estimate is a model, not a measurement: reports give the counts as well as the total so a
    user can plug in other costs.
    """

    # Merolla et al. 2014 (Science 345:668), TrueNorth: 26 pJ per synaptic event.
    synaptic_event_pj: float = 26.0
    # Assumption: a neuron's leak/threshold update costs about as much as one synaptic event
    # (the same SRAM read-modify-write of the neuron state); no published per-update figure.
    neuron_update_pj: float = 26.0
    # Assumption: injecting a spike packet into the router, same order as a synaptic event.
    spike_pj: float = 26.0
    # Assumption: one router hop on the mesh; Merolla et al. 2014 report spike transport as a
    # small share of active power, we take 2.3 pJ/hop as an order-of-magnitude figure.
    hop_pj: float = 2.3
    # Assumption: leaving the chip through the merge-split port costs about 100 hops.
    chip_crossing_pj: float = 230.0
    # Derived: ~40 mW passive power of a 4096-core chip (Merolla et al. 2014 report 63-72 mW in
    # total at a 1 kHz tick), split over cores and ticks: 40e-3 W / 4096 / 1000 Hz ~ 9.8 nJ.
    static_core_tick_pj: float = 9800.0


@dataclass(frozen=True)
class ChipSpec:
    """Limits of a TrueNorth-like chip and of the board of chips it sits on."""

    name: str = "truenorth"
    axons_per_core: int = 256
    neurons_per_core: int = 256
    axon_types: int = 4
    weight_min: int = -255
    weight_max: int = 255
    leak_min: int = -255
    leak_max: int = 255
    alpha_min: int = 1
    alpha_max: int = 2**18 - 1
    beta_min: int = 0
    beta_max: int = 2**18 - 1
    v_min: int = -(2**19)
    v_max: int = 2**19 - 1
    delay_min: int = 1
    delay_max: int = 15
    mesh_x: int = 64
    mesh_y: int = 64
    board_x: int = 1
    board_y: int = 1
    # Stochastic synapses draw a byte: weight s adds sign(s) with probability |s| / 256.
    synapse_prob_den: int = 256
    energy: EnergyModel = field(default_factory=EnergyModel)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ construction
    @classmethod
    def truenorth(cls, board_x: int = 1, board_y: int = 1) -> "ChipSpec":
        """The default TrueNorth-like chip (on a board of ``board_x`` x ``board_y`` chips)."""
        return cls(board_x=board_x, board_y=board_y)

    @classmethod
    def named(cls, name: str) -> "ChipSpec":
        """A chip by name (``truenorth``, ``truenorth-2x2`` ...) or from a JSON file path."""
        if name == "truenorth":
            return cls.truenorth()
        if name.startswith("truenorth-") and "x" in name[len("truenorth-"):]:
            bx, _, by = name[len("truenorth-"):].partition("x")
            if bx.isdigit() and by.isdigit():
                return cls.truenorth(int(bx), int(by))
        path = Path(name)
        if path.suffix == ".json" or path.exists():
            if not path.is_file():
                raise ChipSpecError(f"chip spec file {name!r} does not exist; pass an existing JSON "
                                    f"file or a chip name such as 'truenorth' or 'truenorth-2x2'")
            return cls.from_json(path.read_text())
        if name.endswith("-auto"):
            raise ChipSpecError(f"chip {name!r}: a board chosen to fit ('-auto') only exists when compiling "
                                f"(crossmap compile --chip {name}); here name a board such as 'truenorth' or "
                                f"'truenorth-2x2'")
        raise ChipSpecError(f"unknown chip {name!r}; available: 'truenorth', 'truenorth-BXxBY' "
                            f"(a board of BX x BY chips, e.g. 'truenorth-2x2'), or a JSON file path")

    def replace(self, **changes: Any) -> "ChipSpec":
        """A copy of this spec with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """All fields as plain JSON types."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """The spec as a JSON document that ``from_json`` reads back."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ChipSpec":
        """A spec from a dict; unknown keys are an error, missing keys take the defaults."""
        if not isinstance(data, dict):
            raise ChipSpecError(f"a chip spec must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ChipSpecError(f"chip spec has unknown fields {unknown}; known fields: {sorted(known)}")
        data = dict(data)
        energy = data.pop("energy", {}) or {}
        ekeys = {f.name for f in dataclasses.fields(EnergyModel)}
        if not isinstance(energy, dict) or set(energy) - ekeys:
            raise ChipSpecError(f"chip spec field 'energy' must be an object with keys from {sorted(ekeys)}")
        for key, value in energy.items():
            if (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
                    or not 0 <= value <= MAX_EVENT_PJ):
                raise ChipSpecError(f"energy.{key} = {value!r} must be a finite number in [0, {MAX_EVENT_PJ:g}] (pJ)")
        for key, value in data.items():
            if key == "name" and (not isinstance(value, str) or len(value) > 200):
                raise ChipSpecError(f"chip spec field 'name' = {str(value)[:40]!r} must be a string of at most 200 "
                                    f"characters")
            if key != "name" and (not isinstance(value, int) or isinstance(value, bool)):
                raise ChipSpecError(f"chip spec field {key!r} = {value!r} must be an integer")
        return cls(**data, energy=EnergyModel(**energy))

    @classmethod
    def from_json(cls, text: str) -> "ChipSpec":
        """A spec from the JSON text written by ``to_json``."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ChipSpecError(f"chip spec is not valid JSON: {exc}; write it with ChipSpec.to_json()") from None
        return cls.from_dict(data)

    # ------------------------------------------------------------------ derived sizes
    @property
    def cores_per_chip(self) -> int:
        """Cores on one chip (mesh_x * mesh_y)."""
        return self.mesh_x * self.mesh_y

    @property
    def grid_x(self) -> int:
        """Width of the whole board in cores."""
        return self.mesh_x * self.board_x

    @property
    def grid_y(self) -> int:
        """Height of the whole board in cores."""
        return self.mesh_y * self.board_y

    @property
    def max_cores(self) -> int:
        """Cores on the whole board."""
        return self.grid_x * self.grid_y

    @overload
    def chip_of(self, x: int, y: int) -> int: ...

    @overload
    def chip_of(self, x: np.ndarray, y: np.ndarray) -> np.ndarray: ...

    def chip_of(self, x: np.ndarray | int, y: np.ndarray | int) -> np.ndarray | int:
        """Chip index (row-major over the board) of global core coordinates (ints or arrays)."""
        return (y // self.mesh_y) * self.board_x + (x // self.mesh_x)

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise ``ChipSpecError`` if any field is impossible or inconsistent."""
        positive = ["axons_per_core", "neurons_per_core", "axon_types", "mesh_x", "mesh_y",
                    "board_x", "board_y", "synapse_prob_den", "alpha_min", "delay_min"]
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ChipSpecError(f"chip spec {self.name!r}: {name} = {value!r} must be an integer >= 1")
        for name, most in SIZE_LIMITS.items():
            if getattr(self, name) > most:
                raise ChipSpecError(f"chip spec {self.name!r}: {name} = {getattr(self, name)} is above {most}, the "
                                    f"largest crossmap handles")
        pairs = [("weight_min", "weight_max"), ("leak_min", "leak_max"), ("alpha_min", "alpha_max"),
                 ("beta_min", "beta_max"), ("v_min", "v_max"), ("delay_min", "delay_max")]
        for lo, hi in pairs:
            if getattr(self, lo) > getattr(self, hi):
                raise ChipSpecError(f"chip spec {self.name!r}: {lo} = {getattr(self, lo)} is above "
                                    f"{hi} = {getattr(self, hi)}; make the range non-empty")
        if self.beta_min < 0:
            raise ChipSpecError(f"chip spec {self.name!r}: beta_min = {self.beta_min} must be >= 0 "
                                f"(beta is the magnitude of the negative floor)")
        if not (self.v_min < 0 < self.v_max):
            raise ChipSpecError(f"chip spec {self.name!r}: membrane range [{self.v_min}, {self.v_max}] "
                                f"must contain 0")
        limit = 2**31 - 1
        for name in ("v_min", "v_max", "alpha_max", "beta_max", "weight_min", "weight_max", "leak_min", "leak_max",
                     "beta_min", "delay_max"):
            if abs(getattr(self, name)) > limit:
                raise ChipSpecError(f"chip spec {self.name!r}: |{name}| = {abs(getattr(self, name))} "
                                    f"exceeds the 32-bit state range {limit}")
        if self.axon_types > 127 or self.delay_max > 127:
            raise ChipSpecError(f"chip spec {self.name!r}: axon_types = {self.axon_types} and delay_max = "
                                f"{self.delay_max} must be at most 127")
        biggest = self.axons_per_core * max(abs(self.weight_min), abs(self.weight_max))
        if biggest >= 2**24:
            raise ChipSpecError(f"chip spec {self.name!r}: a synaptic sum can reach {biggest}, beyond "
                                f"float32's exact integers (2^24); reduce axons_per_core or the weight range")

    # ------------------------------------------------------------------ utilization
    def utilization(self, program: Program) -> dict[str, tuple[int, int]]:
        """(used, available) per resource of a program on this chip: cores, axons, neurons
        (``Program.used_neurons``), synapses, chips."""
        import numpy as np

        cores = program.num_cores
        used_axons = int(np.count_nonzero(program.crossbar.any(axis=2)))
        used_neurons = int(np.count_nonzero(program.used_neurons()))
        synapses = int(np.count_nonzero(program.crossbar))
        chips = len({int(c) for c in self.chip_of(program.core_xy[:, 0], program.core_xy[:, 1])}) if cores else 0
        return {
            "cores": (cores, self.max_cores),
            "axons": (used_axons, cores * self.axons_per_core),
            "neurons": (used_neurons, cores * self.neurons_per_core),
            "synapses": (synapses, cores * self.axons_per_core * self.neurons_per_core),
            "chips": (chips, self.board_x * self.board_y),
        }


def smallest_board(chip: ChipSpec, cores: int) -> tuple[int, int]:
    """The board (chips across, chips down) with the fewest chips, then the squarest, holding
    ``cores`` cores."""
    chips = max(1, math.ceil(cores / chip.cores_per_chip))
    boards = [(bx, math.ceil(chips / bx)) for bx in range(1, chips + 1)]
    return min(boards, key=lambda b: (b[0] * b[1], abs(b[0] - b[1]), -b[0]))


def check_fits(chip: ChipSpec, cores: int, stage: str = "place") -> None:
    """Raise ``ResourceError`` when ``cores`` do not fit the board of ``chip``, naming the
    smallest board that holds them."""
    if cores <= chip.max_cores:
        return
    bx, by = smallest_board(chip, cores)
    raise ResourceError(f"{stage}: the program needs {cores} cores, the board of chip spec {chip.name!r} "
                        f"({chip.board_x} x {chip.board_y} chips of {chip.mesh_x} x {chip.mesh_y} cores) has "
                        f"{chip.max_cores}; the smallest board that fits is {bx} x {by} chips "
                        f"({bx * by * chip.cores_per_chip} cores): compile with --chip truenorth-{bx}x{by} "
                        f"(or a chip JSON with board_x = {bx}, board_y = {by})")
