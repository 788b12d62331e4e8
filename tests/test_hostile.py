"""Hostile use, each case a regression test: what ``-o`` and ``--force`` may touch, corrupt program
directories, hostile models and arguments. Every case ends in a clean ``CrossmapError`` (one line,
its exit code) or a correct result; never a traceback, a silently wrong figure, or lost data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from crossmap.cli import main
from crossmap.errors import OutputError, OutputExistsError
from crossmap.outdir import check_output, clean_stale_temporaries
from crossmap.program import load
from crossmap.testing import bars_program

from crossmap.testing.onnx_models import binary_mlp


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "bmlp.onnx"
    onnx.save(binary_mlp((16, 8, 4), seed=3), str(path))
    return path


def compile_args(model_path, out, *extra):
    return ["compile", str(model_path), "-o", str(out), "-q", "--chip", "truenorth", *extra]


def one_line_error(capsys, code_expected, code):
    err = capsys.readouterr().err
    assert code == code_expected, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


# ------------------------------------------------------------------------------ -o and --force
def user_files(directory: Path) -> Path:
    directory.mkdir()
    (directory / "thesis.tex").write_text("years of work")
    (directory / "data").mkdir()
    (directory / "data" / "x.csv").write_text("1,2")
    return directory


def tree(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): (p.read_bytes() if p.is_file() else b"/")
            for p in sorted(directory.rglob("*"))}


def test_force_refuses_a_directory_of_user_files(model_path, tmp_path, capsys):
    out = user_files(tmp_path / "mine")
    before = tree(out)
    err = one_line_error(capsys, 2, main(compile_args(model_path, out, "--force")))
    assert "does not hold a crossmap program" in err and "nothing was changed" in err
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_force_refuses_a_regular_file_and_a_link(model_path, tmp_path, capsys):
    file = tmp_path / "notes.txt"
    file.write_text("keep me")
    err = one_line_error(capsys, 2, main(compile_args(model_path, file, "--force")))
    assert "is a regular file" in err and file.read_text() == "keep me"
    program = bars_program().save(tmp_path / "prog")
    link = tmp_path / "link"
    link.symlink_to(program)
    err = one_line_error(capsys, 2, main(compile_args(model_path, link, "--force")))
    assert "symbolic link" in err and link.is_symlink()


def test_force_refuses_a_special_file(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OutputExistsError, match="special file"):
        bars_program().save(fifo, overwrite=True)
    assert fifo.exists()


@pytest.mark.parametrize("output", [".", "./", "sub/..", ".."])
def test_force_refuses_the_current_directory_and_its_parents(model_path, tmp_path, monkeypatch, capsys, output):
    work = tmp_path / "work"
    work.mkdir()
    bars_program().save(work / "prog")
    (work / "notes.txt").write_text("keep")
    monkeypatch.chdir(work)
    before = tree(tmp_path)
    err = one_line_error(capsys, 2, main(compile_args(model_path, output, "--force")))
    assert "current directory" in err
    assert tree(tmp_path) == before


def test_force_replaces_a_program_directory_and_an_empty_one(tmp_path):
    program = bars_program()
    out = program.save(tmp_path / "prog")
    program.save(out, overwrite=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    program.save(empty, overwrite=True)
    assert load(empty).checksum() == load(out).checksum() == program.checksum()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "prog"]


@pytest.mark.parametrize("where", ["file", "proc", "root"])
def test_unwritable_output_paths_are_refused_before_any_work(model_path, tmp_path, monkeypatch, capsys, where):
    import crossmap.frontend

    def no_work(*args, **kwargs):
        raise AssertionError("the model was read before the output path was checked")

    monkeypatch.setattr(crossmap.frontend, "import_onnx", no_work)
    (tmp_path / "FILE").write_text("x")
    output = {"file": tmp_path / "FILE" / "sub", "proc": Path("/proc/crossmap-out"), "root": Path("/")}[where]
    if where == "proc" and not Path("/proc").is_dir():
        pytest.skip("no /proc on this system")
    err = one_line_error(capsys, 2, main(compile_args(model_path, output)))
    assert str(output) in err or repr(str(output)) in err


@pytest.mark.parametrize("argv", [
    ["compile", "MODEL", "-o", "OUT", "--seed", "-1"],
    ["compile", "MODEL", "-o", "OUT", "--seed", str(2**31)],
    ["compile", "MODEL", "-o", "OUT", "--seed", str(10**30)],
    ["compile", "MODEL", "-o", "OUT", "--ticks", "0"],
    ["compile", "MODEL", "-o", "OUT", "--ticks", str(10**7)],
    ["compile", "MODEL", "-o", "OUT", "--ensemble", "0"],
    ["compile", "MODEL", "-o", "OUT", "--time-limit", "nan"],
    ["compile", "MODEL", "-o", "OUT", "--time-limit", "-1"],
    ["run", "OUT", "--dataset", "sample", "--limit", "-1"],
    ["run", "OUT", "--dataset", "sample", "--limit", "0"],
    ["run", "OUT", "--dataset", "sample", "--batch-size", "0"],
    ["run", "OUT", "--dataset", "sample", "--workers", "0"],
    ["verify", "OUT", "MODEL", "--limit", "0"],
    ["emulate", "OUT", "--random", "0"],
    ["emulate", "OUT", "--random", "2", "--ticks", "0"],
    ["emulate", "OUT", "--random", "2", "--ticks", str(10**8)],
    ["emulate", "OUT", "--random", "2", "--seed", "-5"],
    ["report", "OUT", "--hottest", "-3"],
])
def test_bad_arguments_are_refused_before_any_work(model_path, tmp_path, monkeypatch, capsys, argv):
    import crossmap.frontend
    import crossmap.program

    monkeypatch.setattr(crossmap.frontend, "import_onnx", lambda *a, **k: pytest.fail("model read"))
    for module in (crossmap.program,):
        monkeypatch.setattr(module, "load", lambda *a, **k: pytest.fail("program read"))
    argv = [{"MODEL": str(model_path), "OUT": str(tmp_path / "o")}.get(a, a) for a in argv]
    err = one_line_error(capsys, 2, main(argv))
    assert "error: argument" in err
    assert not (tmp_path / "o").exists()


def test_bad_seed_in_the_api_is_refused_before_any_work(model_path, monkeypatch):
    import crossmap
    import crossmap.frontend
    from crossmap.errors import InputError

    monkeypatch.setattr(crossmap.frontend, "import_onnx", lambda *a, **k: pytest.fail("model read"))
    for seed in (-1, 2**31, 1.5, True):
        with pytest.raises(InputError, match="seed"):
            crossmap.compile(str(model_path), seed=seed)


def test_program_directories_honor_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        out = bars_program().save(tmp_path / "prog")
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o755
    assert (out / "manifest.json").stat().st_mode & 0o777 == 0o644


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    from crossmap.outdir import _host_tag

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    pid = int(dead.stdout)
    stale = tmp_path / f".prog.tmp-{_host_tag()}-{pid}-0123abcd"
    live = tmp_path / f".prog.tmp-{_host_tag()}-{os.getpid()}-0123abcd"
    other_host = tmp_path / f".prog.tmp-ffffffff-{pid}-0123abcd" if _host_tag() != "ffffffff" else None
    mine = tmp_path / ".prog.tmp-notours"
    for d in (stale, live, other_host, mine):
        if d is not None:
            d.mkdir()
            (d / "manifest.json").write_text("{}")
    bars_program().save(tmp_path / "next")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert stale.name not in names and live.name in names and mine.name in names and "next" in names
    if other_host is not None:
        assert other_host.name in names
    assert clean_stale_temporaries(tmp_path) == []


def test_a_program_set_aside_by_a_killed_writer_is_put_back(tmp_path):
    from crossmap.outdir import _host_tag

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    aside = tmp_path / f".prog.old-{_host_tag()}-{int(dead.stdout)}-0123abcd"
    aside.mkdir()
    program = bars_program()
    program.save(aside / "old")
    bars_program().save(tmp_path / "other")  # the next write into the same parent
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "prog"]
    assert load(tmp_path / "prog").checksum() == program.checksum()


def test_a_killed_compile_leaves_no_program_and_the_next_compile_cleans_up(model_path, tmp_path):
    out = tmp_path / "prog"
    code = ("import sys, time, crossmap.program as p\n"
            "orig = p.Program._write_into\n"
            "def slow(self, tmp, extra=None):\n"
            "    orig(self, tmp, extra); print('written', flush=True); time.sleep(60)\n"
            "p.Program._write_into = slow\n"
            "from crossmap.cli import main\n"
            f"main(['compile', {str(model_path)!r}, '-o', {str(out)!r}, '-q'])\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "written"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    left = [p.name for p in tmp_path.iterdir()]
    assert not out.exists() and len(left) == 1 and left[0].startswith(".prog.tmp-")
    assert main(compile_args(model_path, out)) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prog"]
    load(out)


@pytest.mark.parametrize("renameat2", [True, False])
def test_the_loser_of_two_concurrent_writes_gets_a_clear_error(tmp_path, monkeypatch, renameat2):
    from crossmap import outdir

    program = bars_program()
    out = tmp_path / "prog"
    real_rename, real_renameat2 = os.rename, outdir._renameat2

    def other_process_finishes_first():
        if not out.exists():
            program.save(tmp_path / "other")
            real_rename(tmp_path / "other", out)

    def rename(src, dst):
        if Path(dst) == out:
            other_process_finishes_first()
        return real_rename(src, dst)

    def rename2(src, dst, flags):
        if not renameat2:
            return False
        if Path(dst) == out:
            other_process_finishes_first()
        return real_renameat2(src, dst, flags)

    monkeypatch.setattr(outdir.os, "rename", rename)
    monkeypatch.setattr(outdir, "_renameat2", rename2)
    with pytest.raises(OutputExistsError, match="written by another process"):
        program.save(out)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prog"]
    assert load(out).checksum() == program.checksum()


def test_replacing_a_program_is_one_atomic_swap(tmp_path, monkeypatch):
    from crossmap import outdir

    first, second = bars_program(), bars_program()
    second.alpha[0, 0] += 1
    out = first.save(tmp_path / "prog")
    monkeypatch.setattr(outdir.os, "rename", lambda *a: pytest.fail("two renames: a kill between them loses both"))
    second.save(out, overwrite=True)
    assert load(out).checksum() == second.checksum()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prog"]


def test_check_output_returns_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert check_output("a/b") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # checking creates nothing
    with pytest.raises(OutputError, match="empty"):
        check_output("")


# ------------------------------------------------------------------------------ corrupt programs
from crossmap.errors import CrossmapError, ProgramError, ProgramFormatError  # noqa: E402
from crossmap.program_files import file_digest, manifest_digest  # noqa: E402


@pytest.fixture
def bars(tmp_path):
    from crossmap.testing import write_bars_example

    return write_bars_example(tmp_path / "bars")


def manifest_of(program: Path) -> dict:
    return json.loads((program / "manifest.json").read_text())


def write_manifest(program: Path, manifest: dict, sign: bool) -> None:
    if sign:  # a forger who recomputes the checksum: the field checks behind it must hold on their own
        manifest["manifest_checksum"] = manifest_digest(manifest)
    (program / "manifest.json").write_text(json.dumps(manifest))


def set_path(manifest: dict, dotted: str, value) -> dict:
    *parents, last = dotted.split(".")
    node = manifest
    for key in parents:
        node = node[key]
    node[last] = value
    return manifest


EDITS = [
    ("latency", 2), ("input_ticks", 5), ("encoding.kind", "rate"), ("num_classes", 3),
    ("chip.energy.synaptic_event_pj", 1.0), ("chip.energy.static_core_tick_pj", 0.0),
    ("metadata.seed", 7), ("core_labels", ["x", "y"]),
]


@pytest.mark.parametrize("field, value", EDITS)
def test_an_edited_manifest_field_is_caught_by_the_checksum(bars, capsys, field, value):
    write_manifest(bars, set_path(manifest_of(bars), field, value), sign=False)
    with pytest.raises(ProgramFormatError, match="manifest.json: checksum mismatch .*recompile"):
        load(bars)
    err = one_line_error(capsys, 3, main(["emulate", str(bars), "--random", "2"]))
    assert "manifest_checksum" in err


@pytest.mark.parametrize("field, value, message", [
    ("input_ticks", 10**7, "input_ticks"),
    ("latency", 10**8, "latency"),
    ("num_classes", 10**9, "num_classes"),
    ("num_classes", 10**30, "num_classes"),
    ("num_inputs", 10**12, "num_inputs"),
    ("encoding.threshold", "abc", "encoding"),
    ("encoding.kind", "spikes2", "encoding"),
    ("encoding.ticks", 3, "encoding"),
    ("chip.mesh_x", 10**9, "mesh_x"),
    ("chip.board_y", 10**6, "board_y"),
    ("chip.name", {"a": 1}, "name"),
    ("chip.energy.hop_pj", -1.0, "hop_pj"),
    ("chip.energy.hop_pj", 1e300, "hop_pj"),
    ("num_cores", 10**9, "num_cores"),
    ("num_cores", 3, "arrays.crossbar"),
    ("arrays.alpha.shape", [2, 10**9], "alpha"),
    ("arrays.alpha.dtype", "bool", "alpha"),
    ("metadata.seed", -1, "seed"),
    ("metadata.source_sha256", "not a hash", "source_sha256"),
    ("schema_version", "1", "schema_version"),
    ("core_labels", ["x"], "core_labels"),
])
def test_forged_manifest_fields_are_refused_by_bounds(bars, capsys, field, value, message):
    write_manifest(bars, set_path(manifest_of(bars), field, value), sign=True)
    with pytest.raises((ProgramFormatError, ProgramError)) as info:
        load(bars)
    assert message in str(info.value) and "recompile" in str(info.value)
    one_line_error(capsys, 3, main(["emulate", str(bars), "--random", "2"]))


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_in_the_manifest_are_refused(bars, literal):
    manifest = set_path(manifest_of(bars), "chip.energy.spike_pj", 12345.5)
    write_manifest(bars, manifest, sign=True)
    text = (bars / "manifest.json").read_text().replace("12345.5", literal)
    (bars / "manifest.json").write_text(text)
    with pytest.raises(ProgramFormatError, match=f"not valid JSON \\({literal} is not a JSON number\\)"):
        load(bars)


def test_a_deeply_nested_manifest_is_refused(bars):
    deep = "[" * 200_000 + "]" * 200_000
    text = (bars / "manifest.json").read_text()
    (bars / "manifest.json").write_text(text.replace('"metadata": {', f'"deep": {deep}, "metadata": {{', 1))
    with pytest.raises(ProgramFormatError, match="manifest.json: not valid JSON"):
        load(bars)
    nested: list = []
    for _ in range(100):
        nested = [nested]
    forged = set_path(json.loads(text), "metadata.deep", nested)
    write_manifest(bars, forged, sign=True)
    with pytest.raises(ProgramFormatError, match="nested more than 64 levels"):
        load(bars)


def test_a_huge_manifest_is_refused_before_parsing(bars, monkeypatch):
    import crossmap.program_files as files

    monkeypatch.setattr(files, "MAX_MANIFEST_BYTES", 1000)
    with pytest.raises(ProgramFormatError, match="more than the 1,000 a program's JSON may have"):
        load(bars)


def rewrite_npz(program: Path, members: dict[str, bytes], compression=None) -> None:
    import zipfile

    with zipfile.ZipFile(program / "arrays.npz") as archive:
        stored = {info.filename: archive.read(info) for info in archive.infolist()}
    stored.update(members)
    with zipfile.ZipFile(program / "arrays.npz", "w", compression or zipfile.ZIP_DEFLATED) as archive:
        for name, data in stored.items():
            archive.writestr(name, data)


def npy_header(dtype: str, shape: tuple) -> bytes:
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    text = repr(header).encode() + b" "
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text


@pytest.mark.parametrize("header, message", [
    (npy_header("<i4", (10**12,)), "manifest says int32"),
    (npy_header("<i4", (2, 16)), "manifest says int32"),
    (npy_header(">i4", (2, 256)), "manifest says int32"),
    (npy_header("<i8", (2, 256)), "manifest says int32"),
    (npy_header("|O", (2, 256)), "manifest says int32"),
    (b"\x93NUMPY\x01\x00\xff\xff" + b"{" * 65535, "unpacks to 67,593 bytes"),
    (b"\x93NUMPY\x01\x00\x00\xf0" + b"{" * 0xf000, "cannot read the arrays"),
    (b"\x93NUMPY\x09\x00", "format version"),
    (b"garbage", "cannot read the arrays"),
])
def test_npz_headers_are_checked_before_the_data_is_read(bars, header, message):
    rewrite_npz(bars, {"alpha.npy": header + bytes(2 * 256 * 4)})  # the size alpha needs
    with pytest.raises(ProgramFormatError, match=message) as info:
        load(bars)
    assert "arrays.npz" in str(info.value) and "recompile" in str(info.value)


def test_an_extra_member_is_refused_without_decompressing_it(bars, monkeypatch):
    import zipfile

    big = 64 * 2**20
    with zipfile.ZipFile(bars / "arrays.npz", "a", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("extra.npy", "w", force_zip64=True) as handle:
            chunk = bytes(2**20)
            for _ in range(big // len(chunk)):
                handle.write(chunk)
    assert (bars / "arrays.npz").stat().st_size < big // 100
    reads = []
    real_read = zipfile.ZipExtFile.read

    def counting_read(self, n=-1):
        data = real_read(self, n)
        reads.append(len(data))
        return data

    monkeypatch.setattr(zipfile.ZipExtFile, "read", counting_read)
    with pytest.raises(ProgramFormatError, match="member 'extra.npy' is not an array of a program"):
        load(bars)
    assert sum(reads) < 2**20


def test_a_member_that_unpacks_to_more_than_its_shape_is_refused(bars):
    import io
    import zipfile

    with zipfile.ZipFile(bars / "arrays.npz") as archive:
        alpha = np.load(io.BytesIO(archive.read("alpha.npy")))
    data = npy_header("<i4", alpha.shape) + alpha.tobytes() + bytes(10 * 2**20)
    rewrite_npz(bars, {"alpha.npy": data})
    with pytest.raises(ProgramFormatError, match="member 'alpha.npy' unpacks to 10,"):
        load(bars)


def test_an_arrays_file_larger_than_the_manifest_allows_is_refused(bars):
    with open(bars / "arrays.npz", "ab") as handle:
        handle.write(os.urandom(4 * 2**20))
    with pytest.raises(ProgramFormatError, match="more than the arrays the manifest lists can take"):
        load(bars)


def test_bool_arrays_hold_only_zero_and_one(bars):
    import io
    import zipfile

    with zipfile.ZipFile(bars / "arrays.npz") as archive:
        stochastic = np.load(io.BytesIO(archive.read("stochastic_synapse.npy")))
    raw = stochastic.view(np.uint8).copy()
    raw.reshape(-1)[0] = 2
    buffer = io.BytesIO()
    np.save(buffer, raw.view(bool))
    rewrite_npz(bars, {"stochastic_synapse.npy": buffer.getvalue()})
    with pytest.raises(ProgramFormatError, match="holds bytes other than 0 and 1"):
        load(bars)


def test_report_json_is_covered_by_the_manifest(tmp_path, capsys):
    program = bars_program()
    program.reports = {"partition": {"cores": 2}}
    out = program.save(tmp_path / "prog")
    assert main(["report", str(out), "--json"]) == 0
    capsys.readouterr()
    (out / "report.json").write_text('{"place": 5}')
    err = one_line_error(capsys, 3, main(["report", str(out)]))
    assert "report.json: checksum mismatch" in err
    manifest = manifest_of(out)
    manifest["files"]["report.json"] = file_digest((out / "report.json").read_bytes())
    write_manifest(out, manifest, sign=True)
    err = one_line_error(capsys, 3, main(["report", str(out)]))
    assert "report.json: not an object of pass reports" in err
    for content, field in [({"place": {"chip_crossing_penalty": "x"}}, "place.chip_crossing_penalty"),
                           ({"route": {"hops_mean": [1]}}, "route.hops_mean"),
                           ({"route": {"hottest_links": [{"from": "a"}]}}, "route.hottest_links"),
                           ({"place": {"stages": 3}}, "place.stages")]:
        (out / "report.json").write_text(json.dumps(content))
        manifest = manifest_of(out)
        manifest["files"]["report.json"] = file_digest((out / "report.json").read_bytes())
        write_manifest(out, manifest, sign=True)
        err = one_line_error(capsys, 3, main(["report", str(out)]))
        assert f"field '{field}'" in err


def test_a_report_json_the_manifest_does_not_list_is_ignored(tmp_path, capsys):
    out = bars_program().save(tmp_path / "prog")
    (out / "report.json").write_text('{"route": {"traffic": "spikes per sample", "edges": [[0, 1, 1e9]]}}')
    with pytest.warns(UserWarning, match="not written with the program"):
        assert main(["report", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["program"]["has_compiler_report"] is False


# ------------------------------------------------------------------------------ random bit flips
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """The bars example saved once, its files' bytes, and its emulation on fixed inputs."""
    import crossmap
    from crossmap.testing import random_inputs, write_bars_example

    out = write_bars_example(tmp_path_factory.mktemp("pristine") / "bars")
    program = load(out)
    spikes = random_inputs(program, 4, 0, 0.4)
    result = crossmap.emulate(program, spikes)
    files = {name: (out / name).read_bytes() for name in ("manifest.json", "arrays.npz")}
    return files, spikes, result, program


