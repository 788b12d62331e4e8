"""The command line: version, info, errors as one line with an exit code."""

import json

from crossmap import __version__
from crossmap.chip import ChipSpec
from crossmap.cli import main


def test_version(capsys):
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert __version__ in capsys.readouterr().out


def test_info_json_round_trips(capsys):
    assert main(["info", "--json"]) == 0
    assert ChipSpec.from_json(capsys.readouterr().out) == ChipSpec.truenorth()


def test_info_board(capsys):
    assert main(["info", "--chip", "truenorth-2x3"]) == 0
    assert "2 x 3 chip(s)" in capsys.readouterr().out


def test_bad_chip_is_one_line_error(capsys, tmp_path):
    bad = tmp_path / "chip.json"
    bad.write_text(json.dumps({"axons_per_core": 0}))
    assert main(["info", "--chip", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "axons_per_core = 0" in err and "Traceback" not in err
    assert main(["info", "--chip", "nochip"]) == 2
    assert "available" in capsys.readouterr().err
