"""The torch backend: the chip model of docs/chip-model.md on a torch device (CPU or CUDA), bit for
bit equal to the ``reference`` backend (see its docstring for the rules).

The same code runs on every device; only where the tensors live differs. Layout: membrane
potentials ``V`` are (cores, batch, neurons); axon activity is a ring buffer ``ring[(t + delay) % D]``
of (cores * axons, batch) spike counts (several sources on one axon add up and are clamped to 1
when the slot is read: the OR-merge); neuron spikes are routed as (cores * neurons, batch) rows
with ``index_add_``.

Synaptic integration has two exact paths, chosen per block of cores and tick from the measured
activity (``path="auto"``) or forced (``path="dense"`` / ``path="sparse"``):

- dense: ``S[c] = x[c]^T @ W_eff[c]`` as a batched matmul over the cores with an active axon
  (idle cores are skipped: in a layered network most cores of a tick).
- sparse: the rows of ``W_eff`` of the active (axon, sample) pairs summed per (core, sample), as
  one ``embedding_bag`` (bags of row indices, summed): work in proportion to the activity instead
  of to the crossbar. On the CPU the bags come from numpy and the rows of binary and ternary
  networks from a byte table (``crossmap.backends.sparse``, shared with the numpy emulator).
  ``auto`` takes it for blocks whose busy cores have at most ``SPARSE_MAX_ACTIVE`` of their
  (axon, sample) pairs active, on the CPU (on CUDA the dense matmul wins at any activity).

Exactness: spikes are 0/1 and weights integers of magnitude at most 255, so every product is an
exact integer and every partial sum an integer below 2^24 (the chip spec checks
``A * max|w| < 2^24``): float32 accumulation is exact in any order. ``precision`` picks the
matmul's input format: ``float32`` (default), ``tf32`` (CUDA tensor cores; exact for integer
weights of magnitude <= 2048, which TF32's 11-bit significand holds) or ``bfloat16`` (CUDA with
float32 output; exact for weights of magnitude <= 256). Membrane potentials use the numpy
emulator's state dtype (float32, or float64 for chips with larger ranges). Stochastic synapses
and thresholds draw from ``torch_prng``, the counter-based PRNG in int64 arithmetic.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from crossmap import prng
from crossmap.errors import CrossmapError

from crossmap.backends.common import COMMON_OPTIONS, RunSpec, prepare_run
from crossmap.backends.result import Result, make_result
from crossmap.backends.routing import Fanin
from crossmap.backends.sparse import bag_sums
from crossmap.backends.tables import Tables, _fingerprint, build_tables

if TYPE_CHECKING:
    import torch

PATHS = ("auto", "dense", "sparse")
PRECISIONS = ("float32", "tf32", "bfloat16")
TORCH_OPTIONS = ("device", "precision", "path")
# auto: the sparse path for blocks of cores with at most this fraction of (axon, sample) pairs
# active (CPU only); on 2 CPUs the sparse path matched torch's dense bmm at about 25-30% (bench_emulator.py)
SPARSE_MAX_ACTIVE = 0.2
# on the CPU the sparse path's bags come from numpy (it finds the set bits of a bool array ~2x
# faster than torch); False runs the device-generic torch code (CUDA's) on the CPU
NUMPY_BAGS_ON_CPU = True
# on the CPU, cores are processed in blocks of this many bytes of float32 (batch x neurons) state
CPU_BLOCK_BYTES = 1 << 20
# stochastic synapse draws per chunk (pairs x samples), to bound the temporaries
_DRAW_CHUNK = 1 << 22


def _torch() -> Any:
    """The torch module, or a CrossmapError saying how to get it."""
    try:
        import torch
    except ImportError:
        raise CrossmapError("the torch backend needs PyTorch, which is not installed; install it with "
                            "`pip install torch` (or use backend='emulator')") from None
    return torch


def resolve_device(device: Any) -> "torch.device":
    """``device`` (``cpu``, ``cuda``, ``cuda:N`` or a torch.device) checked against this machine."""
    torch = _torch()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise CrossmapError(f"torch device {device!r} is not a device name; use 'cpu' or 'cuda' (or 'cuda:N')") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise CrossmapError(f"device {device!r}: this machine has no CUDA device usable by torch "
                                f"{torch.__version__} (torch.cuda.is_available() is False); use device 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise CrossmapError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here; "
                                f"use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    elif dev.type != "cpu":
        raise CrossmapError(f"device {device!r}: the torch backend runs on 'cpu' or 'cuda'")
    return dev


def _full_fanin(fanin: Fanin) -> tuple[np.ndarray, np.ndarray]:
    """Every (source, destination) pair of a Fanin (destinations repeated per source)."""
    if fanin.starts is None:
        return fanin.src, fanin.dst
    counts = np.diff(np.r_[fanin.starts, fanin.src.size])
    return fanin.src, np.repeat(fanin.dst, counts)


class DeviceTables:
    """The numpy emulator's tables as tensors on one device, plus the index vectors of routing."""

    def __init__(self, tab: Tables, device: "torch.device", precision: str) -> None:
        torch = _torch()
        self.device, self.precision = device, precision
        self.C, self.A, self.N = tab.num_cores, tab.num_axons, tab.num_neurons
        self.state_dtype = torch.float32 if tab.state_dtype == np.float32 else torch.float64

        def put(arr: np.ndarray, dtype: Any = None) -> "torch.Tensor":
            t = torch.from_numpy(np.ascontiguousarray(arr))
            return t.to(device=device, dtype=dtype) if dtype is not None else t.to(device)

        self.weights = put(tab.weights)                               # float32 (C, A, N)
        self.weights_bf16 = self.weights.to(torch.bfloat16) if precision == "bfloat16" else None
        self.bags = tab.bag_tables() if device.type == "cpu" else None   # the CPU sparse path's tables
        self.fanout = put(tab.fanout)                                 # float32 (C, 1, A)
        sd = self.state_dtype
        self.alpha = put(tab.alpha, sd)
        self.leak = put(tab.leak, sd) if tab.leak is not None else None
        self.v_low, self.v_high = put(tab.v_low, sd), put(tab.v_high, sd)
        self.reset_modes = tab.reset_modes
        self.reset_to_zero = tab.reset_to_zero
        self.reset_to_value, self.reset_offset = put(tab.reset_to_value, sd), put(tab.reset_offset, sd)
        self.neurons_in_use = tab.neurons_in_use
        self.sth_core, self.sth_neuron = put(tab.sth_core), put(tab.sth_neuron)
        self.sth_alpha, self.sth_mask = put(tab.sth_alpha), put(tab.sth_mask)
        self.ssy_core, self.ssy_axon, self.ssy_neuron = put(tab.ssy_core), put(tab.ssy_axon), put(tab.ssy_neuron)
        self.ssy_row = self.ssy_core * self.A + self.ssy_axon
        self.ssy_target = self.ssy_core * self.N + self.ssy_neuron
        self.ssy_sign, self.ssy_abs = put(tab.ssy_sign), put(tab.ssy_abs)
        self.synapse_prob_den = tab.synapse_prob_den
        routing = tab.routing
        self.ring_size = routing.ring_size
        self.groups = []
        for group in routing.groups:
            src, dst = _full_fanin(group.fanin)
            self.groups.append((group.delay, put(src), put(dst)))
        src, dst = _full_fanin(routing.inputs)
        self.input_src, self.input_dst = put(src), put(dst)
        self.sender_costs = put(routing.sender_costs[:, :, :3], torch.float32)   # (C, N, 3)
        self.port_core, self.port_neuron = put(routing.port_core), put(routing.port_neuron)
        self.port_core_host, self.sth_core_host = routing.port_core, tab.sth_core   # sorted by core
        self.port_id = routing.port_id


