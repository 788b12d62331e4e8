"""Program: save/load round trip, checksum, every way a program directory can be broken (each a
CrossmapError naming the file and the field), validation against the chip, atomic saves."""

import io
import json
import os
import zipfile

import numpy as np
import pytest

import crossmap
from crossmap.errors import CrossmapError, OutputError, OutputExistsError, ProgramError, ProgramFormatError
from crossmap.outdir import write_directory_atomically
from crossmap.program_files import manifest_digest, write_arrays
from crossmap.program import ARRAY_FIELDS, ARRAYS, MANIFEST, Program, load
from crossmap.testing import random_inputs, random_program, small_chip


@pytest.fixture
def prog():
    p = random_program(small_chip(), 3, 5, recurrent=True, stochastic=True, input_ticks=2, latency=4)
    p.core_labels = ["a", "b", "c"]
    p.group_names = ["layer0"]
    p.neuron_group[0, :4] = 0
    p.neuron_index[0, :4] = np.arange(4)
    p.encoding = {"kind": "rate", "ticks": 2}
    return p.validate()


@pytest.fixture
def saved(prog, tmp_path):
    return prog.save(tmp_path / "prog")


def test_round_trip(prog, saved):
    back = load(saved)
    for name in ARRAY_FIELDS:
        np.testing.assert_array_equal(getattr(back, name), getattr(prog, name), err_msg=name)
        assert getattr(back, name).dtype == np.dtype(ARRAY_FIELDS[name][0])
    assert back.chip == prog.chip and back.checksum() == prog.checksum()
    assert (back.num_inputs, back.num_classes, back.input_ticks, back.latency) == \
           (prog.num_inputs, prog.num_classes, prog.input_ticks, prog.latency)
    assert back.core_labels == ["a", "b", "c"] and back.group_names == ["layer0"]
    assert back.encoding == {"kind": "rate", "ticks": 2}
    assert back.metadata["seed"] == 5 and back.metadata["crossmap_version"] == crossmap.__version__
    spikes = random_inputs(prog, 3, 0, 0.5)
    a, b = crossmap.emulate(prog, spikes, record=True), crossmap.emulate(back, spikes, record=True)
    np.testing.assert_array_equal(a.spikes, b.spikes)


def test_crossbar_is_bit_packed(saved, prog):
    with np.load(saved / ARRAYS) as npz:
        assert npz["crossbar"].dtype == np.uint8 and npz["crossbar"].size == (prog.crossbar.size + 7) // 8


@pytest.mark.parametrize("field", ["crossbar", "weight", "alpha", "target_delay", "port_class", "core_xy"])
def test_checksum_sees_every_change(prog, field):
    before = prog.checksum()
    arr = getattr(prog, field)
    flat = arr.reshape(-1)
    flat[0] = (not flat[0]) if arr.dtype == bool else flat[0] + 1
    assert prog.checksum() != before


def write_unchecked(prog, path):
    """Write a program without validating it (as a buggy tool or a hand edit might)."""
    write_directory_atomically(path, prog._write_into, False)
    return path


def edit_manifest(path, **changes):
    """Change manifest fields and sign the result again (as a careful forger would), so that the
    checks behind the manifest's checksum are reached."""
    manifest = json.loads((path / MANIFEST).read_text())
    manifest.update(changes)
    manifest["manifest_checksum"] = manifest_digest(manifest)
    (path / MANIFEST).write_text(json.dumps(manifest))


def test_missing_directory_and_files(saved, tmp_path):
    with pytest.raises(ProgramFormatError, match="does not exist; compile one"):
        load(tmp_path / "nothing")
    os.remove(saved / ARRAYS)
    with pytest.raises(ProgramFormatError, match=f"{ARRAYS}: file missing"):
        load(saved)
    os.remove(saved / MANIFEST)
    with pytest.raises(ProgramFormatError, match=f"{MANIFEST}: file missing"):
        load(saved)


