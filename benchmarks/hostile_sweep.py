"""Hostile-use sweep: corrupt program directories, hostile ONNX models, hostile output paths and
arguments, kills during compile and concurrent compiles into one directory. Every case runs the
command line (in this process, or in child processes for kills and races) and is classified:

- clean error: a CrossmapError's one-line message and its exit code, nothing escaped ``main``;
- ok: exit 0 with the same output as the pristine program (or, for a model that still compiles,
  a program that ``verify`` finds equal to that model);
- traceback: any other exception escaped ``main``, or a child process printed a traceback;
- silent wrong result: exit 0 with output that differs from the pristine program's, or a compiled
  program that disagrees with its model, or a half-written program directory;
- data lost: a file or directory that existed before the case is changed or gone afterwards
  (a replaced program counts only when the new one is not complete).

Edits of manifest fields that are re-signed (the checksum recomputed, as a forger would) and stay
within bounds make a different but valid program; they are counted as "accepted (forged)".

    python benchmarks/hostile_sweep.py                 # the full sweep (several minutes)
    python benchmarks/hostile_sweep.py --quick         # fewer cases of each kind
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from crossmap.cli import main
from crossmap.program_files import file_digest, manifest_digest

OUTCOMES = ("clean", "ok", "forged", "traceback", "wrong", "lost")
results: dict[str, Counter] = defaultdict(Counter)
examples: dict[tuple[str, str], str] = {}


def record(category: str, outcome: str, detail: str = "") -> None:
    results[category][outcome] += 1
    if outcome in ("traceback", "wrong", "lost") and (category, outcome) not in examples:
        examples[(category, outcome)] = detail[:400]


def cli(argv: list[str]) -> tuple[int | None, str, str, BaseException | None]:
    """Run the command line in this process: (exit code, stdout, stderr, escaped exception)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            code = main(argv)
        except BaseException as exc:  # noqa: BLE001 - this is what the sweep looks for
            return None, out.getvalue(), err.getvalue(), exc
    return code, out.getvalue(), err.getvalue(), None


def classify(category: str, argv: list[str], expected: str | None, normalize: Callable[[str], str] = str) -> str:
    code, out, err, exc = cli(argv)
    if exc is not None:
        record(category, "traceback", f"{' '.join(argv)}: {type(exc).__name__}: {exc}")
        return "traceback"
    if code == 0:
        if expected is not None and normalize(out) != expected:
            record(category, "wrong", f"{' '.join(argv)}: output differs")
            return "wrong"
        record(category, "ok")
        return "ok"
    if "error:" in err and "Traceback" not in err:
        record(category, "clean")
        return "clean"
    record(category, "traceback", f"{' '.join(argv)}: exit {code}: {err[-300:]}")
    return "traceback"