def _check_precision(precision: str, device: "torch.device", tab: Tables) -> None:
    if precision not in PRECISIONS:
        raise CrossmapError(f"torch option precision = {precision!r} is not one of {', '.join(PRECISIONS)}")
    biggest = float(np.abs(tab.weights).max()) if tab.weights.size else 0.0
    if precision == "bfloat16":
        if device.type != "cuda":
            raise CrossmapError("precision 'bfloat16' needs a CUDA device (a float32-output bfloat16 matmul); "
                                "use precision 'float32' on the CPU")
        if biggest > 256:
            raise CrossmapError(f"precision 'bfloat16' is exact for weights of magnitude <= 256; this program has "
                                f"{biggest:.0f}; use 'tf32' or 'float32'")
    if precision == "tf32" and biggest > 2048:
        raise CrossmapError(f"precision 'tf32' is exact for weights of magnitude <= 2048; this program has "
                            f"{biggest:.0f}; use 'float32'")


@contextlib.contextmanager
def _matmul_precision(device: "torch.device", precision: str) -> Iterator[None]:
    """CUDA float32 matmuls in TF32 (``tf32``) or full IEEE float32 (otherwise) for the block; the
    previous setting is restored after it (torch's newer ``fp32_precision`` switch where it exists,
    else ``allow_tf32``)."""
    torch = _torch()
    if device.type != "cuda":
        yield
        return
    matmul = torch.backends.cuda.matmul
    tf32 = precision == "tf32"
    try:
        old: Any = matmul.fp32_precision
        matmul.fp32_precision = "tf32" if tf32 else "ieee"
        name = "fp32_precision"
    except (AttributeError, RuntimeError, ValueError, AssertionError):
        old, name = matmul.allow_tf32, "allow_tf32"
        matmul.allow_tf32 = tf32
    try:
        yield
    finally:
        try:
            setattr(matmul, name, old)
        except (RuntimeError, ValueError, AssertionError):
            pass   # a setting torch refuses to restore: leave the one this block set