@settings(max_examples=120, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(["manifest.json", "arrays.npz"]), flips=st.lists(st.integers(0, 2**40), min_size=1,
                                                                             max_size=3))
def test_random_bit_flips_give_a_clean_error_or_the_same_program(pristine, tmp_path_factory, which, flips):
    import crossmap

    files, spikes, expected, original = pristine
    out = tmp_path_factory.mktemp("flipped")
    data = {name: bytearray(content) for name, content in files.items()}
    target = data[which]
    for flip in flips:
        bit = flip % (8 * len(target))
        target[bit // 8] ^= 1 << (bit % 8)
    for name, content in data.items():
        (out / name).write_bytes(bytes(content))
    try:
        program = load(out)
    except CrossmapError as exc:
        assert isinstance(exc, (ProgramError, ProgramFormatError)) and "recompile" in str(exc)
        return
    # a flip the format does not depend on (zip timestamps, JSON whitespace): the same program
    assert program.checksum() == original.checksum()
    assert program.manifest() == original.manifest()
    result = crossmap.emulate(program, spikes)
    np.testing.assert_array_equal(result.class_counts, expected.class_counts)
    for key, value in result.energy().items():
        np.testing.assert_array_equal(value, expected.energy()[key])


# ------------------------------------------------------------------------------ hostile models
from crossmap.errors import ModelError  # noqa: E402
from onnx import helper, numpy_helper  # noqa: E402


def with_tensor(model: onnx.ModelProto, name: str, edit) -> onnx.ModelProto:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for i, tensor in enumerate(model.graph.initializer):
        if tensor.name == name:
            values = numpy_helper.to_array(tensor).copy()
            edit(values)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(values, name))
    return model


