"""Hostile use, each case a regression test: what ``-o`` and ``--force`` may touch, corrupt program
directories, hostile models and arguments. Every case ends in a clean ``CrossmapError`` (one line,
its exit code) or a correct result; never a traceback, a silently wrong figure, or lost data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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


def test_the_loser_of_two_concurrent_writes_gets_a_clear_error(tmp_path, monkeypatch):
    from crossmap import outdir

    program = bars_program()
    out = tmp_path / "prog"
    real_rename = os.rename

    def rename(src, dst):
        # the other process finishes first, in the window between our check and our rename
        if Path(dst) == out and not out.exists():
            program.save(tmp_path / "other")
            real_rename(tmp_path / "other", out)
        return real_rename(src, dst)

    monkeypatch.setattr(outdir.os, "rename", rename)
    with pytest.raises(OutputExistsError, match="written by another process"):
        program.save(out)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prog"]
    assert load(out).checksum() == program.checksum()


def test_check_output_returns_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert check_output("a/b") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # checking creates nothing
    with pytest.raises(OutputError, match="empty"):
        check_output("")