class TorchEmulator:
    """A program prepared on a torch device: its tables are built and moved once, then
    ``run`` emulates batch after batch (options: seed, sample_offset, record)."""

    def __init__(self, program: Any, device: Any = "cpu", precision: str = "float32", path: str = "auto",
                 tables: Tables | None = None) -> None:
        if path not in PATHS:
            raise CrossmapError(f"torch option path = {path!r} is not one of {', '.join(PATHS)}")
        self.program, self.path = program, path
        self.device = resolve_device(device)
        tab = tables if tables is not None else build_tables(program)
        _check_precision(precision, self.device, tab)
        self.precision = precision
        self.tab = DeviceTables(tab, self.device, precision)

    def run(self, inputs: Any, ticks: int | None = None, **options: Any) -> Result:
        """Emulate the program on input spikes; returns a ``Result``."""
        spec = prepare_run(self.program, inputs, ticks, options, "torch")
        torch = _torch()
        with torch.inference_mode(), _matmul_precision(self.device, "float32"):
            return _Run(self.program, self.tab, spec, self.path).execute()


_cache: dict[str, Any] = {"key": None, "emulator": None}


def clear_cache() -> None:
    """Drop the cached prepared program (and its device memory)."""
    _cache["key"], _cache["emulator"] = None, None


