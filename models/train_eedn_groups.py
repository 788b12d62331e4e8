"""An Eedn-style CNN whose filter groups are shaped like cores (Esser et al. 2016).

A TrueNorth core reads at most 256 input lines and holds 256 neurons. Its synapses are binary and
each neuron has one integer weight per axon type, so a layer in the chip's native form has
binary connections times one sign per (neuron, axon type): weights in {-1, 0, 1}, one axon per
input line. The cost of a layer on the chip is set by how many cores read each input neuron (a
neuron read by k cores must be copied k times), so the network is built so that each hidden
neuron is read by exactly one core:

  layer  kernel  stride pad  groups  channels     output  fan-in per filter
  c1     4x4     2      1    1         1 ->  128  14x14    16
  c2     2x2     2      0    2       128 ->  256   7x7    256 (64 channels x 4 taps)
  c3     1x1     1      0    1       256 ->  256   7x7    256
  c4     2x2     2      1    4       256 ->  512   4x4    256
  c5     2x2     2      0    8       512 ->  512   2x2    256
  c6     2x2     2      0    8       512 ->  512   1x1    256 (sees the whole image)
  c7     1x1     1      0    2       512 ->  500   1x1    256 (the voters)

``--layout full`` keeps more of the image at full resolution: c1 becomes a 3x3 stride-1 layer of
64 channels at 28x28 with free ternary weights (a + and a - axon per pixel), and a 2x2 stride-2
layer of 128 channels makes the 14x14 map; then c2, c4, c5, c6, c7 as above (the 1x1 c3 is left
out to bound the training time): 7 step layers, 586 cores on the chip against 343.
``--layout wide`` doubles the channels from c2 on (512, 512, 1024, 1024, 1024, 1000 voters) in
twice the groups, so every filter still reads 256 lines; about 1.6x the time per training step.

The 2x2 stride-2 kernels do not overlap and the 1x1 kernels read one position, so a neuron has
one reader position, and one group's filters at one position fit one core. Channels are shuffled
between grouped layers (ShuffleNet style) so that information crosses groups; the shuffle is
free on the chip (a neuron's target is any axon) and is exported as a ``Gather`` on the channel
axis in front of the grouped Conv. Voter c counts for class c % 10 (50 voters per class).

Axon types: 1x1 kernels give input channel j type j mod 4; larger kernels with an even stride
add the parity of the input row and column (the checkerboard of Esser et al. 2015 for pixels),
which every output position sees the same way.

``--input-levels K`` thresholds every pixel at K levels k / (K + 1) (a thermometer code): c1
reads K input lines per tap (48 for K = 3), one spike channel per (pixel, level) on the chip.

Training: latent connection probabilities p in [0, 1] (connected when p > 1/2) and latent signs,
both with straight-through gradients; a batch norm with scale 1 folded into an integer
threshold; a straight-through step; random shifts of up to ``--shift`` pixels (default 1);
5,000 training images held out to keep the best epoch (``--val``).

``--spike-levels L`` gives every hidden neuron L - 1 siblings with the same filter and higher
thresholds (at ``SPIKE_LEVEL_GAP`` batch-norm units apart): a unit sends L spike lines, its value
is how many fire (0..L), and the next layer reads all L lines with the unit's weight. Every filter
still reads at most 256 lines, so from c2 on each layer has L times the groups (a filter reads 1/L
of the units it reads at L = 1, each at L + 1 values); the compute per step stays about the same
and c1..c6 have L times the neurons on the chip. The channel counts of the three layouts divide
into 2, 4 and 8 times their groups but not 3 times: L is 1, 2, 4 or 8 (``spike_level_choices``;
at L = 4 and 8 the 500 voters become 480 and the wide layout's 1,000 become 960, which split evenly
into the groups and the classes: ``voter_count``).

``--init FILE.onnx --epochs 0 --finetune N`` fine-tunes a network this recipe exported: its
weights and thresholds are loaded exactly (``load_exported``), then N epochs train with the batch
norms frozen, i.e. at the thresholds the chip uses.

Usage: python models/train_eedn_groups.py [--epochs E] [--seed S] [--layout base|full|wide] [--input-levels K]
       [--spike-levels L] [--finetune N] [--init FILE.onnx] [--out models/eedn_groups.onnx]
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import common

# (out channels, kernel, stride, pad, groups): every group reads at most 256 lines
LAYERS = [(128, 4, 2, 1, 1), (256, 2, 2, 0, 2), (256, 1, 1, 0, 1), (512, 2, 2, 1, 4), (512, 2, 2, 0, 8),
          (512, 2, 2, 0, 8), (500, 1, 1, 0, 2)]
# --layout full: a 3x3 layer at full resolution (free ternary weights: a + and a - axon per pixel)
# and a 2x2 stride-2 layer make the 14x14x128 map that c1 makes above; then the same layers without
# the 1x1 c3 (seven step layers again, at about 1.7x the training time)
# --layout wide: twice the channels from c2 on, in twice the groups (each filter still reads 256 lines)
LAYOUTS = {"base": LAYERS, "full": [(64, 3, 1, 1, 1), (128, 2, 2, 0, 1), LAYERS[1]] + LAYERS[3:],
           "wide": [LAYERS[0], (512, 2, 2, 0, 2), (512, 1, 1, 0, 2), (1024, 2, 2, 1, 8), (1024, 2, 2, 0, 16),
                    (1024, 2, 2, 0, 16), (1000, 1, 1, 0, 4)]}
TYPES = 4
MAX_FAN_IN = 256
SPIKE_LEVEL_GAP = 1.0  # --spike-levels: batch-norm units between the thresholds of a unit's spike lines


def line_types(per_group: int, k: int, stride: int, pad: int) -> np.ndarray:
    """(per_group, k, k) axon type of each input line of a group. With an even stride the row and
    column parity of the line's input position is fixed by the tap, so a core holding several
    output positions still sees one type per line: type = (channel + 2 row parity + column
    parity) mod 4 (for the pixels of c1, Esser 2015's checkerboard types). A 1x1 kernel reads one
    position: type = channel mod 4."""
    channel = np.arange(per_group)[:, None, None]
    if k == 1:
        return np.broadcast_to(channel % TYPES, (per_group, 1, 1)).copy()
    if stride % 2:
        raise ValueError("kernels larger than 1x1 need an even stride for position-independent line types")
    tap = np.arange(k)
    row, col = ((tap - pad) % 2)[None, :, None], ((tap - pad) % 2)[None, None, :]
    return (channel + 2 * row + col) % TYPES


class CoreConv(nn.Module):
    """A grouped conv in TrueNorth's native form: binary connections (latent p > 1/2) times one
    sign per (neuron, axon type), so each input line needs one axon and a core reads 256 lines;
    followed by a foldable batch norm and a step neuron (``out_levels`` > 1: that many steps at
    thresholds ``SPIKE_LEVEL_GAP`` apart, the unit's value their count). ``in_levels``: spike lines
    per input channel (the previous layer's ``out_levels``), all read with the channel's weight."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, pad: int, groups: int, floor: float | None,
                 shift: float = 0.0, levels: int = 1, free: bool = False, in_levels: int = 1,
                 out_levels: int = 1) -> None:
        super().__init__()
        per_group = cin // groups
        self.in_levels, self.out_levels = in_levels, out_levels
        lines = per_group * k * k * (2 if free else 1) * in_levels
        if lines > MAX_FAN_IN or cin % groups or cout % groups:
            raise ValueError(f"conv {cin}->{cout} k{k} groups {groups}: {lines} axons per filter "
                             f"(max {MAX_FAN_IN}), channels must divide by the groups")
        self.stride, self.pad, self.groups, self.levels, self.free = stride, pad, groups, levels, free
        if free:  # latent ternary weights: every input line gets a + and a - axon on the chip, so the
            # sign picks the axon and no line types need respecting
            self.w = nn.Parameter(torch.rand(cout, per_group, k, k) * 2.0 - 1.0)
        else:
            self.register_buffer("types", torch.from_numpy(line_types(per_group, k, stride, pad)).long())
            self.p = nn.Parameter(torch.rand(cout, per_group, k, k))
            sign = torch.ones(cout, TYPES)
            sign[torch.rand(cout, TYPES).argsort(1) >= TYPES // 2] = -1.0  # two + and two - types
            self.sign = nn.Parameter(sign * (0.1 if levels == 1 else 1.0))
        self.norm = common.ThresholdNorm(cout, floor, spatial=True, shift=shift)

    def weight(self) -> torch.Tensor:
        """(cout, cin / groups, k, k) integer weights: connection times its type's weight (a sign,
        or an integer in -levels..levels), or free ternary weights."""
        if self.free:
            return common.quantize(self.w, "ternary")
        kind = "sign" if self.levels == 1 else "integer"
        return common.quantize(self.p, "binary") * common.quantize(self.sign, kind)[:, self.types]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Spikes of the layer (``out_levels`` > 1: per unit, how many of its spike lines fire)."""
        s = nn.functional.conv2d(x, self.weight(), stride=self.stride, padding=self.pad, groups=self.groups)
        z = self.norm(s)
        if self.out_levels == 1:
            return common.step(z)
        return sum(common.step(z - level * SPIKE_LEVEL_GAP) for level in range(self.out_levels))

    def thresholds(self) -> np.ndarray:
        """(cout, out_levels) integer-sum thresholds of the unit's spike lines: line l fires iff s > c_l."""
        std = np.sqrt(self.norm.bn.running_var.detach().double().numpy() + self.norm.bn.eps)
        return self.norm.threshold()[:, None] + np.arange(self.out_levels)[None, :] * SPIKE_LEVEL_GAP * std[:, None]

    def constrain(self) -> None:
        """Latent parameters in range; threshold floor."""
        with torch.no_grad():
            if self.free:
                self.w.clamp_(-1.0, 1.0)
            else:
                self.p.clamp_(0.0, 1.0)
                bound = 1.0 if self.levels == 1 else self.levels + 0.49
                self.sign.clamp_(-bound, bound)
        self.norm.constrain()


def shuffle_order(channels: int, groups: int) -> np.ndarray:
    """The channel order that deals the channels of ``groups`` consecutive groups out in turn:
    the next layer's groups (contiguous blocks of this order) each read from every group."""
    return np.arange(channels).reshape(groups, channels // groups).T.reshape(-1)


def voter_count(voters: int, groups: int) -> int:
    """The most voters, at most ``voters``, that split evenly into ``groups`` groups and, within
    each group, evenly over the ten classes (of 500: 500 for 2 and 4 groups, 480 for 8 and 16)."""
    step = int(np.lcm(groups, 10))
    return voters // step * step


def spike_level_choices(layout: str, most: int = 8) -> list[int]:
    """The ``--spike-levels`` L (up to ``most``) for which every layer from c2 on can have L times
    its groups: its input channels and (but for the voters, see ``voter_count``) its output
    channels divide by them."""
    layers = LAYOUTS[layout]
    hidden = layers[1:-1]
    return [level for level in range(1, most + 1)
            if all(cin % (groups * level) == 0 for (cin, *_), (_, _, _, _, groups) in zip(layers, layers[1:]))
            and all(cout % (groups * level) == 0 for cout, _, _, _, groups in hidden)
            and voter_count(layers[-1][0], layers[-1][4] * level) > 0]


class EednGroups(nn.Module):
    """Core-shaped grouped convolutions (binary connections x sign per axon type) with channel
    shuffles, step neurons and a class readout."""

    def __init__(self, floor: float | None, levels: int = 1, free_first: bool = False,
                 layout: str = "base", input_thresholds: tuple[float, ...] = (0.5,), spike_levels: int = 1) -> None:
        super().__init__()
        self.input_thresholds, self.spike_levels = tuple(input_thresholds), spike_levels
        if layout not in LAYOUTS:
            raise ValueError(f"layout {layout!r}: choose one of {sorted(LAYOUTS)}")
        choices = spike_level_choices(layout)
        if spike_levels not in choices:
            raise ValueError(f"--spike-levels {spike_levels}: with --layout {layout} every layer from c2 on needs "
                             f"channels that divide into L times its groups; choose one of {choices}")
        # a 3x3 stride-1 kernel has no position-free line types
        self.free_first = free_first or layout == "full"
        self.specs, self.orders, cin, size, prev_groups = [], [], len(self.input_thresholds), 28, 1
        last = len(LAYOUTS[layout]) - 1  # the voters fire once: their spikes are counted
        for i, (cout, k, stride, pad, groups) in enumerate(LAYOUTS[layout]):
            groups *= spike_levels if i else 1  # every filter keeps its 256 lines
            cout = voter_count(cout, groups) if i == last else cout
            self.specs.append((cin, cout, k, stride, pad, groups))
            self.orders.append(shuffle_order(cin, prev_groups))
            cin, size, prev_groups = cout, (size + 2 * pad - k) // stride + 1, groups
        shifts = [0.0] * (len(self.specs) - 1) + [common.OUTPUT_SHIFT]
        self.convs = nn.ModuleList(CoreConv(*spec, floor, shift, levels, self.free_first and i == 0,
                                            in_levels=spike_levels if i else 1,
                                            out_levels=spike_levels if i < last else 1)
                                   for i, (spec, shift) in enumerate(zip(self.specs, shifts)))
        for i, order in enumerate(self.orders):
            self.register_buffer(f"order{i}", torch.from_numpy(order))
        common.add_vote_readout(self, np.repeat(np.arange(cin) % 10, size * size))  # (c, h, w) order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Spike counts per class."""
        for i, conv in enumerate(self.convs):
            x = conv(x.index_select(1, getattr(self, f"order{i}")))
        return x.flatten(1) @ self.readout

    def constrain(self) -> None:
        """Project parameters into range."""
        for conv in self.convs:
            conv.constrain()

    def to_onnx(self, metadata: dict[str, str], name: str):
        """Chip-ready ONNX: encoding, then per layer the channel shuffle (``Gather`` on the channel
        axis), a grouped Conv (weights in {-1, 0, 1}, integer-threshold bias) and a step; readout.
        With spike levels a unit's L spike channels are adjacent (channel u L + l): its filter
        repeats L times with rising thresholds, and the next layer's weight repeats per line."""
        builder = common.GraphBuilder(name)
        h = builder.encode_input(self.input_thresholds)
        with torch.no_grad():
            for i, (conv, (_, _, _, stride, pad, groups)) in enumerate(zip(self.convs, self.specs)):
                lines = np.arange(conv.in_levels)
                order = (self.orders[i][:, None] * conv.in_levels + lines[None, :]).reshape(-1)
                if np.any(order != np.arange(order.size)):
                    h = builder.op("Gather", [h, builder.const(f"c{i + 1}.shuffle", order.astype(np.int64))],
                                   name=f"c{i + 1}.shuffled", axis=1)
                bias = common.integer_bias(conv.thresholds()).reshape(-1)
                weight = np.repeat(np.repeat(conv.weight().numpy(), conv.in_levels, axis=1), conv.out_levels, axis=0)
                h = builder.step(builder.conv(h, weight, bias, f"c{i + 1}", stride=stride, pad=pad, group=groups),
                                 name=f"c{i + 1}.spikes")
        counts = builder.readout(builder.flatten(h), self.classes)
        return builder.model(counts, [10], metadata)


@torch.no_grad()
def load_exported(model: EednGroups, arrays: dict[str, np.ndarray], x: torch.Tensor, y: torch.Tensor) -> None:
    """Start ``model`` from the initializers ``arrays`` of a network this recipe exported
    (``--init``): latent connections and signs near their rounding points
    (``common.loaded_connections``, ``common.loaded_signs``; free ternary weights at 0 or
    +-(1/2 + margin)), so that fine-tuning can flip them; each batch norm's statistics measured
    on the grey images ``x`` (the layer's integer sums, earlier layers firing at the file's
    thresholds) with the shift that keeps the file's threshold exactly; the loss scale fitted to
    the class counts on ``x`` and labels ``y``. The model then predicts exactly what the file does."""
    if model.spike_levels != 1:
        raise SystemExit(f"--init with --spike-levels {model.spike_levels}: only networks of one spike line per "
                         "neuron (--spike-levels 1) can be loaded")
    h = common.binarize_input(x, model.input_thresholds)
    for i, (conv, (_, _, _, stride, pad, groups)) in enumerate(zip(model.convs, model.specs)):
        w, threshold = common.exported_layer(arrays, f"c{i + 1}", tuple(conv.weight().shape),
                                             "--layout and --input-levels")
        if conv.free:
            conv.w.copy_(w * (0.5 + common.INIT_MARGIN))
        else:
            if conv.levels != 1:
                raise SystemExit(f"--init with --levels {conv.levels}: only sign weights (--levels 1) can be loaded")
            conv.p.copy_(common.loaded_connections(w))
            per_type = torch.stack([(w * (conv.types == t)).sum((1, 2, 3)) for t in range(TYPES)], dim=1)
            conv.sign.copy_(common.loaded_signs(per_type, conv.sign))
        s = nn.functional.conv2d(h.index_select(1, getattr(model, f"order{i}")), conv.weight(), stride=stride,
                                 padding=pad, groups=groups)
        conv.norm.load(s, threshold)
        h = (s > threshold[None, :, None, None]).float()
    model.log_scale.fill_(float(np.log(_fit_scale(h.flatten(1) @ model.readout, y))))


def _fit_scale(counts: torch.Tensor, labels: torch.Tensor) -> float:
    """The scale of the class counts with the lowest cross-entropy on ``labels`` (a grid search)."""
    scales = np.geomspace(0.01, 10.0, 61)
    losses = [float(nn.functional.cross_entropy(float(a) * counts, labels)) for a in scales]
    return float(scales[int(np.argmin(losses))])


def main() -> None:
    """Train, evaluate, export."""
    def extra(parser):
        common.add_distortion_args(parser, shift=1)
        parser.add_argument("--levels", type=int, default=1,
                            help="largest |weight| of an axon type (1: a sign per neuron and type; the chip "
                                 "allows any integer weight per type at no cost in axons)")
        parser.add_argument("--free-first", action="store_true",
                            help="free ternary weights in c1 (two axons per pixel on the chip, one per sign)")
        parser.add_argument("--layout", choices=sorted(LAYOUTS), default="base",
                            help="base: c1 4x4 stride 2 (the table above); full: c1 3x3 stride 1 at 28x28 with "
                                 "free ternary weights and a 2x2 stride-2 layer in front of the base's c2; wide: "
                                 "twice the base's channels from c2 on")
        parser.add_argument("--init", default=None,
                            help="start from this ONNX file, exported by this recipe with the same --layout and "
                                 "--input-levels (with --epochs 0 --finetune N: fine-tune a trained network; keep "
                                 "its --seed so that its held-out images stay held out)")
        parser.add_argument("--input-levels", type=int, default=1,
                            help="input thresholds per pixel (a thermometer code, thresholds k / (levels + 1)): "
                                 "each pixel drives one input line per level, so c1 reads levels x its taps")
        parser.add_argument("--spike-levels", type=int, default=1,
                            help="spike lines per hidden neuron, at rising thresholds (the neuron's value is how "
                                 "many fire); from c2 on each layer has this many times the groups so that a filter "
                                 "still reads 256 lines (1, 2, 4 or 8: the layouts' channels do not divide by "
                                 "3 x groups)")

    args = common.parse_args("eedn_groups", epochs=30, lr=0.01, batch_size=200, min_threshold="none", extra=extra,
                             val=5000)
    common.setup(args)
    try:  # before the data is read: an option the layout cannot take ends here, with its message
        model = EednGroups(args.min_threshold, args.levels, args.free_first, args.layout,
                           common.thermometer(args.input_levels), args.spike_levels)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    data = common.load_data(args)
    if args.init is not None:
        common.start_from(model, args.init, data, load_exported)
    per_type = "sign" if args.levels == 1 else f"integer weight in -{args.levels}..{args.levels}"
    weights = f"binary connections x {per_type} per axon type" + (", c1 free ternary" if model.free_first else "")
    common.train_vote_network(model, args, data, "binary connections", weights=weights, shuffle="ShuffleNet")


if __name__ == "__main__":
    main()