# ------------------------------------------------------------------------------ inputs
def binary_mlp(sizes: tuple[int, ...] = (64, 32, 10), seed: int = 3) -> onnx.ModelProto:
    """A chip-ready MLP: ternary weights, integer biases, step activations (Greater + Cast)."""
    rng = np.random.default_rng(seed)
    nodes, inits, current = [], [numpy_helper.from_array(np.array(0.0, np.float32), "zero")], "x"
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = rng.choice(np.array([-1.0, 0.0, 1.0], np.float32), size=(n_out, n_in), p=[0.4, 0.2, 0.4])
        inits += [numpy_helper.from_array(w, f"fc{i}.weight"),
                  numpy_helper.from_array(rng.integers(-2, 3, n_out).astype(np.float32), f"fc{i}.bias")]
        nodes.append(helper.make_node("Gemm", [current, f"fc{i}.weight", f"fc{i}.bias"], [f"z{i}"], name=f"fc{i}",
                                      transB=1))
        nodes.append(helper.make_node("Greater", [f"z{i}", "zero"], [f"g{i}"], name=f"step{i}"))
        current = "y" if i == len(sizes) - 2 else f"h{i}"
        nodes.append(helper.make_node("Cast", [f"g{i}"], [current], name=f"cast{i}", to=TensorProto.FLOAT))
    graph = helper.make_graph(nodes, "sweep", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", sizes[0]])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", sizes[-1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file and directory under ``path`` (or ``path`` itself) with its bytes."""
    if not os.path.lexists(path):
        return {}
    if path.is_symlink() or not path.is_dir():
        return {".": os.readlink(path).encode() if path.is_symlink() else
                (path.read_bytes() if path.is_file() else b"<special>")}
    return {str(p.relative_to(path)): (p.read_bytes() if p.is_file() and not p.is_symlink() else b"/")
            for p in sorted(path.rglob("*"))}


# ------------------------------------------------------------------------------ corrupt programs
def emulate_argv(program: Path) -> list[str]:
    return ["emulate", str(program), "--random", "4", "--seed", "1", "--json"]


def program_cases(work: Path, pristine: Path, compiled: Path, flips: int, rng: random.Random) -> None:
    """Bit flips, field edits, hostile values and archive surgery on two program directories."""
    def fresh(source: Path = pristine) -> Path:
        target = work / f"case{rng.getrandbits(48):012x}"
        shutil.copytree(source, target)
        return target

    def expected_of(source: Path) -> tuple[str, Callable[[str], str]]:
        code, out, _, exc = cli(emulate_argv(source))
        assert code == 0 and exc is None
        return out.replace(str(source), "<P>"), lambda text: text

    base_out, _ = expected_of(pristine)

    def check(program: Path, category: str, expected: str = base_out, argv: list[str] | None = None) -> str:
        outcome = classify(category, argv or emulate_argv(program), expected, lambda t: t.replace(str(program), "<P>"))
        shutil.rmtree(program, ignore_errors=True)
        return outcome

    # bit flips
    for name, count in (("arrays.npz", flips), ("manifest.json", flips // 3)):
        for _ in range(count):
            program = fresh()
            data = bytearray((program / name).read_bytes())
            for _ in range(rng.choice((1, 1, 1, 2, 3))):
                bit = rng.randrange(8 * len(data))
                data[bit // 8] ^= 1 << (bit % 8)
            (program / name).write_bytes(bytes(data))
            check(program, f"bit flips in {name}")

    # every manifest leaf edited, unsigned (caught by the checksum) and re-signed (bounds or a new program)
    manifest = json.loads((pristine / "manifest.json").read_text())
    leaves = []

    def walk(node: Any, path: tuple) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, path + (k,))
        elif isinstance(node, list) and node and len(node) <= 4 and not isinstance(node[0], (dict, list)):
            leaves.append(path)
        elif not isinstance(node, list):
            leaves.append(path)

    walk(manifest, ())
    leaves = [p for p in leaves if p[-1] not in ("manifest_checksum",)]

    def edited(value: Any) -> list[Any]:
        if isinstance(value, bool):
            return [not value, "yes"]
        if isinstance(value, int):
            return [value + 1, -value - 1, 10**9, 10**30, "12", None, 1.5]
        if isinstance(value, float):
            return [value * 2, -value - 1.0, 1e308, "nan"]
        if isinstance(value, str):
            return [value + "x", "", 5]
        if isinstance(value, list):
            return [value + value[:1], [], "list"]
        return [None]

    for path in leaves:
        for signed in (False, True):
            node = manifest
            for key in path[:-1]:
                node = node[key]
            for value in edited(node[path[-1]]):
                program = fresh()
                edit = json.loads((program / "manifest.json").read_text())
                target = edit
                for key in path[:-1]:
                    target = target[key]
                target[path[-1]] = value
                if signed:
                    edit["manifest_checksum"] = manifest_digest(edit)
                (program / "manifest.json").write_text(json.dumps(edit))
                category = "manifest edits, re-signed" if signed else "manifest edits"
                code, out, err, exc = cli(emulate_argv(program))
                if exc is not None:
                    record(category, "traceback", f"{'.'.join(map(str, path))}={value!r}: {type(exc).__name__}: {exc}")
                elif code == 0:
                    same = out.replace(str(program), "<P>") == base_out
                    record(category, "ok" if same else ("forged" if signed else "wrong"),
                           f"{'.'.join(map(str, path))}={value!r}")
                elif "error:" in err:
                    record(category, "clean")
                else:
                    record(category, "traceback", f"{'.'.join(map(str, path))}={value!r}: {err[-200:]}")
                shutil.rmtree(program, ignore_errors=True)

    # hostile values, re-signed: each must be refused by the bounds behind the checksum
    hostile = [("input_ticks", 10**7), ("latency", 10**8), ("num_classes", 10**9), ("num_classes", 10**30),
               ("num_inputs", 10**12), ("encoding", {"kind": "threshold", "threshold": "abc"}),
               ("encoding", {"kind": "rate", "ticks": 4, "seed": -1}), ("encoding", []),
               ("chip", {"mesh_x": 10**9}), ("chip", {"board_x": 10**5, "board_y": 10**5}),
               ("chip", {"axons_per_core": 2**20}), ("chip", {"energy": {"hop_pj": -5}}),
               ("chip", {"energy": {"hop_pj": 1e300}}), ("chip", {"name": ["x"]}), ("chip", []),
               ("num_cores", 10**9), ("num_cores", -1), ("num_ports", 10**8),
               ("arrays", {"alpha": {"dtype": "int32", "shape": [2, 10**9]}}),
               ("arrays", {"crossbar": {"dtype": "bool", "shape": [2, 256, 256, 256]}}),
               ("metadata", {"seed": 2**70}), ("metadata", {"pipeline": 5}), ("core_labels", ["a"] * 7),
               ("group_names", [5]), ("schema_version", 10**6), ("format", "zip"), ("checksum", "0" * 64)]
    for field, value in hostile:
        program = fresh()
        edit = json.loads((program / "manifest.json").read_text())
        if isinstance(value, dict) and isinstance(edit.get(field), dict):
            merged = json.loads(json.dumps(edit[field]))
            for k, v in value.items():
                if isinstance(v, dict) and isinstance(merged.get(k), dict):
                    merged[k].update(v)
                else:
                    merged[k] = v
            value = merged
        edit[field] = value
        edit["manifest_checksum"] = manifest_digest(edit)
        (program / "manifest.json").write_text(json.dumps(edit))
        check(program, "hostile manifest values, re-signed")
    for literal in ("NaN", "Infinity", "-Infinity", "1e400"):
        program = fresh()
        edit = json.loads((program / "manifest.json").read_text())
        edit["chip"]["energy"]["spike_pj"] = 777.25
        edit["manifest_checksum"] = manifest_digest(edit)
        (program / "manifest.json").write_text(json.dumps(edit).replace("777.25", literal))
        check(program, "hostile manifest values, re-signed")
    text = (pristine / "manifest.json").read_text()
    for depth in (1000, 200_000):
        program = fresh()
        (program / "manifest.json").write_text(text.replace('"metadata": {', f'"deep": {"[" * depth}{"]" * depth}, '
                                                            f'"metadata": {{', 1))
        check(program, "hostile manifest values, re-signed")
    program = fresh()
    with open(program / "manifest.json", "w") as handle:  # 100 MB of whitespace
        handle.write(text[:-2] + " " * (100 * 2**20) + "}\n")
    check(program, "hostile manifest values, re-signed")

    # archive surgery
    def npz_members(program: Path) -> dict[str, bytes]:
        with zipfile.ZipFile(program / "arrays.npz") as archive:
            return {info.filename: archive.read(info) for info in archive.infolist()}

    def write_npz(program: Path, members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> None:
        with zipfile.ZipFile(program / "arrays.npz", "w", method) as archive:
            for name, data in members.items():
                archive.writestr(name, data)

    def header(descr: str, shape: tuple) -> bytes:
        text = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode() + b" "
        text += b" " * (-(len(text) + 11) % 64) + b"\n"
        return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text

    surgeries: list[tuple[str, Callable[[Path], None]]] = []
    for descr, shape in (("<i4", (10**12,)), ("<i4", (2**31, 2**31)), (">i4", (2, 256)), ("|O", (2, 256)),
                         ("<f8", (2, 256)), ("<i4", ()), ("<i4", (-1,))):
        surgeries.append((f"header {descr}{shape}", lambda p, d=descr, s=shape: write_npz(
            p, {**npz_members(p), "alpha.npy": header(d, s) + bytes(2048)})))
    surgeries += [
        ("header of 64 KiB", lambda p: write_npz(p, {**npz_members(p), "alpha.npy": b"\x93NUMPY\x02\x00"
                                                     + (2**20).to_bytes(4, "little") + b"{" * 2**20})),
        ("member renamed", lambda p: write_npz(p, {("alpha2.npy" if k == "alpha.npy" else k): v
                                                   for k, v in npz_members(p).items()})),
        ("member missing", lambda p: write_npz(p, {k: v for k, v in npz_members(p).items() if k != "beta.npy"})),
        ("members stored", lambda p: write_npz(p, npz_members(p), zipfile.ZIP_STORED)),
        ("members bzip2", lambda p: write_npz(p, npz_members(p), zipfile.ZIP_BZIP2)),
        ("members lzma", lambda p: write_npz(p, npz_members(p), zipfile.ZIP_LZMA)),
        ("empty file", lambda p: (p / "arrays.npz").write_bytes(b"")),
        ("arrays.npz a directory", lambda p: ((p / "arrays.npz").unlink(), (p / "arrays.npz").mkdir())),
        ("arrays.npz -> /dev/zero", lambda p: ((p / "arrays.npz").unlink(), (p / "arrays.npz").symlink_to("/dev/zero"))),
        ("manifest.json -> /dev/zero", lambda p: ((p / "manifest.json").unlink(),
                                                 (p / "manifest.json").symlink_to("/dev/zero"))),
        ("manifest.json a fifo", lambda p: ((p / "manifest.json").unlink(), os.mkfifo(p / "manifest.json"))),
        ("manifest.json missing", lambda p: (p / "manifest.json").unlink()),
        ("random arrays.npz", lambda p: (p / "arrays.npz").write_bytes(os.urandom(5000))),
        ("appended garbage", lambda p: open(p / "arrays.npz", "ab").write(os.urandom(3000))),
        ("prepended garbage", lambda p: (p / "arrays.npz").write_bytes(os.urandom(100) + (p / "arrays.npz").read_bytes())),
    ]
    size = (pristine / "arrays.npz").stat().st_size
    for cut in sorted({0, 1, 30, 100, size // 4, size // 2, size - 100, size - 22, size - 1}):
        surgeries.append((f"truncated at {cut}", lambda p, c=cut: (p / "arrays.npz").write_bytes(
            (p / "arrays.npz").read_bytes()[:c])))
    for name, surgery in surgeries:
        program = fresh()
        surgery(program)
        check(program, "archive surgery")

    # decompression bombs: an extra member, and a real member, that unpack to 3 GiB from a few MB
    for member in ("extra.npy", "alpha.npy"):
        program = fresh()
        members = npz_members(program)
        if member == "alpha.npy":
            del members["alpha.npy"]
        write_npz(program, members)
        with zipfile.ZipFile(program / "arrays.npz", "a", zipfile.ZIP_DEFLATED) as archive:
            with archive.open(member, "w", force_zip64=True) as handle:
                handle.write(header("<i4", (2, 256)))
                chunk = bytes(64 * 2**20)
                for _ in range(48):  # 3 GiB of zeros
                    handle.write(chunk)
        start = time.perf_counter()
        outcome = check(program, "archive surgery")
        seconds = time.perf_counter() - start
        print(f"  bomb in {member}: {outcome} in {seconds:.2f} s", flush=True)

    # report.json of a compiled program: flips, edits, forged edits
    code, out, _, exc = cli(["report", str(compiled), "--json"])
    assert code == 0, out
    report_expected = out.replace(str(compiled), "<P>")
    for i in range(27):
        program = fresh(compiled)
        report = program / "report.json"
        if i < 16:
            data = bytearray(report.read_bytes())
            bit = rng.randrange(8 * len(data))
            data[bit // 8] ^= 1 << (bit % 8)
            report.write_bytes(bytes(data))
        else:
            content = [{"place": 5}, {"route": {"traffic": "spikes per sample", "edges": [[0, 99, 1e9]]}},
                       {"route": []}, [], {"partition": {"traffic": 3}}, {"place": {"lower_bound": "x"}},
                       {"route": {"edges": "x", "traffic": "spikes per sample"}},
                       {"place": {"chip_crossing_penalty": "x"}}, {"route": {"edges": [["a", 1, 2]],
                                                                              "traffic": "spikes per sample"}},
                       {"place": {"edges": 1, "objective": None, "lower_bound": 3}}, {}][i - 16]
            report.write_text(json.dumps(content))
            if i % 2:  # forged: digest and manifest re-signed
                edit = json.loads((program / "manifest.json").read_text())
                edit["files"]["report.json"] = file_digest(report.read_bytes())
                edit["manifest_checksum"] = manifest_digest(edit)
                (program / "manifest.json").write_text(json.dumps(edit))
        argv = ["report", str(program), "--json"]
        code, out, err, exc = cli(argv)
        category = "report.json edits"
        if exc is not None:
            record(category, "traceback", f"report case {i}: {type(exc).__name__}: {exc}")
        elif code == 0:
            same = out.replace(str(program), "<P>") == report_expected
            record(category, "ok" if same else ("forged" if i >= 16 and i % 2 else "wrong"), f"report case {i}")
        else:
            record(category, "clean" if "error:" in err else "traceback", err[-200:])
        shutil.rmtree(program, ignore_errors=True)


# ------------------------------------------------------------------------------ hostile models
def model_cases(work: Path, model: onnx.ModelProto, rng: random.Random, flips: int) -> None:
    data = model.SerializeToString()
    cases: list[tuple[str, bytes | Callable[[Path], None]]] = [
        ("empty", b""), ("zeros", bytes(100)), ("one byte", b"\x08"),
        ("deep protobuf", b"\x3a" + b"\x0a\x80\x80\x80\x80\x10" * 200),
        ("huge length prefix", b"\x0a\xff\xff\xff\xff\x0f"),
    ]
    cases += [(f"random bytes {i}", os.urandom(rng.choice((10, 1000, 100_000)))) for i in range(5)]
    cases += [(f"truncated at {cut}", data[:cut]) for cut in sorted({1, 10, len(data) // 4, len(data) // 2,
                                                                       len(data) - 50, len(data) - 1})]
    for i in range(flips):
        flipped = bytearray(data)
        bit = rng.randrange(8 * len(flipped))
        flipped[bit // 8] ^= 1 << (bit % 8)
        cases.append((f"bit flip {i}", bytes(flipped)))

    def edited(edit: Callable[[onnx.ModelProto], None]) -> bytes:
        copy = onnx.ModelProto.FromString(data)
        edit(copy)
        return copy.SerializeToString()

    def set_value(name: str, value: float) -> Callable[[onnx.ModelProto], None]:
        def edit(m: onnx.ModelProto) -> None:
            for i, t in enumerate(m.graph.initializer):
                if t.name == name:
                    arr = numpy_helper.to_array(t).copy()
                    arr.reshape(-1)[0] = value
                    m.graph.initializer[i].CopyFrom(numpy_helper.from_array(arr, name))
        return edit

    def opset(version: int) -> Callable[[onnx.ModelProto], None]:
        return lambda m: m.opset_import[0].__setattr__("version", version)

    def claim_huge(m: onnx.ModelProto) -> None:
        t = m.graph.initializer[1]
        del t.dims[:]
        t.dims.extend([10**6, 10**6])

    def external(location: str) -> Callable[[onnx.ModelProto], None]:
        def edit(m: onnx.ModelProto) -> None:
            t = m.graph.initializer[1]
            t.ClearField("raw_data")
            t.ClearField("float_data")
            t.data_location = TensorProto.EXTERNAL
            t.external_data.add(key="location", value=location)
        return edit

    def second_input(m: onnx.ModelProto) -> None:
        m.graph.input.append(helper.make_tensor_value_info("x2", TensorProto.FLOAT, ["N", 3]))

    def int_input(m: onnx.ModelProto) -> None:
        m.graph.input[0].type.tensor_type.elem_type = TensorProto.INT64

    def unknown_op(m: onnx.ModelProto) -> None:
        m.graph.node[1].op_type = "Frobnicate"

    def wrong_shape(m: onnx.ModelProto) -> None:
        t = m.graph.initializer[1]
        arr = numpy_helper.to_array(t)[:, :5].copy()
        m.graph.initializer[1].CopyFrom(numpy_helper.from_array(arr, t.name))

    cases += [(f"{name} = {value}", edited(set_value(name, value))) for name in ("fc0.weight", "fc0.bias", "fc1.weight")
              for value in (np.nan, np.inf, -np.inf)]
    cases += [(f"opset {v}", edited(opset(v))) for v in (99, 10**6, 0, 1, 7)]
    cases += [("dims claim 10^12", edited(claim_huge)), ("two inputs", edited(second_input)),
              ("int64 input", edited(int_input)), ("unknown op", edited(unknown_op)),
              ("weight of the wrong shape", edited(wrong_shape)), ("no outputs", edited(lambda m: m.graph.ClearField("output"))),
              ("no nodes", edited(lambda m: m.graph.ClearField("node")))]
    cases += [(f"external data {loc}", edited(external(loc))) for loc in ("missing.bin", "/etc/passwd", "../../x.bin",
                                                                          "/dev/zero", "")]
    cases += [("a directory", lambda p: p.mkdir()), ("a fifo", lambda p: os.mkfifo(p)),
              ("/dev/zero", lambda p: p.symlink_to("/dev/zero"))]
    for i, (name, content) in enumerate(cases):
        path = work / f"model{i}.onnx"
        if callable(content):
            content(path)
        else:
            path.write_bytes(content)
        out = work / f"model{i}.out"
        outcome = classify("hostile ONNX models", ["compile", str(path), "-o", str(out), "-q"], None)
        if outcome == "ok":  # it still compiles: the program must equal the model it came from
            code, text, err, exc = cli(["verify", str(out), str(path), "--limit", "32", "--json"])
            if exc is not None or code != 0:
                results["hostile ONNX models"]["ok"] -= 1
                record("hostile ONNX models", "wrong", f"{name}: verify exit {code} {err[-200:]} {exc!r}")
        elif os.path.lexists(out):  # a failed compile must leave nothing behind
            record("hostile ONNX models", "wrong", f"{name}: a failed compile left {out}")
        shutil.rmtree(out, ignore_errors=True)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


# ------------------------------------------------------------------------------ outputs and arguments
def output_cases(work: Path, model_path: Path, program: Path) -> None:
    """Hostile -o targets with --force: what was there must be left untouched (or be a program
    replaced by a complete one)."""
    def user_dir(p: Path) -> None:
        p.mkdir()
        (p / "thesis.tex").write_text("years of work")
        (p / "sub").mkdir()
        (p / "sub" / "data.csv").write_text("1,2,3")

    setups: list[tuple[str, Callable[[Path], None]]] = [
        ("directory of user files", user_dir),
        ("user file", lambda p: p.write_text("notes")),
        ("symlink to a program", lambda p: p.symlink_to(program)),
        ("symlink to a user directory", lambda p: (user_dir(p.with_name(p.name + "_real")),
                                                   p.symlink_to(p.with_name(p.name + "_real")))),
        ("dangling symlink", lambda p: p.symlink_to(work / "nowhere")),
        ("fifo", lambda p: os.mkfifo(p)),
        ("directory with a fake manifest", lambda p: (user_dir(p), (p / "manifest.json").write_text('{"format": 1}'))),
        ("directory with a non-JSON manifest", lambda p: (user_dir(p), (p / "manifest.json").write_text("x"))),
        ("empty directory", lambda p: p.mkdir()),
        ("program directory", lambda p: shutil.copytree(program, p)),
    ]
    for name, setup in setups:
        target = work / f"out_{name.replace(' ', '_')}"
        setup(target)
        before = snapshot(target)
        before_real = snapshot(target.with_name(target.name + "_real"))
        code, out, err, exc = cli(["compile", str(model_path), "-o", str(target), "--force", "-q"])
        category = "hostile -o with --force"
        if exc is not None:
            record(category, "traceback", f"{name}: {type(exc).__name__}: {exc}")
        elif code == 0:
            replaceable = name in ("empty directory", "program directory")
            complete = cli(emulate_argv(target))[0] == 0
            record(category, "ok" if replaceable and complete else "lost", f"{name}: replaced")
        else:
            kept = snapshot(target) == before and snapshot(target.with_name(target.name + "_real")) == before_real
            record(category, "clean" if kept and "error:" in err else "lost", f"{name}: {err[-200:]}")
    cwd = os.getcwd()
    inside = work / "cwd"
    inside.mkdir()
    shutil.copytree(program, inside / "prog")
    os.chdir(inside)
    try:
        for target in (".", "./", "..", "prog/..", "/", str(work / "out_user_file" / "sub"), "/proc/crossmap",
                       "/sys/crossmap", "/dev/null", "/dev/null/x", ""):
            before = snapshot(work)
            code, out, err, exc = cli(["compile", str(model_path), "-o", target, "--force", "-q"])
            if exc is not None:
                record("hostile -o with --force", "traceback", f"-o {target}: {type(exc).__name__}: {exc}")
            elif code == 0:
                record("hostile -o with --force", "lost", f"-o {target} was written")
            else:
                record("hostile -o with --force", "clean" if snapshot(work) == before else "lost", f"-o {target}")
    finally:
        os.chdir(cwd)


def argument_cases(work: Path, model_path: Path, program: Path) -> None:
    out = str(work / "argout")
    cases = [["compile", str(model_path), "-o", out, "--seed", v] for v in ("-1", str(2**31), "1e3", "x", str(10**30))]
    cases += [["compile", str(model_path), "-o", out, *a] for a in (("--ticks", "0"), ("--ticks", str(10**8)),
                                                                    ("--ensemble", "0"), ("--time-limit", "nan"),
                                                                    ("--time-limit", "-1"), ("--chip", "nochip"),
                                                                    ("--chip", "truenorth-0x0"), ("--pipeline", "x{"),
                                                                    ("--encoding", "morse"))]
    cases += [["run", str(program), "--dataset", "sample", *a] for a in (("--limit", "-1"), ("--limit", "0"),
                                                                        ("--batch-size", "0"), ("--workers", "-2"),
                                                                        ("--limit", "x"))]
    cases += [["emulate", str(program), *a] for a in (("--random", "0"), ("--random", "-3"), ("--ticks", "0"),
                                                      ("--ticks", str(10**9)), ("--seed", "-1"), ("--rate", "nan"),
                                                      ("--inputs", "/dev/null"), ("--inputs", str(program)))]
    cases += [["verify", str(program), str(model_path), "--limit", v] for v in ("0", "-5")]
    cases += [["verify", str(program), str(model_path), "--tolerance", v] for v in ("nan", "2")]
    cases += [["report", str(program), "--hottest", "-1"], ["report", str(program), "--pictures", "/proc/x"]]
    for argv in cases:
        classify("hostile arguments", argv, None)
        if os.path.lexists(out):
            record("hostile arguments", "wrong", f"{argv}: wrote {out}")
            shutil.rmtree(out, ignore_errors=True)


# ------------------------------------------------------------------------------ kills and races
def compile_command(model_path: Path, out: Path, force: bool) -> list[str]:
    return [sys.executable, "-m", "crossmap.cli", "compile", str(model_path), "-o", str(out), "-q"] + \
           (["--force"] if force else [])


def kill_cases(work: Path, model_path: Path, reference: str, kills: int, rng: random.Random) -> None:
    """Kill compiles at random moments (SIGKILL, SIGTERM, SIGINT), half of them replacing a
    program with --force: afterwards the output is absent, the old program, or the complete new one."""
    from crossmap.program import load

    start = time.perf_counter()
    proc = subprocess.run(compile_command(model_path, work / "timing", False), capture_output=True)
    full = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    old = work / "old_program"
    shutil.copytree(work / "timing", old)
    old_edit = json.loads((old / "manifest.json").read_text())
    old_edit["metadata"]["marker"] = "the old program"
    old_edit["manifest_checksum"] = manifest_digest(old_edit)
    (old / "manifest.json").write_text(json.dumps(old_edit))
    old_checksum = load(old).checksum(), old_edit["manifest_checksum"]
    parent = work / "kills"
    parent.mkdir()
    during_write = [0]
    for i in range(kills):
        force = i % 2 == 1
        out = parent / "prog"
        if force:
            shutil.rmtree(out, ignore_errors=True)
            shutil.copytree(old, out)
        elif out.exists():
            shutil.rmtree(out)
        sig = (signal.SIGKILL, signal.SIGKILL, signal.SIGTERM, signal.SIGINT)[i % 4] if i % 5 else signal.SIGKILL
        child = subprocess.Popen(compile_command(model_path, out, force), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        if i % 3 == 2:  # while the program is being written: as soon as its temporary directory appears
            deadline = time.perf_counter() + 3 * full
            while child.poll() is None and time.perf_counter() < deadline and \
                    not any(".prog.tmp-" in p.name for p in parent.iterdir()):
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.02))
            during_write[0] += 1
        else:
            time.sleep(rng.uniform(0.05, full * 1.05))
        child.send_signal(sig)
        _, err = child.communicate()
        category = "kills during compile"
        if "Traceback" in err and sig != signal.SIGINT:
            record(category, "traceback", f"signal {sig.name}: {err[-300:]}")
            continue
        if not out.exists():
            record(category, "lost" if force else "clean", f"kill {i} ({sig.name}): the old program is gone")
            continue
        try:
            program = load(out)
            manifest = json.loads((out / "manifest.json").read_text())
        except Exception as exc:  # noqa: BLE001
            record(category, "wrong", f"kill {i} ({sig.name}): half-written output: {exc}")
            continue
        is_old = (program.checksum(), manifest["manifest_checksum"]) == old_checksum
        is_new = manifest["manifest_checksum"] == reference
        record(category, "ok" if is_new else ("clean" if is_old else "wrong"), f"kill {i}: neither old nor new program")
    leftovers_before = [p.name for p in parent.iterdir() if p.name.startswith(".")]
    proc = subprocess.run(compile_command(model_path, parent / "next", False), capture_output=True, text=True)
    leftovers_after = [p.name for p in parent.iterdir() if p.name.startswith(".")]
    print(f"  kills: {during_write[0]} of {kills} aimed at the moment the program is written; "
          f"{len(leftovers_before)} temporary directories left by killed compiles; "
          f"{len(leftovers_after)} after the next compile into the same parent (exit {proc.returncode})", flush=True)
    record("kills during compile", "clean" if not leftovers_after else "wrong",
           f"temporaries not cleaned: {leftovers_after}")


def race_cases(work: Path, model_path: Path, reference: str, rounds: int) -> None:
    """Four compiles into one directory at once: one wins, the others say so; with --force the
    last one wins; never a traceback, a half-written program or a temporary directory left."""
    from crossmap.program import load

    for r in range(rounds):
        force = r % 2 == 1
        parent = work / f"race{r}"
        parent.mkdir()
        out = parent / "prog"
        children = [subprocess.Popen(compile_command(model_path, out, force), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True) for _ in range(4)]
        codes = []
        for child in children:
            _, err = child.communicate()
            codes.append(child.returncode)
            if "Traceback" in err:
                record("concurrent compiles", "traceback", err[-300:])
            elif child.returncode not in (0, 2):
                record("concurrent compiles", "wrong", f"exit {child.returncode}: {err[-200:]}")
            elif child.returncode == 2 and not ("already exists" in err or "another process" in err):
                record("concurrent compiles", "wrong", err[-200:])
            else:
                record("concurrent compiles", "ok" if child.returncode == 0 else "clean")
        try:
            same = json.loads((out / "manifest.json").read_text())["manifest_checksum"] == reference and load(out)
        except Exception as exc:  # noqa: BLE001
            same = False
            record("concurrent compiles", "wrong", f"round {r}: the program is unreadable: {exc}")
        leftovers = [p.name for p in parent.iterdir() if p.name != "prog"]
        if not same or leftovers or (not force and codes.count(0) < 1):
            record("concurrent compiles", "wrong", f"round {r}: codes {codes}, leftovers {leftovers}, same {bool(same)}")


# ------------------------------------------------------------------------------ main
def main_sweep() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flips", type=int, default=300, help="bit flips in arrays.npz (a third as many in the manifest)")
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--races", type=int, default=6, help="rounds of four concurrent compiles")
    parser.add_argument("--model-flips", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a tenth of the flips, 6 kills, 2 race rounds")
    parser.add_argument("--only", default=None, help="comma-separated stages to run (corrupt programs, hostile "
                                                     "models, hostile outputs, hostile arguments, kills, races)")
    args = parser.parse_args()
    if args.quick:
        args.flips, args.kills, args.races, args.model_flips = 30, 6, 2, 5
    rng = random.Random(args.seed)
    np.random.seed(args.seed)
    from crossmap.testing import write_bars_example

    with tempfile.TemporaryDirectory(prefix="crossmap-hostile-") as tmp:
        work = Path(tmp)
        model_path = work / "bmlp.onnx"
        onnx.save(binary_mlp(), str(model_path))
        pristine = write_bars_example(work / "bars")
        compiled = work / "compiled"
        code, _, err, exc = cli(["compile", str(model_path), "-o", str(compiled), "-q"])
        assert code == 0 and exc is None, err
        reference = json.loads((compiled / "manifest.json").read_text())["manifest_checksum"]
        stages = [("corrupt programs", lambda: program_cases(work, pristine, compiled, args.flips, rng)),
                  ("hostile models", lambda: model_cases(work, onnx.load(str(model_path)), rng, args.model_flips)),
                  ("hostile outputs", lambda: output_cases(work, model_path, compiled)),
                  ("hostile arguments", lambda: argument_cases(work, model_path, compiled)),
                  ("kills", lambda: kill_cases(work, model_path, reference, args.kills, rng)),
                  ("races", lambda: race_cases(work, model_path, reference, args.races))]
        wanted = None if args.only is None else {w.strip() for w in args.only.split(",")}
        for name, stage in stages:
            if wanted is not None and name not in wanted:
                continue
            start = time.perf_counter()
            print(f"{name} ...", flush=True)
            stage()
            print(f"  done in {time.perf_counter() - start:.1f} s", flush=True)
    header = ["category", "cases", "clean errors", "ok (same result)", "accepted (forged)", "tracebacks",
              "silent wrong", "data lost"]
    rows = []
    for category, counts in results.items():
        rows.append([category, sum(counts.values()), counts["clean"], counts["ok"], counts["forged"],
                     counts["traceback"], counts["wrong"], counts["lost"]])
    rows.append(["total"] + [sum(r[i] for r in rows) for i in range(1, len(header))])
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    print()
    for row in [header] + rows:
        print("  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w) for i, (v, w) in enumerate(zip(row, widths))))
    for (category, outcome), detail in examples.items():
        print(f"first {outcome} in {category}: {detail}")
    total = rows[-1]
    return 1 if total[5] or total[6] or total[7] else 0


if __name__ == "__main__":
    sys.exit(main_sweep())