def run(program: Any, inputs: Any, ticks: int | None = None, **options: Any) -> Result:
    """Emulate ``program`` on input spikes with torch (options: seed, sample_offset, record, device =
    cpu | cuda | cuda:N, precision = float32 | tf32 | bfloat16, path = auto | dense | sparse). The
    prepared program of the last call is reused while its arrays are unchanged."""
    unknown = sorted(set(options) - set(COMMON_OPTIONS + TORCH_OPTIONS))
    if unknown:
        raise CrossmapError(f"backend 'torch' has no option {', '.join(unknown)}; its options are: "
                            f"{', '.join(COMMON_OPTIONS + TORCH_OPTIONS)}")
    device = options.pop("device", "cpu")
    precision = options.pop("precision", "float32")
    path = options.pop("path", "auto")
    key = (_fingerprint(program), str(resolve_device(device)), precision)
    emulator = _cache["emulator"]
    if _cache["key"] != key:
        clear_cache()
        emulator = TorchEmulator(program, device, precision)
        _cache["key"], _cache["emulator"] = key, emulator
    if path not in PATHS:
        raise CrossmapError(f"torch option path = {path!r} is not one of {', '.join(PATHS)}")
    emulator.path = path
    emulator.program = program  # same arrays; its ticks and metadata may differ
    return emulator.run(inputs, ticks, **options)


