"""Keeping layers aligned when splitters add a tick.

Every group ``g`` gets a shift ``s_g`` >= 0: on the chip it does at tick ``t + s_g`` what the
deployed network does at tick ``t``. A spike of neuron n (group src, delay d) bound for group g
must then take ``d + s_g - s_src`` ticks: one hop for a direct target (within the chip's delay
range), two hops through a splitter (each within the range). Groups that read input channels are
pinned to 0 (inputs arrive when they arrive), and so are groups whose neurons are not at rest
without input (a leak or initial potential that changes V or fires would run ahead). All output
groups share one shift, which is added to the program's latency. These are difference
constraints; the least solution is found by longest-path relaxation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from crossmap.chip import ChipSpec
from crossmap.deployed import DeployedNetwork, NeuronGroup
from crossmap.errors import ResourceError

INPUT_NODE = -1


def at_rest(group: NeuronGroup, chip: ChipSpec) -> bool:
    """True when every neuron of the group, with no input, keeps its initial potential and does
    not fire (so starting it later changes nothing)."""
    v0 = group.initial_v.astype(np.int64)
    v = np.clip(v0 + group.leak, chip.v_min, chip.v_max)
    fires = v >= group.alpha
    v = np.where(v < -group.beta.astype(np.int64), -group.beta.astype(np.int64), v)
    return bool(np.all(~fires & (v == v0)))


@dataclass
class ShiftConstraints:
    """Difference constraints ``x[v] >= x[u] + c`` over groups (node -1 is the input, fixed at 0)."""

    num_groups: int
    lower: dict[tuple[int, int], int] = field(default_factory=dict)
    pinned: dict[int, str] = field(default_factory=dict)  # group -> why it cannot shift

    def at_least(self, u: int, v: int, c: int) -> None:
        """x[v] >= x[u] + c."""
        if self.lower.get((u, v), -10**9) < c:
            self.lower[(u, v)] = c

    def within(self, u: int, v: int, lo: int, hi: int) -> None:
        """lo <= x[v] - x[u] <= hi."""
        self.at_least(u, v, lo)
        self.at_least(v, u, -hi)

    def equal(self, groups: list[int]) -> None:
        """All the given groups share one shift."""
        for a, b in zip(groups, groups[1:]):
            self.within(a, b, 0, 0)

    def direct(self, src: int, consumers: list[int], delay: int, chip: ChipSpec) -> None:
        """A neuron of ``src`` with deployed ``delay`` reaching one axon read by ``consumers``."""
        self.equal(consumers)
        for g in consumers:
            self.within(src, g, chip.delay_min - delay, chip.delay_max - delay)

    def split(self, src: int, consumer_sets: list[list[int]], delay: int, chip: ChipSpec) -> None:
        """A neuron reaching several axons through one splitter set (two hops with a shared first)."""
        everyone = sorted({g for s in consumer_sets for g in s})
        for s in consumer_sets:
            self.equal(s)
        for g in everyone:
            self.within(src, g, 2 * chip.delay_min - delay, 2 * chip.delay_max - delay)
        spread = chip.delay_max - chip.delay_min
        for a, b in combinations(everyone, 2):
            self.within(a, b, -spread, spread)

    def solve(self, names: list[str], chip: ChipSpec) -> list[int]:
        """The least shifts, or ResourceError naming what cannot be balanced."""
        x = [0] * self.num_groups
        edges = sorted(self.lower.items())
        for _ in range(self.num_groups + 2):
            changed = False
            for (u, v), c in edges:
                if v == INPUT_NODE:
                    continue
                base = 0 if u == INPUT_NODE else x[u]
                if x[v] < base + c:
                    x[v] = base + c
                    changed = True
            if not changed:
                break
        else:
            raise ResourceError(
                f"fanout=splitter: the extra splitter tick cannot be balanced between groups {names}: all output "
                f"groups must share one shift and every hop must stay within the chip's delay range "
                f"[{chip.delay_min}, {chip.delay_max}]. Use fanout=copy or fanout=auto, or give the neurons that "
                f"feed splitters a delay of at least 2")
        for g, why in sorted(self.pinned.items()):
            if x[g] > 0:
                raise ResourceError(
                    f"fanout=splitter: group {names[g]!r} would have to start {x[g]} tick(s) late to stay aligned "
                    f"with its splitter-fed inputs, but {why}. Use fanout=copy or fanout=auto, or give the neurons "
                    f"feeding it a delay of at least 2 so the splitter hop fits in their delay")
        return x


def pin_groups(cons: ShiftConstraints, net: DeployedNetwork, input_fed: set[int]) -> None:
    """Pin groups that read inputs directly or are not at rest without input."""
    for g, group in enumerate(net.groups):
        if g in input_fed:
            cons.pinned[g] = "it reads input channels directly, whose timing is fixed"
        elif not at_rest(group, net.chip):
            cons.pinned[g] = ("its neurons are not at rest without input (leak or initial potential changes V "
                              "or fires), so starting it later would change its spikes")