@pytest.mark.parametrize("name, value, node", [
    ("fc0.bias", -np.inf, "fc0"), ("fc1.weight", np.nan, "fc1"), ("fc0.weight", np.inf, "fc0")])
def test_non_finite_weights_are_refused_with_the_node_name(tmp_path, capsys, name, value, node):
    def poison(values):
        values.reshape(-1)[1] = value

    path = tmp_path / "bad.onnx"
    onnx.save(with_tensor(binary_mlp((16, 8, 4), seed=3), name, poison), str(path))
    err = one_line_error(capsys, 4, main(compile_args(path, tmp_path / "out")))
    assert f"node '{node}' (Gemm)" in err and "non-finite" in err and name in err
    assert not (tmp_path / "out").exists()


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_weights_folded_to_infinity_are_refused(tmp_path):
    from crossmap.testing.onnx_models import make_model

    nodes = [helper.make_node("Div", ["w", "zero"], ["w_inf"], name="divide"),
             helper.make_node("Gemm", ["x", "w_inf", "b"], ["z"], name="fc0", transB=1),
             helper.make_node("Relu", ["z"], ["y"], name="relu0")]
    model = make_model(nodes, ["N", 4], ["N", 2], {"w": np.ones((2, 4), np.float32),
                                                   "zero": np.zeros((2, 4), np.float32),
                                                   "b": np.zeros(2, np.float32)})
    with pytest.raises(ModelError, match="layer 'fc0' .*non-finite .*after constant folding"):
        import crossmap.frontend

        crossmap.frontend.import_onnx(model)