class _Run:
    """One emulation on the device: the state of a batch and the tick loop. Cores are processed
    in blocks: on the CPU blocks sized to stay in cache (as in the numpy emulator), on CUDA one
    block of every core; the code per block is the same."""

    def __init__(self, program: Any, tab: DeviceTables, spec: RunSpec, path: str) -> None:
        torch = _torch()
        self.torch, self.program, self.tab, self.spec, self.path = torch, program, tab, spec, path
        C, A, N, B = tab.C, tab.A, tab.N, spec.batch
        dev = tab.device
        self.B = B
        self.V = tab.alpha.new_empty((C, B, N))
        self.V.copy_(torch.from_numpy(np.ascontiguousarray(program.initial_v)).to(dev, tab.state_dtype)[:, None, :]
                     .expand(C, B, N))
        self.ring = torch.zeros((tab.ring_size, C * A, B), dtype=torch.float32, device=dev)
        self.fired = torch.zeros((C * N, B), dtype=torch.float32, device=dev) if tab.groups else None
        # input spikes (T, channels, B) as 0/1 float32
        self.inputs = torch.from_numpy(np.ascontiguousarray(spec.spikes.transpose(1, 2, 0))).to(dev).float()
        self.port_counts = torch.zeros((tab.port_core.numel(), B), dtype=torch.int64, device=dev)
        self.sent = torch.zeros((B, 3), dtype=torch.float64, device=dev)   # spikes sent, hops, chip crossings
        self.events = torch.zeros(B, dtype=torch.float64, device=dev)
        self.samples = spec.sample_offset + torch.arange(B, dtype=torch.int64, device=dev)
        self.recorded: list["torch.Tensor"] = []
        self.sparse_allowed = {"auto": dev.type == "cpu", "dense": False, "sparse": True}[path]
        self.sparse_max = SPARSE_MAX_ACTIVE if path == "auto" else 1.0
        self.block = C if dev.type == "cuda" else max(1, min(C, CPU_BLOCK_BYTES // (B * N * 4)))
        self.mask: tuple[np.ndarray, np.ndarray] | None = None   # the sparse path's spike masks (CPU)

    def execute(self) -> Result:
        """Run every tick and assemble the result."""
        for t in range(self.spec.ticks):
            self.tick(t)
        return self.result()

    def tick(self, t: int) -> None:
        """Steps 1-5 of one tick for every core and sample."""
        tab, torch = self.tab, self.torch
        C, A, B = tab.C, tab.A, self.B
        slot = self.ring[t % tab.ring_size]
        if t < self.spec.input_ticks and tab.input_src.numel():
            slot.index_add_(0, tab.input_dst, self.inputs[t].index_select(0, tab.input_src))
        x = slot.clamp_(max=1.0).view(C, A, B)                    # the OR-merge: 0/1 per (axon, sample)
        active = x.sum(dim=(1, 2)).cpu().numpy()                    # active (axon, sample) pairs per core
        stoch_syn = self.stochastic_synapses(slot, t) if tab.ssy_core.numel() else None
        stoch_thr = self.stochastic_thresholds(t) if tab.sth_core.numel() else None
        for c0 in range(0, C, self.block):
            c1 = min(C, c0 + self.block)
            S = self.integrate(x[c0:c1], active[c0:c1], c0)
            if stoch_syn is not None:
                S += stoch_syn[c0:c1]
            fire, f = self.update_neurons(S, c0, c1, stoch_thr)
            self.count(fire, f if f.dtype == torch.float32 else fire.to(torch.float32), c0, c1)
        slot.zero_()
        self.deliver(t)

    # ------------------------------------------------------------------ step 2: integration
    def integrate(self, x: "torch.Tensor", active: np.ndarray, c0: int) -> "torch.Tensor":
        """Synaptic sums S (k, B, N) float32 of the block of cores from ``c0`` with active axons
        ``x`` (k, A, B) and ``active`` (axon, sample) pairs per core; counts synaptic events.
        The block takes the sparse path when at most ``sparse_max`` of the (axon, sample) pairs of
        its busy cores are active (one path per block: splitting a block costs more than it
        saves), else the dense path over its busy cores (idle cores get S = 0)."""
        torch, tab = self.torch, self.tab
        k, A, B = x.shape
        busy = active > 0
        if not busy.any():
            return torch.zeros((k, B, tab.N), dtype=torch.float32, device=tab.device)
        if self.sparse_allowed and active.sum() <= self.sparse_max * A * B * busy.sum():
            return self.gather_rows(x, c0 + torch.arange(k, device=tab.device))
        weights = tab.weights if tab.weights_bf16 is None else tab.weights_bf16
        if busy.all():
            self.count_events(x, tab.fanout[c0:c0 + k])
            return self.matmul(x, weights[c0:c0 + k])
        S = torch.zeros((k, B, tab.N), dtype=torch.float32, device=tab.device)
        idx = self.indices(busy)
        xd = x.index_select(0, idx)
        self.count_events(xd, tab.fanout[c0:c0 + k].index_select(0, idx))
        S.index_copy_(0, idx, self.matmul(xd, weights[c0:c0 + k].index_select(0, idx)))
        return S

    def count_events(self, x: "torch.Tensor", fanout: "torch.Tensor") -> None:
        """Add the synaptic events of spikes ``x`` (k, A, B) on axons with ``fanout`` (k, 1, A)
        connected neurons (per core the sums stay below 2^24, exact in float32)."""
        self.events += self.torch.bmm(fanout, x).sum(dim=(0, 1), dtype=self.torch.float64)

    def indices(self, mask: np.ndarray) -> "torch.Tensor":
        """Positions of the True entries of a host mask, as an int64 tensor on the device."""
        return self.torch.from_numpy(np.flatnonzero(mask)).to(self.tab.device)

    def matmul(self, x: "torch.Tensor", w: "torch.Tensor") -> "torch.Tensor":
        """x^T @ w for (k, A, B) spikes and (k, A, N) weights, as float32 (k, B, N)."""
        if w.dtype == self.torch.bfloat16:
            try:
                return self.torch.bmm(x.transpose(1, 2).to(w.dtype), w, out_dtype=self.torch.float32)
            except (TypeError, RuntimeError, NotImplementedError) as exc:
                raise CrossmapError(f"this torch ({self.torch.__version__}) has no float32-output bfloat16 "
                                    f"matmul on {w.device} ({exc}); use precision 'tf32' or 'float32'") from None
        if self.tab.precision == "tf32":   # the counters' matmuls stay in IEEE float32
            with _matmul_precision(self.tab.device, "tf32"):
                return self.torch.bmm(x.transpose(1, 2), w)
        return self.torch.bmm(x.transpose(1, 2), w)

    def gather_rows(self, x: "torch.Tensor", cores: "torch.Tensor") -> "torch.Tensor":
        """S (k, B, N) of cores ``cores`` as the sum, per (core, sample), of the W_eff rows of its
        active axons: one ``embedding_bag`` over the (core, sample) bags of active axons. The bags
        are the set positions of the (core, sample, axon) spike mask in order, so the bag of
        (core, sample) starts at the first set position at or after (core * B + sample) * A."""
        torch, tab = self.torch, self.tab
        k, A, B = x.shape
        if x.device.type == "cpu" and NUMPY_BAGS_ON_CPU:
            spikes, mask = self.mask_buffers(k, A, B)
            np.greater(x.numpy(), 0, out=spikes)
            np.copyto(mask, spikes.transpose(0, 2, 1))   # a bool transpose: 4x fewer bytes than float32
            events = np.zeros(B, np.float64)
            S = torch.from_numpy(bag_sums(tab.bags, mask, cores.numpy(), events))
            self.events += torch.from_numpy(events)
            return S
        flat = torch.nonzero((x.transpose(1, 2) > 0).contiguous().view(-1)).squeeze(1)
        offsets = torch.searchsorted(flat, torch.arange(0, k * B * A, A, device=x.device))
        rows = cores.index_select(0, flat // (B * A)) * A + flat % A
        self.events.index_add_(0, (flat // A) % B, tab.fanout.view(-1).index_select(0, rows).double())
        S = torch.nn.functional.embedding_bag(rows, tab.weights.view(tab.C * A, tab.N), offsets, mode="sum")
        return S.view(k, B, tab.N)

    def mask_buffers(self, k: int, A: int, B: int) -> tuple[np.ndarray, np.ndarray]:
        """Reusable bool (k, A, B) and (k, B, A) buffers for the sparse path's spike mask on the CPU."""
        if self.mask is None or self.mask[0].shape[0] < k:
            size = max(k, self.block)
            self.mask = (np.empty((size, A, B), bool), np.empty((size, B, A), bool))
        return self.mask[0][:k], self.mask[1][:k]

    def stochastic_synapses(self, x: "torch.Tensor", t: int) -> "torch.Tensor":
        """This tick's stochastic synaptic inputs as (C, B, N): every active (axon, connected
        stochastic neuron) pair draws once per sample and adds sign(w) on a hit."""
        from crossmap.backends import torch_prng

        torch, tab = self.torch, self.tab
        B = self.B
        Z = torch.zeros((tab.C * tab.N, B), dtype=torch.float32, device=tab.device)
        step = max(1, _DRAW_CHUNK // B)
        for p0 in range(0, tab.ssy_core.numel(), step):
            part = slice(p0, p0 + step)
            on = x.index_select(0, tab.ssy_row[part]) > 0                        # (pairs, B)
            r = torch_prng.draw(self.spec.seed, prng.SYNAPSE, self.samples[None, :], t, tab.ssy_core[part, None],
                                tab.ssy_neuron[part, None], tab.ssy_axon[part, None], device=tab.device)
            hit = on & ((r % tab.synapse_prob_den) < tab.ssy_abs[part, None])
            Z.index_add_(0, tab.ssy_target[part], torch.where(hit, tab.ssy_sign[part, None], 0.0))
        return Z.view(tab.C, tab.N, B).transpose(1, 2)

    def stochastic_thresholds(self, t: int) -> "torch.Tensor":
        """Thresholds alpha + (r & mask) of the neurons with a non-zero mask, (neurons, B)."""
        from crossmap.backends import torch_prng

        tab = self.tab
        r = torch_prng.draw(self.spec.seed, prng.THRESHOLD, self.samples[None, :], t, tab.sth_core[:, None],
                            tab.sth_neuron[:, None], 0, device=tab.device)
        return (tab.sth_alpha[:, None] + (r & tab.sth_mask[:, None])).to(self.V.dtype)

    # ------------------------------------------------------------------ steps 2-4: neurons
    def update_neurons(self, S: "torch.Tensor", c0: int, c1: int,
                       stoch_thr: "torch.Tensor | None") -> tuple["torch.Tensor", "torch.Tensor"]:
        """Saturating integration, leak, threshold, reset and negative floor of cores c0..c1;
        returns their spikes (k, B, N) as bool and as 0/1 in the state's dtype."""
        torch, tab = self.torch, self.tab
        V = self.V[c0:c1]
        V += S
        if tab.leak is not None:
            V += tab.leak[c0:c1]
        torch.minimum(V, tab.v_high[c0:c1], out=V)
        torch.maximum(V, tab.v_low[c0:c1], out=V)
        alpha = tab.alpha[c0:c1]
        fire = V >= alpha
        if stoch_thr is not None:
            lo, hi = np.searchsorted(tab.sth_core_host, [c0, c1])
            if hi > lo:
                c, n = tab.sth_core[lo:hi] - c0, tab.sth_neuron[lo:hi]
                fire[c, :, n] = V[c, :, n] >= stoch_thr[lo:hi]
        # reset as arithmetic: V -= f * (to_value * V + offset), f the 0/1 spikes
        f = fire.to(V.dtype)
        if tab.reset_modes == {1}:
            V -= f * alpha
        elif tab.reset_modes == {0} and tab.reset_to_zero:
            V -= f * V
        elif tab.reset_modes != {2}:
            V -= f * (V * tab.reset_to_value[c0:c1] + tab.reset_offset[c0:c1])
        return fire, f

    # ------------------------------------------------------------------ step 5: counters and routing
    def count(self, fire: "torch.Tensor", f: "torch.Tensor", c0: int, c1: int) -> None:
        """Ports, spikes sent, hops and crossings of cores c0..c1 (``f``: their spikes as float32
        0/1); their spikes into the rows that ``deliver`` routes."""
        torch, tab = self.torch, self.tab
        N = tab.N
        self.sent += torch.bmm(f, tab.sender_costs[c0:c1]).sum(dim=0, dtype=torch.float64)
        lo, hi = np.searchsorted(tab.port_core_host, [c0, c1])
        if hi > lo:
            self.port_counts[lo:hi] += fire[tab.port_core[lo:hi] - c0, :, tab.port_neuron[lo:hi]]
        if self.fired is not None:
            self.fired[c0 * N:c1 * N].view(c1 - c0, N, self.B).copy_(f.transpose(1, 2))
        if self.spec.record:
            self.recorded.append(fire.transpose(0, 1).cpu())

    def deliver(self, t: int) -> None:
        """Add this tick's spikes into the ring slots of their arrival ticks."""
        tab = self.tab
        for delay, src, dst in tab.groups:
            self.ring[(t + delay) % tab.ring_size].index_add_(0, dst, self.fired.index_select(0, src))

    def result(self) -> Result:
        """Port counts and activity counters, back on the host."""
        tab, spec = self.tab, self.spec
        B = self.B
        by_port = np.zeros((self.program.num_ports, B), np.int64)
        by_port[tab.port_id] = self.port_counts.cpu().numpy()
        spikes, hops, crossings = np.rint(self.sent.cpu().numpy().T).astype(np.int64)
        activity = {
            "synaptic_events": np.rint(self.events.cpu().numpy()).astype(np.int64),
            "neuron_updates": np.full(B, tab.neurons_in_use * spec.ticks, np.int64),
            "spikes": spikes,
            "hops": hops,
            "chip_crossings": crossings,
            "core_ticks": np.full(B, tab.C * spec.ticks, np.int64),
        }
        recorded = None
        if spec.record:   # per tick, blocks of cores: (ticks, B, C, N)
            per_tick = -(-tab.C // self.block)
            recorded = np.stack([np.concatenate([r.numpy() for r in self.recorded[i:i + per_tick]], axis=1)
                                 for i in range(0, len(self.recorded), per_tick)])
        return make_result(self.program, by_port.T, activity, spec.ticks, "torch", recorded)
