"""models/rank_members.py: which images a network held out, which networks make the pool, how
the best are chosen, and how an ensemble is scored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import common
from rank_members import Member, command_option, ensemble_accuracy, member_of, pool, top


def saved(tmp_path: Path, name: str, command: str | None) -> Path:
    """A tiny step network saved with ``command`` in its metadata (none: no command)."""
    builder = common.GraphBuilder(name)
    h = builder.encode_input((0.5,))
    counts = builder.readout(builder.flatten(h), np.arange(28 * 28) % 10)
    model = builder.model(counts, [10], {} if command is None else {"crossmap.command": command})
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def test_command_option_takes_the_last_value_given():
    words = "python models/train_eedn_groups.py --seed 4 --epochs 0 --seed 5".split()
    assert command_option(words, "--seed") == "5"
    assert command_option(words, "--init") is None
    assert command_option(["x", "--seed"], "--seed") is None  # an option without a value


def test_member_reads_seed_val_and_init_with_the_recipes_default_val(tmp_path):
    groups = saved(tmp_path, "g", "python models/train_eedn_groups.py --seed 4 --init models/eedn_groups_s4.onnx")
    assert member_of(groups) == Member(groups, 4, 5000, "models/eedn_groups_s4.onnx")
    large = saved(tmp_path, "l", "python models/train_esser2015_large.py --width 2 --val 3000 --seed 5")
    assert member_of(large) == Member(large, 5, 3000, None)


def test_networks_that_held_nothing_out_are_not_members(tmp_path):
    assert member_of(saved(tmp_path, "a", "python models/train_esser2015_large.py --seed 5")) is None
    assert member_of(saved(tmp_path, "b", "python models/train_eedn_groups.py --val 0")) is None
    assert member_of(saved(tmp_path, "c", None)) is None


def test_a_finetuned_network_replaces_the_one_it_was_loaded_from():
    base, other = Member(Path("m/a.onnx"), 1, 5000, None), Member(Path("m/b.onnx"), 2, 5000, None)
    tuned = Member(Path("m/a_ft.onnx"), 1, 5000, "models/a.onnx")
    assert pool([base, other, tuned]) == [other, tuned]
    assert pool([base, other]) == [base, other]


def test_top_orders_by_heldout_accuracy_then_name():
    members = [Member(Path(f"{n}.onnx"), 0, 5000, None) for n in "dcba"]
    heldout = {"a": 0.98, "b": 0.99, "c": 0.99, "d": 0.97}
    assert [m.name for m in top(members, heldout, 3)] == ["b", "c", "a"]
    with pytest.raises(SystemExit, match="pool holds 4 networks"):
        top(members, heldout, 5)


def test_ensemble_sums_class_counts_and_counts_errors():
    labels = np.array([0, 1, 2])
    first = np.array([[3, 0, 0], [2, 1, 0], [0, 0, 1]], float)  # right, wrong, right
    second = np.array([[0, 1, 0], [0, 3, 0], [2, 0, 0]], float)  # wrong, right, wrong
    accuracy, wrong = ensemble_accuracy([first, second], labels)
    assert wrong == 1 and accuracy == pytest.approx(2 / 3)  # sums [3,1,0], [2,4,0], [2,0,1]: the last is wrong
    tie = [np.array([[1, 1, 0]], float)]
    assert ensemble_accuracy(tie, np.array([0])) == (1.0, 0)  # a tie goes to the lowest class


def test_heldout_split_is_a_seeded_partition():
    kept, held = common.heldout_split(100, 7, 20)
    assert len(held) == 20 and sorted(np.concatenate([kept, held])) == list(range(100))
    again, _ = common.heldout_split(100, 7, 20)
    other, _ = common.heldout_split(100, 8, 20)
    assert (kept == again).all() and not (kept == other).all()
