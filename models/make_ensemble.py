"""Join independently trained chip-ready step networks into one ensemble model.

Every member must follow the chip-ready contract of models/README.md: the threshold input
encoding (``Greater(x, 0.5)`` -> ``Cast`` named ``x_spikes``) or a thermometer code of several
thresholds (``--input-levels``: a 1x1 Conv and a step named ``x_levels``, which the member keeps
as its own), and a class readout ``y = MatMul(spikes, readout.weight)`` with a 0/1 matrix. On the
chip, spike channels that several members' encodings share (a pixel above 0.5) are one. The
ensemble shares the encoding, runs the members side by side and concatenates their voting neurons
in front of one readout, so ``y`` is the sum of the members' class counts: an ensemble of
copies, each copy a separately trained network (deterministic networks gain nothing from
identical copies).

A copy may also read the image translated by a pixel or two (``--shifts``): the same trained
network wired to shifted pixel axons, a ``Pad`` -> ``Slice`` of the input spikes in front of the
copy (zero fill, as the recipes' shift augmentation). On the chip this only changes which pixel
feeds which axon, so a shifted copy costs the cores of a copy and no training; networks trained
with random shifts classify digits shifted by a pixel almost as well, and the shifted copies' votes
add to the ensemble (measured in models/README.md).

Usage: python models/make_ensemble.py MEMBER.onnx [MEMBER.onnx ...] -o OUT.onnx [--shifts "0,0 0,1 1,0"]
       [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

import common

SHARED = {"x", "x_spikes", "input_threshold", "step_zero"}
SIZE = 28  # input image height and width
Shift = tuple[int, int]  # (rows down, columns right)


def parse_shifts(text: str) -> list[Shift]:
    """``"0,0 0,1 -1,0"`` -> [(0, 0), (0, 1), (-1, 0)]: (rows down, columns right) per copy."""
    try:
        shifts = [(int(a), int(b)) for a, b in (item.split(",") for item in text.split())]
    except ValueError:
        raise SystemExit(f"--shifts {text!r}: expected space-separated 'rows,columns' pairs such as '0,0 0,1 -1,0'")
    if not shifts or any(max(abs(a), abs(b)) >= SIZE for a, b in shifts):
        raise SystemExit(f"--shifts {text!r}: give at least one shift, each smaller than the {SIZE}-pixel image")
    return shifts


def ensemble_copies(members: list, count: int, shifts: list[Shift]) -> list[tuple[object, Shift]]:
    """The first ``count`` (member, shift) copies, shift-major: every member unshifted first, then
    every member under the second shift, and so on (separately trained copies differ more than
    shifted ones, so a small ensemble uses them first)."""
    copies = [(member, shift) for shift in shifts for member in members]
    if count > len(copies):
        raise SystemExit(f"{count} copies asked for, {len(members)} members x {len(shifts)} shifts give {len(copies)}")
    return copies[:count]


def _shift_nodes(builder: common.GraphBuilder, shift: Shift, prefix: str) -> str:
    """``x_spikes`` translated by ``shift`` with zero fill (Pad then Slice); returns its name."""
    dy, dx = shift
    pads = [0, 0, max(dy, 0), max(dx, 0), 0, 0, max(-dy, 0), max(-dx, 0)]
    starts = [max(-dy, 0), max(-dx, 0)]
    padded = builder.op("Pad", ["x_spikes", builder.const(f"{prefix}shift.pads", np.array(pads, np.int64))],
                        name=f"{prefix}x_padded")
    return builder.op("Slice", [padded, builder.const(f"{prefix}shift.starts", np.array(starts, np.int64)),
                                builder.const(f"{prefix}shift.ends", np.array(starts, np.int64) + SIZE),
                                builder.const(f"{prefix}shift.axes", np.array([2, 3], np.int64))],
                      name=f"{prefix}x_shifted")


def _member_parts(model: onnx.ModelProto, prefix: str, source: str = "x_spikes") -> tuple[list, list, str, np.ndarray]:
    """A member's nodes and initializers renamed with ``prefix`` (shared encoding names kept; its
    input spikes read from ``source``), without the readout, plus the name of its voting spikes
    and its readout matrix."""
    graph = model.graph
    if source != "x_spikes" and not any("x_spikes" in n.input for n in graph.node):
        raise SystemExit(f"{prefix}: the member does not read the shared x_spikes (a thermometer input code?); "
                         f"only members with the plain threshold encoding can be shifted; give it shift 0,0")
    readout = [n for n in graph.node if n.op_type == "MatMul" and n.output[0] == graph.output[0].name]
    if len(readout) != 1:
        raise SystemExit(f"{prefix}: no MatMul readout producing the output {graph.output[0].name!r}")
    inits = {t.name: t for t in graph.initializer}
    matrix = numpy_helper.to_array(inits[readout[0].input[1]])

    def rename(name: str) -> str:
        if name == "x_spikes":
            return source
        return name if name in SHARED or not name else prefix + name

    nodes = []
    for node in graph.node:
        if node is readout[0] or node.output[0] == "x_spikes" or (node.op_type == "Greater" and node.input[0] == "x"):
            continue
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = prefix + node.name
        copy.input[:] = [rename(i) for i in node.input]
        copy.output[:] = [rename(o) for o in node.output]
        nodes.append(copy)
    used = {i for n in nodes for i in n.input}
    initializers = []
    for name, tensor in inits.items():
        if name in SHARED or rename(name) not in used:
            continue
        copy = onnx.TensorProto()
        copy.CopyFrom(tensor)
        copy.name = rename(name)
        initializers.append(copy)
    return nodes, initializers, rename(readout[0].input[0]), matrix


def join(members: list[onnx.ModelProto], name: str, shifts: list[Shift] | None = None) -> onnx.ModelProto:
    """The ensemble model of ``members`` (see the module docstring); ``shifts``, one per member
    (a member may appear several times), translates each copy's input (default: none)."""
    shifts = shifts or [(0, 0)] * len(members)
    if len(shifts) != len(members):
        raise ValueError(f"{len(shifts)} shifts for {len(members)} members: give one per member")
    builder = common.GraphBuilder(name)
    builder.encode_input()
    builder.const("step_zero", np.array(0.0, np.float32))
    spikes, matrices = [], []
    for k, (member, shift) in enumerate(zip(members, shifts)):
        source = "x_spikes" if shift == (0, 0) else _shift_nodes(builder, shift, f"m{k}.")
        nodes, initializers, votes, matrix = _member_parts(member, f"m{k}.", source)
        builder.nodes.extend(nodes)
        builder.initializers.extend(initializers)
        spikes.append(votes)
        matrices.append(matrix)
    joined = builder.op("Concat", spikes, name="votes", axis=1)
    readout = np.concatenate(matrices, axis=0)
    builder.nodes.append(helper.make_node("MatMul", [joined, builder.const("readout.weight", readout)], ["y"],
                                          name="readout"))
    meta = {"crossmap.model": name, "crossmap.ensemble_members": json.dumps(
        [{**{p.key: p.value for p in m.metadata_props if p.key in ("crossmap.command", "crossmap.test_accuracy")},
          "shift": list(shift)} for m, shift in zip(members, shifts)])}
    return builder.model("y", [10], meta)


