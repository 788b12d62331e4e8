"""Rank trained networks for an ensemble by their own held-out accuracy, and score ensembles.

A recipe run with ``--val N`` holds out N training images (a shuffle seeded by its ``--seed``,
``common.heldout_split``) and keeps the epoch that does best on them; the command is in the
model's metadata, so each network can be judged again on the images it never trained on, never
on the test set. A network fine-tuned from another (``--init X.onnx``) replaces X in the pool.

Usage: python models/rank_members.py [MODEL.onnx ...] [--top N] [--score] [--data-dir DIR]
  With no models: every models/*.onnx whose command held images out. Prints each network's
  held-out and test accuracy, best first; with ``--top N`` the N best by held-out accuracy and
  their ensemble's test accuracy; with ``--score`` the ensemble of all the given models. An
  ensemble's classes are its members' summed class counts (what make_ensemble.py joins).
"""

from __future__ import annotations

import argparse
import hashlib
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

import common

MODELS = Path(__file__).resolve().parent
RECIPE_VAL = {"train_eedn_groups.py": 5000}  # the recipes whose --val default holds images out


@dataclass(frozen=True)
class Member:
    """A trained network and where its held-out images come from."""
    path: Path
    seed: int
    val: int
    init: str | None  # the file it was fine-tuned from, if any

    @property
    def name(self) -> str:
        return self.path.stem


def command_option(words: list[str], option: str) -> str | None:
    """The value after ``option`` in a split command line (the last one given), else None."""
    values = [words[i + 1] for i, word in enumerate(words[:-1]) if word == option]
    return values[-1] if values else None


def member_of(path: Path) -> Member | None:
    """The network at ``path`` as a pool member, or None when its command held no images out
    (or it has no command: it was not made by a recipe)."""
    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    words = shlex.split(meta.get("crossmap.command", ""))
    recipe = next((Path(w).name for w in words if w.endswith(".py")), None)
    if recipe is None:
        return None
    val = int(command_option(words, "--val") or RECIPE_VAL.get(recipe, 0))
    if val <= 0:
        return None
    return Member(path, int(command_option(words, "--seed") or 0), val, command_option(words, "--init"))


def pool(members: list[Member]) -> list[Member]:
    """The members left when every fine-tuned network replaces the one it was loaded from."""
    replaced = {Path(m.init).stem for m in members if m.init}
    return [m for m in members if m.name not in replaced]


def top(members: list[Member], heldout: dict[str, float], count: int) -> list[Member]:
    """The ``count`` members of highest held-out accuracy (ties: by name)."""
    if count > len(members):
        raise SystemExit(f"--top {count}: the pool holds {len(members)} networks "
                         f"({', '.join(m.name for m in members)}); ask for at most {len(members)}")
    return sorted(members, key=lambda m: (-heldout[m.name], m.name))[:count]


def ensemble_accuracy(counts: list[np.ndarray], labels: np.ndarray) -> tuple[float, int]:
    """Accuracy and error count of the summed class counts (argmax: ties to the lowest class)."""
    wrong = int((sum(counts).argmax(1) != labels).sum())
    return 1.0 - wrong / len(labels), wrong


def cached_counts(path: Path, images: np.ndarray, tag: str, cache: Path) -> np.ndarray:
    """The model's class counts on ``images``, kept in ``cache`` under the file's hash and ``tag``."""
    digest = hashlib.sha1(path.read_bytes()).hexdigest()[:16]
    file = cache / f"{path.stem}-{digest}-{tag}.npy"
    if file.is_file():
        return np.load(file)
    counts = common.onnx_outputs(str(path), images)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(file, counts)
    return counts


def main() -> None:
    """Rank, then score the asked-for ensembles."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", help="ONNX files (default: models/*.onnx with held-out images)")
    parser.add_argument("--top", type=int, default=None, help="score the N best networks by held-out accuracy")
    parser.add_argument("--score", action="store_true", help="score the ensemble of all the given models")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "crossmap" / "rank_members"))
    args = parser.parse_args()
    paths = [Path(p) for p in args.models] or sorted(MODELS.glob("*.onnx"))
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"no such file: {', '.join(missing)}; give trained networks' ONNX files")
    found = [(p, member_of(p)) for p in paths]
    skipped = [p.name for p, m in found if m is None]
    if skipped and args.models:
        raise SystemExit(f"{', '.join(skipped)}: no held-out images in the training command (--val); "
                         "these networks cannot be ranked")
    members = pool([m for _, m in found if m is not None])
    args.train_limit, args.seed, args.name = None, 0, "rank_members"  # what common.load_data reads
    data = common.load_data(args)
    cache = Path(args.cache)
    heldout, test = {}, {}
    for i, m in enumerate(members, 1):
        _, held = common.heldout_split(len(data["ytr"]), m.seed, m.val)
        counts = cached_counts(m.path, data["xtr"][held], f"heldout{m.seed}_{m.val}", cache)
        heldout[m.name] = float((counts.argmax(1) == data["ytr"][held]).mean())
        test[m.name] = cached_counts(m.path, data["xte"], "test", cache)
        print(f"[{i}/{len(members)}] {m.name}", end="\r", flush=True)
    print(f"{'network':<28} {'held out':>9} {'test':>8}")
    for m in sorted(members, key=lambda m: (-heldout[m.name], m.name)):
        accuracy = float((test[m.name].argmax(1) == data["yte"]).mean())
        print(f"{m.name:<28} {100 * heldout[m.name]:8.2f}% {100 * accuracy:7.2f}%")
    chosen = []
    if args.top:
        chosen.append((f"the {args.top} best by held-out accuracy", top(members, heldout, args.top)))
    if args.score:
        chosen.append((f"all {len(members)} given", members))
    for title, group in chosen:
        accuracy, wrong = ensemble_accuracy([test[m.name] for m in group], data["yte"])
        print(f"\nensemble of {title}: {100 * accuracy:.2f}% ({wrong} errors on {len(data['yte'])} test images)")
        print("  " + " ".join(str(m.path) for m in group))


if __name__ == "__main__":
    main()
