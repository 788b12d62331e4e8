"""Join independently trained chip-ready step networks into one ensemble model.

Every member must follow the chip-ready contract of models/README.md: the threshold input
encoding (``Greater(x, 0.5)`` -> ``Cast`` named ``x_spikes``) and a class readout
``y = MatMul(spikes, readout.weight)`` with a 0/1 matrix. The ensemble shares the encoding,
runs the members side by side and concatenates their voting neurons in front of one readout, so
``y`` is the sum of the members' class counts: an ensemble of copies, each copy a separately
trained network (deterministic networks gain nothing from identical copies).

Usage: python models/make_ensemble.py MEMBER.onnx [MEMBER.onnx ...] -o OUT.onnx [--data-dir DIR]
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


def _member_parts(model: onnx.ModelProto, prefix: str) -> tuple[list, list, str, np.ndarray]:
    """A member's nodes and initializers renamed with ``prefix`` (shared encoding names kept),
    without the readout, plus the name of its voting spikes and its readout matrix."""
    graph = model.graph
    readout = [n for n in graph.node if n.op_type == "MatMul" and n.output[0] == graph.output[0].name]
    if len(readout) != 1:
        raise SystemExit(f"{prefix}: no MatMul readout producing the output {graph.output[0].name!r}")
    inits = {t.name: t for t in graph.initializer}
    matrix = numpy_helper.to_array(inits[readout[0].input[1]])

    def rename(name: str) -> str:
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


def join(members: list[onnx.ModelProto], name: str) -> onnx.ModelProto:
    """The ensemble model of ``members`` (see the module docstring)."""
    builder = common.GraphBuilder(name)
    builder.encode_input()
    builder.const("step_zero", np.array(0.0, np.float32))
    spikes, matrices = [], []
    for k, member in enumerate(members):
        nodes, initializers, votes, matrix = _member_parts(member, f"m{k}.")
        builder.nodes.extend(nodes)
        builder.initializers.extend(initializers)
        spikes.append(votes)
        matrices.append(matrix)
    joined = builder.op("Concat", spikes, name="votes", axis=1)
    readout = np.concatenate(matrices, axis=0)
    builder.nodes.append(helper.make_node("MatMul", [joined, builder.const("readout.weight", readout)], ["y"],
                                          name="readout"))
    meta = {"crossmap.model": name, "crossmap.ensemble_members": json.dumps(
        [{p.key: p.value for p in m.metadata_props if p.key in ("crossmap.command", "crossmap.test_accuracy")}
         for m in members])}
    return builder.model("y", [10], meta)


def main() -> None:
    """Join, check against the members' summed counts with onnxruntime, save."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("members", nargs="+")
    parser.add_argument("-o", "--out", required=True)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    members = [onnx.load(p) for p in args.members]
    model = join(members, Path(args.out).stem)
    args.train_limit, args.seed = None, 0
    data = common.load_data(args)
    import onnxruntime as ort

    def counts(m: onnx.ModelProto) -> np.ndarray:
        session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        return np.concatenate([session.run(None, {"x": data["xte"][lo:lo + 1000]})[0]
                               for lo in range(0, len(data["xte"]), 1000)])

    summed = sum(counts(m) for m in members)
    common.save_checked(model, args.out, data, summed.argmax(1), f"ensemble of {len(members)}",
                        reference_name="the members' summed counts")
    for path, m in zip(args.members, members):
        print(f"  member {path}: {100 * float((counts(m).argmax(1) == data['yte']).mean()):.2f}%")


if __name__ == "__main__":
    main()