def shifted(images: np.ndarray, shift: Shift) -> np.ndarray:
    """(n, 1, 28, 28) images translated by ``shift`` with zero fill (what a shifted copy sees)."""
    dy, dx = shift
    out = np.zeros_like(images)
    out[..., max(dy, 0):SIZE + min(dy, 0), max(dx, 0):SIZE + min(dx, 0)] = \
        images[..., max(-dy, 0):SIZE - max(dy, 0), max(-dx, 0):SIZE - max(dx, 0)]
    return out


def main() -> None:
    """Join, check against the copies' summed counts with onnxruntime, save."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("members", nargs="+")
    parser.add_argument("-o", "--out", required=True)
    parser.add_argument("--shifts", default="0,0", help="input translations 'rows,columns' applied to every member, "
                                                        "e.g. '0,0 0,1 0,-1 1,0 -1,0' (default: none)")
    parser.add_argument("--copies", type=int, default=None,
                        help="keep the first N copies, shift-major (default: members x shifts)")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    members = [(path, onnx.load(path)) for path in args.members]
    shifts = parse_shifts(args.shifts)
    copies = ensemble_copies(members, args.copies or len(members) * len(shifts), shifts)
    model = join([m for (_, m), _ in copies], Path(args.out).stem, [shift for _, shift in copies])
    args.train_limit, args.seed, args.name = None, 0, "make_ensemble"  # what common.load_data reads
    data = common.load_data(args)
    each = [common.onnx_outputs(m, shifted(data["xte"], shift)) for (_, m), shift in copies]
    common.save_checked(model, args.out, data, sum(each).argmax(1), f"ensemble of {len(copies)}",
                        reference_name="the copies' summed counts")
    for ((path, _), shift), c in zip(copies, each):
        print(f"  copy {path} shifted {shift}: {100 * float((c.argmax(1) == data['yte']).mean()):.2f}%")


if __name__ == "__main__":
    main()