def test_corrupt_manifest(saved):
    (saved / MANIFEST).write_text('{"schema_version": 1, "format": ')
    with pytest.raises(ProgramFormatError, match=f"{MANIFEST}: not valid JSON"):
        load(saved)
    (saved / MANIFEST).write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ProgramFormatError, match=MANIFEST):
        load(saved)


def test_truncated_arrays(saved):
    data = (saved / ARRAYS).read_bytes()
    (saved / ARRAYS).write_bytes(data[: len(data) // 2])
    with pytest.raises(ProgramFormatError, match=f"{ARRAYS}: cannot read the arrays"):
        load(saved)


def test_newer_schema_version(saved):
    edit_manifest(saved, schema_version=2)
    with pytest.raises(ProgramFormatError, match="schema_version 2 was written by a newer crossmap") as info:
        load(saved)
    assert MANIFEST in str(info.value)


@pytest.mark.parametrize("changes, field", [
    ({"num_inputs": "many"}, "num_inputs"),
    ({"format": "other"}, "format"),
    ({"checksum": "abc"}, "checksum"),
    ({"input_ticks": 0}, "input_ticks"),
])
def test_manifest_fields_checked_against_the_schema(saved, changes, field):
    edit_manifest(saved, **changes)
    with pytest.raises(ProgramFormatError, match=f"field '{field}'") as info:
        load(saved)
    assert MANIFEST in str(info.value)


def test_missing_manifest_field(saved):
    manifest = json.loads((saved / MANIFEST).read_text())
    del manifest["latency"]
    manifest["manifest_checksum"] = manifest_digest(manifest)
    (saved / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ProgramFormatError, match="'latency' is a required property"):
        load(saved)


def test_checksum_mismatch(saved, prog):
    prog.alpha[0, 0] += 1  # arrays change, the manifest keeps the old checksum
    tmp = saved.parent / "other"
    prog.save(tmp)
    os.replace(tmp / ARRAYS, saved / ARRAYS)
    with pytest.raises(ProgramFormatError, match=f"{ARRAYS}: checksum mismatch"):
        load(saved)


def test_array_dtype_must_match_manifest(saved):
    with np.load(saved / ARRAYS) as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays["alpha"] = arrays["alpha"].astype(np.int64)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    (saved / ARRAYS).write_bytes(buffer.getvalue())
    with pytest.raises(ProgramFormatError, match=r"array 'alpha' is int64\[3, 8\], the manifest says int32"):
        load(saved)


@pytest.mark.parametrize("field, where, value, message", [
    ("alpha", (0, 0), 0, "'alpha' at (0, 0) = 0 is outside [1, 400]"),
    ("weight", (1, 2, 0), 300, "'weight' at (1, 2, 0) = 300 is outside [-255, 255]"),
    ("reset_mode", (2, 7), 3, "'reset_mode' at (2, 7) = 3 is outside [0, 2]"),
    ("threshold_mask", (0, 1), -1, "'threshold_mask'"),
])
def test_out_of_range_field_in_a_saved_program(prog, tmp_path, field, where, value, message):
    getattr(prog, field)[where] = value
    path = write_unchecked(prog, tmp_path / "bad")
    with pytest.raises(ProgramError) as info:
        load(path)
    assert message in str(info.value) and str(path) in str(info.value)


def route(prog, delay=3, core=1, axon=2):
    prog.output_port[0, 0] = -1
    prog.target_core[0, 0], prog.target_axon[0, 0], prog.target_delay[0, 0] = core, axon, delay
    return prog


@pytest.mark.parametrize("edit, message", [
    (lambda p: route(p, delay=0), "'target_delay' at (0, 0) = 0 is outside [1, 15]"),
    (lambda p: route(p, delay=16), "'target_delay' at (0, 0) = 16 is outside [1, 15]"),
    (lambda p: route(p, core=3), "'target_core' at (0, 0) = 3 is outside [-1, 2]"),
    (lambda p: route(p, axon=8), "'target_axon' at (0, 0) = 8 is outside [0, 7]"),
    (lambda p: p.core_xy.__setitem__((1, 0), 8), "'core_xy' at (1, 0) = 8 is outside [0, 7]"),
    (lambda p: p.core_xy.__setitem__(1, p.core_xy[0]), "two cores share a mesh position"),
    (lambda p: p.input_axon.__setitem__(0, 9), "'input_axon'"),
    (lambda p: p.port_class.__setitem__(0, 3), "'port_class'"),
])
def test_validation_names_the_field(prog, edit, message):
    edit(prog)
    with pytest.raises(ProgramError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
                       .replace(")", r"\)")):
        prog.validate()


def test_core_outside_a_non_square_board():
    prog = random_program(small_chip(board_y=1), 2, 0)  # an 8 x 4 grid of cores
    prog.core_xy[1] = [2, 5]
    with pytest.raises(ProgramError, match="a core coordinate lies outside the 8 x 4 board mesh"):
        prog.validate()


def test_a_neuron_has_one_target(prog):
    route(prog)
    prog.output_port[prog.output_port == 0] = -1
    prog.output_port[0, 0] = 0
    with pytest.raises(ProgramError, match="both a target core and an output port"):
        prog.validate()


def test_delays_of_unrouted_neurons_are_not_checked(prog):
    prog.target_delay[prog.target_core < 0] = 0  # unused delays are not checked
    prog.validate()


def test_existing_directory_refused_unless_overwrite(prog, saved):
    with pytest.raises(OutputExistsError, match="already exists; choose a new path or pass overwrite=True"):
        prog.save(saved)
    prog.alpha[0, 0] = 2
    prog.save(saved, overwrite=True)
    assert load(saved).alpha[0, 0] == 2


def test_arrays_file_depends_only_on_the_arrays(tmp_path):
    arrays = {"a": np.arange(1000, dtype=np.int32).reshape(10, 100), "b": np.zeros(0, np.uint8),
              "c": np.array([True, False])}
    write_arrays(tmp_path / "one.npz", arrays)
    write_arrays(tmp_path / "two.npz", arrays)
    assert (tmp_path / "one.npz").read_bytes() == (tmp_path / "two.npz").read_bytes()
    with zipfile.ZipFile(tmp_path / "one.npz") as archive:  # no clock in the file
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    with np.load(tmp_path / "one.npz") as loaded:
        assert loaded.files == ["a", "b", "c"]
        for name, value in arrays.items():
            np.testing.assert_array_equal(loaded[name], value)
            assert loaded[name].dtype == value.dtype


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir())


def test_failed_save_leaves_nothing(prog, tmp_path, monkeypatch):
    prog.alpha[0, 0] = 0  # invalid: refused before anything is written
    with pytest.raises(ProgramError):
        prog.save(tmp_path / "a")
    assert leftovers(tmp_path) == []
    prog.alpha[0, 0] = 1

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "writestr", disk_full)
    with pytest.raises(OutputError, match="No space left on device; nothing was written"):
        prog.save(tmp_path / "b")
    assert leftovers(tmp_path) == []


def test_failed_overwrite_keeps_the_old_program(prog, saved, monkeypatch):
    before = load(saved).checksum()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "writestr", disk_full)
    prog.alpha[0, 0] = 3
    with pytest.raises(OutputError, match="No space left on device"):
        prog.save(saved, overwrite=True)
    assert load(saved).checksum() == before
    assert leftovers(saved.parent) == [saved.name]


def test_errors_are_crossmap_errors():
    for cls in (ProgramError, ProgramFormatError, OutputExistsError):
        assert issubclass(cls, CrossmapError)


def test_empty_program_is_valid_and_idle():
    prog = Program.empty(small_chip(), 2, num_inputs=3, num_classes=2).validate()
    result = crossmap.emulate(prog, np.ones((2, 3), bool), ticks=4)
    assert result.spike_count.tolist() == [0, 0] and result.synaptic_events.tolist() == [0, 0]
