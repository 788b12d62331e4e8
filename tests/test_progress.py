"""Progress output: a redrawn status line on a terminal, plain timed lines in logs, nothing when off."""

from __future__ import annotations

import crossmap.progress as progress
from crossmap.progress import Progress


class Clock:
    """A settable stand-in for time.perf_counter."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_log_lines_come_every_interval_and_at_the_end_when_stderr_is_not_a_terminal(monkeypatch, capsys):
    clock = Clock()
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    bar = Progress(1000, "emulating", None, unit="samples")  # pytest's stderr is not a terminal
    for _ in range(10):
        clock.now += 10.0
        bar.update(100, "acc 98.00%")
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert "\r" not in "".join(lines)
    # 100 s of work logged at 30 s, 60 s and 90 s (every LOG_EVERY seconds), then the end
    assert len(lines) == 4
    assert lines[0].startswith("emulating 300/1000 samples (30%) 10.0 samples/s eta 70s, 30s elapsed acc 98.00%")
    assert lines[-1].startswith("emulating 1000/1000 samples (100%) 10.0 samples/s eta 0s, 100s elapsed")


def test_forced_status_line_redraws_in_place_and_ends_with_a_newline(monkeypatch, capsys):
    clock = Clock()
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    bar = Progress(4, "compiling", True)
    for _ in range(4):
        clock.now += 1.0
        bar.update()
    bar.close()
    err = capsys.readouterr().err
    assert err.count("\r") == 5 and err.endswith("\n") and err.count("\n") == 1
    assert "[########################] 4/4 it" in err


def test_disabled_progress_prints_nothing(capsys):
    bar = Progress(10, "emulating", False)
    bar.update(10)
    bar.close()
    assert capsys.readouterr().err == ""