def test_an_opset_newer_than_onnx_knows_is_refused(tmp_path, capsys):
    model = binary_mlp((16, 8, 4), seed=3)
    model.opset_import[0].version = 99
    path = tmp_path / "future.onnx"
    path.write_bytes(model.SerializeToString())
    err = one_line_error(capsys, 4, main(compile_args(path, tmp_path / "out")))
    assert "imports opset 99" in err


@pytest.mark.parametrize("content", [b"", b"\x00" * 100, os.urandom(4096), b"\x0a\xff\xff\xff\xff\x0f",
                                     b"\x3a" + b"\x0a\x80\x80\x80\x80\x10" * 50, "directory", "unreadable"])
def test_unreadable_models_are_model_errors(model_path, tmp_path, capsys, content):
    path = tmp_path / "m.onnx"
    if content == "directory":
        path.mkdir()
    elif content == "unreadable":
        if os.geteuid() == 0:
            pytest.skip("root reads every file")
        path.write_bytes(model_path.read_bytes())
        path.chmod(0)
    else:
        path.write_bytes(content)
    one_line_error(capsys, 4, main(compile_args(path, tmp_path / "out")))
    assert not (tmp_path / "out").exists()


def test_a_truncated_model_is_a_model_error(model_path, tmp_path, capsys):
    data = model_path.read_bytes()
    for cut in (len(data) // 3, len(data) - 7):
        path = tmp_path / f"cut{cut}.onnx"
        path.write_bytes(data[:cut])
        one_line_error(capsys, 4, main(compile_args(path, tmp_path / "out")))


# ------------------------------------------------------------------------------ verify and energy
@pytest.fixture(scope="module")
def compiled(model_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("compiled") / "prog"
    assert main(compile_args(model_path, out)) == 0
    return out


def test_verify_refuses_a_model_the_program_was_not_compiled_from(compiled, tmp_path, capsys):
    other = tmp_path / "other.onnx"
    onnx.save(binary_mlp((16, 8, 4), seed=4), str(other))
    err = one_line_error(capsys, 4, main(["verify", str(compiled), str(other), "--limit", "8"]))
    assert "this is not the model the program was compiled from" in err and "--any-model" in err
    code = main(["verify", str(compiled), str(other), "--limit", "8", "--any-model"])
    out = capsys.readouterr().out
    assert code in (0, 1) and out.startswith("note: this is not the model the program was compiled from")


def test_verify_with_the_right_model_has_no_note(compiled, model_path, capsys):
    assert main(["verify", str(compiled), str(model_path), "--limit", "8", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["model_note"] is None


def test_every_energy_figure_says_what_activity_it_comes_from(compiled, capsys):
    assert main(["report", str(compiled), "--json"]) == 0
    energy = json.loads(capsys.readouterr().out)["energy"]
    assert energy["activity"].startswith("compile-time calibration traffic")
    assert main(["report", str(compiled)]) == 0
    assert "activity: compile-time calibration traffic" in capsys.readouterr().out
    assert main(["run", str(compiled), "--dataset", "sample", "--limit", "5", "--json"]) == 2  # 784 inputs, not 16
    capsys.readouterr()
    assert main(["emulate", str(compiled), "--random", "3", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary["energy_activity"] == "measured: the activity counted while emulating these 3 samples"
    assert main(["emulate", str(compiled), "--random", "3"]) == 0
    assert "from the activity measured on these 3 samples" in capsys.readouterr().out


def test_run_labels_its_energy_as_measured(tmp_path, capsys):
    from crossmap.runner import run_arrays
    from crossmap.testing import bars_program, bars_samples

    program = bars_program()
    spikes, labels = bars_samples(6, seed=0)
    summary = run_arrays(program, spikes[:, 0].astype(np.float32), labels, name="bars")
    assert summary["energy_activity"] == "measured: the activity counted while emulating these 6 samples of bars"


def test_counts_are_checked_in_the_api_too(compiled, model_path):
    from crossmap.errors import InputError
    from crossmap.runner import load_dataset
    from crossmap.verify import verify

    for limit in (0, -1, True):
        with pytest.raises(InputError, match="limit"):
            load_dataset("sample", limit=limit)
        with pytest.raises(CrossmapError, match="limit"):
            verify(load(compiled), str(model_path), limit=limit)
    import crossmap

    with pytest.raises(InputError, match="ticks"):
        crossmap.emulate(bars_program(), np.zeros((1, 16), bool), ticks=10**9)
