"""The emit pass (report.json inside the atomic write) and ``crossmap report``: text, JSON,
pictures and HTML, with and without the compiler's report."""

import json

import networkx as nx
import numpy as np
import pytest

from crossmap.chip import ChipSpec
from crossmap.cli import main
from crossmap.errors import OutputExistsError, PipelineError, ProgramError, ProgramFormatError
from crossmap.jsonio import dumps
from crossmap.pipeline import CompileState, parse_pipeline
from crossmap.program import REPORT_FILE, Program, load
from crossmap.report import build_report, format_text


def tiny_program() -> Program:
    """Two cores on a 4 x 4 chip: input -> core 0 -> core 1 (delay 2) -> output port."""
    chip = ChipSpec(name="report-test", axons_per_core=4, neurons_per_core=4, mesh_x=4, mesh_y=4)
    p = Program.empty(chip, 2, num_inputs=2, num_classes=2)
    p.crossbar[0, 0, :2] = True
    p.crossbar[0, 1, 1] = True
    p.crossbar[1, 0, 0] = p.crossbar[1, 0, 1] = p.crossbar[1, 1, 1] = True
    p.target_core[0, :2] = 1
    p.target_axon[0, :2] = [0, 1]
    p.target_delay[0, :2] = 2
    p.output_port[1, :2] = [0, 1]
    p.port_class = np.array([0, 1], np.int32)
    p.input_channel = np.array([0, 1], np.int32)
    p.input_core = np.zeros(2, np.int32)
    p.input_axon = np.array([0, 1], np.int32)
    p.core_xy = np.array([[0, 0], [3, 3]], np.int32)  # far apart: place will move them
    p.latency = 2
    p.group_names = ["hidden", "out"]
    p.neuron_group[0, :2] = 0
    p.neuron_group[1, :2] = 1
    return p.validate()


def compile_tiny(out, overwrite=False, reports=None):
    graph = nx.DiGraph()
    graph.add_edge(0, 1, traffic=6.0)
    state = CompileState(chip=tiny_program().chip, program=tiny_program(), core_graph=graph, output_dir=out,
                         overwrite=overwrite, seed=1)
    state.reports.update(reports or {"partition": {"cores": 2, "splitters": 0}})
    for p in parse_pipeline("place{time_limit=5},route,emit", given=("program", "core_graph")):
        state = p.run(state)
    return state


def test_emit_writes_program_and_report_in_one_directory(tmp_path):
    out = tmp_path / "prog"
    state = compile_tiny(out)
    assert sorted(f.name for f in out.iterdir()) == ["arrays.npz", "manifest.json", REPORT_FILE]
    saved = json.loads((out / REPORT_FILE).read_text())
    assert set(saved) == {"partition", "place", "route"}
    assert saved["place"]["objective"] == pytest.approx(6.0)  # adjacent cores, 6 spikes one hop
    assert np.array_equal(load(out).core_xy, state.program.core_xy)
    again = tmp_path / "again"
    compile_tiny(again)
    assert (again / REPORT_FILE).read_bytes() == (out / REPORT_FILE).read_bytes()


def test_emit_refuses_an_existing_directory_and_leaves_it_alone(tmp_path):
    out = tmp_path / "prog"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError):
        compile_tiny(out)
    assert [f.name for f in out.iterdir()] == ["keep.txt"]
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".prog")]  # no temp dirs left
    with pytest.raises(OutputExistsError, match="does not hold a crossmap program"):
        compile_tiny(out, overwrite=True)  # overwrite replaces only a program directory
    assert [f.name for f in out.iterdir()] == ["keep.txt"]
    (out / "keep.txt").unlink()
    compile_tiny(out, overwrite=True)  # an empty directory
    compile_tiny(out, overwrite=True)  # a program directory
    assert (out / REPORT_FILE).is_file()


def test_emit_needs_an_output_directory():
    state = CompileState(chip=tiny_program().chip, program=tiny_program())
    with pytest.raises(PipelineError, match="needs an output directory"):
        parse_pipeline("emit", given=("program",))[0].run(state)


