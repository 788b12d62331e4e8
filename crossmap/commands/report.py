"""``crossmap report OUT``: resources, placement, routing, latency and energy of a compiled program,
as text tables, JSON, pictures and an HTML page."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from crossmap.errors import InputError
from crossmap.commands.arguments import bounded_int


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``report`` subcommand."""
    p = sub.add_parser("report", help="resources, placement, link loads, latency and energy of a compiled program")
    p.add_argument("program", help="compiled program directory")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--pictures", nargs="?", const="", default=None, metavar="DIR",
                   help="write PNG/SVG heatmaps and report.html to DIR (default PROGRAM/report/)")
    p.add_argument("--all-cores", action="store_true", help="list every core in the text tables (default 20)")
    p.add_argument("--hottest", type=bounded_int(0, 10**6), default=10, help="hottest links to list (default 10)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the report; write pictures when asked."""
    from crossmap.program import load  # imported here: the placement bound needs scipy and OR-Tools
    from crossmap.report import build_report, format_text
    from crossmap.report_pictures import write_pictures

    program = load(args.program)
    report = build_report(program, source=str(args.program), hottest=max(0, args.hottest))
    written = {}
    if args.pictures is not None:
        directory = Path(args.pictures) if args.pictures else Path(args.program) / "report"
        try:
            written = write_pictures(program, report, directory)
        except OSError as exc:
            raise InputError(f"cannot write the pictures to {str(directory)!r} ({exc.strerror or exc}); pass "
                             f"--pictures DIR with a writable directory") from None
        report["pictures"] = {name: str(path) for name, path in written.items()}
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
        return 0
    print(format_text(report, max_cores=-1 if args.all_cores else 20), end="")
    if written:
        print(f"\npictures: {', '.join(str(p) for p in written.values())}")
    return 0
