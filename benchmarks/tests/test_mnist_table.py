"""benchmarks/mnist_table.py: every row names committed model files, so no row runs with fewer
members than it says."""

from __future__ import annotations

import mnist_table
import pytest


@pytest.mark.parametrize("row", mnist_table.ROWS, ids=[row[0] for row in mnist_table.ROWS])
def test_row_files_are_committed_and_hold_the_copies_asked_for(row):
    name, files, method, ensembles, _ = row
    matches = [sorted(mnist_table.MODELS.glob(pattern)) for pattern in files.split()]
    assert all(matches), f"{name}: {files} names a file that is not in models/"
    members = {path for paths in matches for path in paths}
    assert len(members) == sum(len(paths) for paths in matches), f"{name}: a file is named twice"
    if method == "deterministic":
        assert max(ensembles) <= len(members) * len(mnist_table.SHIFTS)


def test_the_fifteen_network_ensemble_is_fifteen_different_networks():
    row = next(row for row in mnist_table.ROWS if row[0] == "ensemble15")
    assert len(set(row[1].split())) == 15 and row[3] == [15]


def test_the_sixteen_network_ensemble_is_the_fifteen_and_one_more():
    fifteen = next(row for row in mnist_table.ROWS if row[0] == "ensemble15")[1].split()
    sixteen = next(row for row in mnist_table.ROWS if row[0] == "ensemble16")[1].split()
    assert set(fifteen) < set(sixteen) and len(set(sixteen)) == 16