def test_save_rejects_extra_files_that_clash(tmp_path):
    with pytest.raises(ProgramError, match="plain file name"):
        tiny_program().save(tmp_path / "p", extra_files={"manifest.json": "{}"})
    with pytest.raises(ProgramError, match="plain file name"):
        tiny_program().save(tmp_path / "p", extra_files={"../x": "{}"})
    with pytest.raises(ProgramError, match="plain file name"):
        tiny_program().save(tmp_path / "p", extra_files={REPORT_FILE: "{}"})  # the program writes its own
    assert not (tmp_path / "p").exists()


def test_report_text_has_every_section(tmp_path, capsys):
    out = tmp_path / "prog"
    compile_tiny(out)
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    for heading in ("resources", "utilization per layer", "utilization per core", "placement cost",
                    "lower bound", "random placement", "row-major placement", "hottest links",
                    "latency (ticks, longest delay chain)", "energy per sample", "pass partition"):
        assert heading in text, heading
    assert "hidden" in text and "out" in text  # layers from the neuron groups


def test_report_json_figures(tmp_path, capsys):
    out = tmp_path / "prog"
    compile_tiny(out)
    assert main(["report", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["resources"]["cores"] == {"used": 2, "available": 16, "fraction": 2 / 16}
    assert report["resources"]["synapses"]["used"] == 6
    assert [r["layer"] for r in report["layers"]] == ["hidden", "out"]
    assert report["placement"]["cost"] == pytest.approx(6.0)
    assert report["placement"]["pass"]["objective"] == pytest.approx(6.0)
    routing = report["routing"]
    assert routing["latency_ticks"] == 2 == routing["program_latency"]
    assert routing["link_load_max"] == pytest.approx(6.0 / 3)  # 6 spikes over 1 + 2 ticks on one link
    energy = report["energy"]
    assert energy["complete"] is True
    counts = energy["counts_per_sample"]
    assert counts["spikes"] == 6 and counts["hops"] == 6
    # neuron 0 hits axon 0 (2 synapses), neuron 1 axon 1 (1 synapse): 1.5 per spike
    assert counts["synaptic_events"] == pytest.approx(9.0)
    assert counts["core_ticks"] == 2 * 3
    expected = sum(v for v in energy["uj_per_sample"].values())
    assert energy["total_uj_per_sample"] == pytest.approx(expected)


def test_report_without_report_json_recomputes_from_the_program(tmp_path, capsys):
    out = tmp_path / "bare"
    tiny_program().save(out)
    assert main(["report", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["program"]["has_compiler_report"] is False
    assert report["placement"]["cost"] == pytest.approx(2 * 6)  # 2 routed neurons, 6 hops apart
    assert report["placement"]["traffic"].startswith("routed neurons")
    assert report["energy"]["complete"] is False
    assert report["energy"]["counts_per_sample"]["spikes"] is None
    assert main(["report", str(out)]) == 0
    assert "no report.json" in capsys.readouterr().out


def test_report_pictures_png_svg_and_self_contained_html(tmp_path, capsys):
    out = tmp_path / "prog"
    compile_tiny(out)
    assert main(["report", str(out), "--pictures"]) == 0
    pictures = out / "report"
    for name in ("utilization", "link_load"):
        assert (pictures / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<svg" in (pictures / f"{name}.svg").read_text()
    html = (pictures / "report.html").read_text()
    assert html.count("<svg") == 2 and "hottest links" in html
    assert "src=\"http" not in html and "href=\"http" not in html.replace("http://www.w3.org", "")
    assert load(out).num_cores == 2  # the program still loads with the pictures inside
    elsewhere = tmp_path / "pics"
    assert main(["report", str(out), "--pictures", str(elsewhere)]) == 0
    assert (elsewhere / "report.html").is_file()


def test_report_on_a_missing_directory_is_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 3
    assert "does not exist" in capsys.readouterr().err


def test_dumps_keeps_lists_of_numbers_on_one_line():
    text = dumps({"b": [[0, 1, 2.5], [1, 2, 3.0]], "a": {"x": np.float32(1.5), "y": np.int64(2)}})
    assert json.loads(text) == {"a": {"x": 1.5, "y": 2}, "b": [[0, 1, 2.5], [1, 2, 3.0]]}
    assert "[[0, 1, 2.5], [1, 2, 3.0]]" in text


def test_format_text_limits_the_core_table():
    program = Program.empty(tiny_program().chip, 12)
    text = format_text(build_report(program), max_cores=5)
    assert "first 5 of 12" in text


def test_pictures_into_an_unwritable_place_is_one_line_error(tmp_path, capsys):
    out = tmp_path / "prog"
    compile_tiny(out)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["report", str(out), "--pictures", str(blocker / "pics")]) == 2
    assert "cannot write the pictures" in capsys.readouterr().err


def test_placement_figures_come_from_the_place_report_the_program_carries(tmp_path):
    from crossmap.report import placement_figures

    state = compile_tiny(tmp_path / "prog")
    program = load(tmp_path / "prog")
    place = program.reports["place"]
    figures = placement_figures(program, program.traffic)
    assert (figures["cost"], figures["lower_bound"], figures["random"]) == (place["objective"], place["lower_bound"],
                                                                           place["random"])
    program.reports["place"] = {**place, "lower_bound": 5.5}  # taken as recorded, not solved again
    assert placement_figures(program, program.traffic)["lower_bound"] == 5.5
    del program.reports["place"]  # without a place report: the cost from the program, no bound
    bare = placement_figures(program, program.traffic)
    assert bare["cost"] == pytest.approx(6.0) and bare["lower_bound"] is None
    assert state.program.traffic.measured and bare["traffic"] == "spikes per sample"


def test_program_carries_its_reports_and_traffic_through_save_and_load(tmp_path):
    state = compile_tiny(tmp_path / "prog")
    program = load(tmp_path / "prog")
    assert program.reports == json.loads(json.dumps(state.reports))  # every pass's report, as JSON
    assert "edges" not in program.reports["route"]  # the traffic is the program's, not a report entry
    traffic = program.traffic
    assert (traffic.src.tolist(), traffic.dst.tolist(), traffic.spikes.tolist(), traffic.measured) == \
        ([0], [1], [6.0], True)
    saved = json.loads((tmp_path / "prog" / REPORT_FILE).read_text())
    assert saved["route"]["edges"] == [[0, 1, 6.0]]
    program.save(tmp_path / "again")
    assert (tmp_path / "again" / REPORT_FILE).read_bytes() == (tmp_path / "prog" / REPORT_FILE).read_bytes()
    bare = tiny_program()
    bare.save(tmp_path / "bare")
    assert not (tmp_path / "bare" / REPORT_FILE).exists() and load(tmp_path / "bare").traffic is None


def sign_report(program_dir):
    """Record report.json's new SHA-256 in the manifest and sign the manifest again, as a careful
    forger would, so that the checks behind the checksums are reached."""
    from crossmap.program_files import file_digest, manifest_digest

    manifest = json.loads((program_dir / "manifest.json").read_text())
    manifest["files"][REPORT_FILE] = file_digest((program_dir / REPORT_FILE).read_bytes())
    manifest["manifest_checksum"] = manifest_digest(manifest)
    (program_dir / "manifest.json").write_text(json.dumps(manifest))


def test_traffic_naming_missing_cores_is_left_out_with_a_warning(tmp_path):
    compile_tiny(tmp_path / "prog")
    path = tmp_path / "prog" / REPORT_FILE
    saved = json.loads(path.read_text())
    saved["route"]["edges"] = [[0, 7, 6.0]]
    path.write_text(json.dumps(saved))
    with pytest.raises(ProgramFormatError, match="report.json: checksum mismatch"):
        load(tmp_path / "prog")
    sign_report(tmp_path / "prog")
    with pytest.warns(UserWarning, match="left out"):
        program = load(tmp_path / "prog")
    assert program.traffic is None and program.reports["place"]
    path.write_text("{not json")
    sign_report(tmp_path / "prog")
    with pytest.raises(ProgramFormatError, match="report.json: not valid JSON"):
        load(tmp_path / "prog")
