"""Axon types for an integer weight matrix: which axon lines carry which input, with which type,
and the per-neuron weight of each type, so that the chip reproduces every integer weight exactly.

On a core the type is a property of the axon (shared by all neurons reading it) and each neuron
has one weight per type (G types). Two schemes:

- ``shared``: one axon per input column. Columns are grouped so that, for every neuron, all
  nonzero weights in a group are equal; a group is a type and the neuron's weight for the type is
  that common value. Two columns conflict when some neuron has different nonzero weights for
  them; a grouping is a G-colouring of the conflict graph (DSatur, then CP-SAT if DSatur needs
  more than G colours and no (G+1)-clique rules it out). This is the Esser et al. 2015 layout.
- ``split``: when no colouring exists, each column is carried on one axon per type that some
  neuron needs for it; each neuron maps its distinct nonzero values (at most G) to types, positives
  to types 0, 1, ... and negatives to G-1, G-2, ... (Esser et al. 2016's trinary scheme is the case
  of one positive and one negative value per neuron).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


class TooManyValues(Exception):
    """A neuron needs more distinct nonzero weights than there are axon types (internal; the
    passes turn it into a BinarizeError naming the layer)."""

    def __init__(self, neuron: int, values: np.ndarray) -> None:
        super().__init__(f"neuron {neuron} has {len(values)} distinct weights")
        self.neuron = neuron
        self.values = values


@dataclass
class TypeAssignment:
    """Axon lines for one target group: line l reads column ``line_column[l]`` with type
    ``line_type[l]`` and synapses ``synapses[l]``; ``weight[j, g]`` is neuron j's weight of type g."""

    line_column: np.ndarray
    line_type: np.ndarray
    synapses: sp.csr_matrix  # bool (lines, neurons)
    weight: np.ndarray  # int32 (neurons, G)
    scheme: str

    @property
    def num_lines(self) -> int:
        """Number of axon lines."""
        return int(self.line_column.shape[0])


def assign_axon_types(weights: sp.spmatrix, types: int, *, time_limit: float = 5.0, seed: int = 0,
                      allow_split: bool = True) -> TypeAssignment:
    """Lines, types and per-type weights realizing the integer matrix ``weights`` (neurons x columns)."""
    w = sp.csr_matrix(weights, dtype=np.int64)
    w.sum_duplicates()
    w.eliminate_zeros()
    crowded = np.flatnonzero(distinct_per_row(w) > types)
    if crowded.size:
        j = int(crowded[0])
        raise TooManyValues(j, np.unique(w.data[w.indptr[j]:w.indptr[j + 1]]))
    csc = w.tocsc()
    colors = _shared_colors(w, csc, types, time_limit=time_limit, seed=seed)
    if colors is not None:
        return _shared(w, csc, colors, types)
    if not allow_split:
        raise ValueError("no grouping of the columns into axon types exists")
    return _split(w, types)


def distinct_per_row(w: sp.csr_matrix) -> np.ndarray:
    """The number of distinct stored values in each row of ``w``."""
    from crossmap.passes.binarize.kernels import distinct_per_row as kernel

    return kernel(np.asarray(w.indptr, np.int64), np.ascontiguousarray(w.data))


def distinct_values(data: np.ndarray) -> np.ndarray:
    """``np.unique(data)``; integers in a short range are counted instead of sorted."""
    data = np.asarray(data)
    if data.size == 0 or data.dtype.kind not in "iu":
        return np.unique(data)
    lo, hi = int(data.min()), int(data.max())
    if hi - lo > 1 << 16:
        return np.unique(data)
    present = np.bincount((data - lo).astype(np.intp, copy=False), minlength=hi - lo + 1)
    return (np.flatnonzero(present) + lo).astype(data.dtype)


def shared_colors(w: sp.csr_matrix, types: int, *, time_limit: float = 5.0, seed: int = 0) -> np.ndarray | None:
    """A type per used column (-1 for unused ones) with one axon per column, or None."""
    w = sp.csr_matrix(w)
    return _shared_colors(w, w.tocsc(), types, time_limit=time_limit, seed=seed)


def _shared_colors(w: sp.csr_matrix, csc: sp.csc_matrix, types: int, *, time_limit: float, seed: int
                   ) -> np.ndarray | None:
    """``shared_colors`` given ``w`` in both CSR and CSC form."""
    used = np.flatnonzero(np.diff(csc.indptr) > 0)
    colors = np.full(w.shape[1], -1, np.int64)
    if used.size == 0:
        return colors
    reps, inverse = _unique_columns(csc, used)
    conflict = _conflicts(w, used[reps])
    rep_colors = _dsatur(conflict, types)
    if rep_colors is None:
        clique = _greedy_clique(conflict)
        if len(clique) > types or time_limit <= 0:
            return None
        rep_colors = _cpsat_coloring(conflict, types, clique, time_limit, seed)
        if rep_colors is None:
            return None
    colors[used] = rep_colors[inverse]
    return colors


def _unique_columns(csc: sp.csc_matrix, used: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions in ``used`` of one column per distinct signature (rows and values), in order of
    appearance, signature index of each used column)."""
    from crossmap.passes.binarize.kernels import unique_columns

    reps, inverse, ok = unique_columns(np.asarray(csc.indptr, np.int64), csc.indices, csc.data,
                                       np.asarray(used, np.int64))
    return (reps, inverse) if ok else _unique_columns_by_bytes(csc, used)


def _unique_columns_by_bytes(csc: sp.csc_matrix, used: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``_unique_columns`` with each column's bytes as a dictionary key (used when two different
    columns share the compiled kernel's hash)."""
    seen: dict[bytes, int] = {}
    reps: list[int] = []
    inverse = np.empty(used.size, np.int64)
    for pos, c in enumerate(used):
        lo, hi = csc.indptr[c], csc.indptr[c + 1]
        key = csc.indices[lo:hi].tobytes() + b"|" + csc.data[lo:hi].tobytes()
        if key not in seen:
            seen[key] = len(reps)
            reps.append(pos)
        inverse[pos] = seen[key]
    return np.asarray(reps, np.int64), inverse


def _conflicts(w: sp.csr_matrix, columns: np.ndarray) -> sp.csr_matrix:
    """Symmetric bool adjacency (canonical CSR, no diagonal) of ``w[:, columns]``'s columns: two
    columns conflict when some row gives them different nonzero values. ``columns`` are distinct;
    ``w`` holds no explicit zeros."""
    from crossmap.passes.binarize.kernels import conflict_graph

    m = int(columns.size)
    column_rep = np.full(w.shape[1], -1, np.int64)
    column_rep[columns] = np.arange(m, dtype=np.int64)
    indptr, indices = conflict_graph(np.asarray(w.indptr, np.int64), w.indices, w.data, column_rep, m,
                                     distinct_values(w.data))
    index_dtype = np.int32 if indices.size < 2**31 - 1 and m < 2**31 - 1 else np.int64
    return sp.csr_matrix((np.ones(indices.size, bool), indices.astype(index_dtype), indptr.astype(index_dtype)),
                         shape=(m, m))


def _dsatur(adj: sp.csr_matrix, colors: int) -> np.ndarray | None:
    """DSatur greedy colouring with at most ``colors`` colours, or None when it needs more. The
    next vertex has the most distinct colours among its neighbours, then the highest degree,
    then the lowest index; it takes the lowest colour none of its neighbours has."""
    from crossmap.passes.binarize.kernels import dsatur

    result, ok = dsatur(np.asarray(adj.indptr, np.int64), np.asarray(adj.indices, np.int64), int(colors))
    return result if ok else None


def _greedy_clique(adj: sp.csr_matrix, tries: int = 8) -> list[int]:
    """A large clique found greedily from the highest-degree vertices (a lower bound on colours)."""
    degree = np.diff(adj.indptr)
    best: list[int] = []
    for start in np.argsort(-degree, kind="stable")[:tries]:
        clique = [int(start)]
        cand = set(adj.indices[adj.indptr[start]:adj.indptr[start + 1]].tolist())
        while cand:
            v = max(cand, key=lambda u: (degree[u], -u))
            clique.append(v)
            cand &= set(adj.indices[adj.indptr[v]:adj.indptr[v + 1]].tolist())
        if len(clique) > len(best):
            best = clique
    return best


def _cpsat_coloring(adj: sp.csr_matrix, colors: int, clique: list[int], time_limit: float,
                    seed: int, max_edges: int = 200_000) -> np.ndarray | None:
    """An exact colouring by CP-SAT within ``time_limit`` (deterministic time), or None."""
    from ortools.sat.python import cp_model
    from crossmap.solvers import reproducible_solver

    upper = sp.triu(adj, k=1).tocoo()
    if upper.nnz > max_edges:
        return None
    n = adj.shape[0]
    model = cp_model.CpModel()
    x = [[model.NewBoolVar(f"x{i}_{c}") for c in range(colors)] for i in range(n)]
    for i in range(n):
        model.AddExactlyOne(x[i])
    for i, k in zip(upper.row.tolist(), upper.col.tolist()):
        for c in range(colors):
            model.AddBoolOr([x[i][c].Not(), x[k][c].Not()])
    for c, v in enumerate(clique[:colors]):
        model.Add(x[v][c] == 1)
    solver = reproducible_solver(time_limit, seed)
    status = solver.Solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    return np.array([next(c for c in range(colors) if solver.Value(x[i][c])) for i in range(n)], np.int64)


def _shared(w: sp.csr_matrix, csc: sp.csc_matrix, colors: np.ndarray, types: int) -> TypeAssignment:
    """One line per used column (the nonempty ones), typed by its colour; ``csc`` is ``w`` in CSC
    form, whose columns without the empty ones are the lines' synapse rows."""
    used = np.flatnonzero(colors >= 0)
    weight = np.zeros((w.shape[0], types), np.int64)
    rows = np.repeat(np.arange(w.shape[0], dtype=np.int64), np.diff(w.indptr))
    weight[rows, colors[w.indices]] = w.data
    indptr = np.concatenate([csc.indptr[:1], csc.indptr[used + 1]])
    synapses = sp.csr_matrix((np.ones(csc.indices.size, bool), csc.indices.copy(), indptr),
                             shape=(used.size, w.shape[0]))
    return TypeAssignment(line_column=used, line_type=colors[used].astype(np.int64), synapses=synapses,
                          weight=weight.astype(np.int32), scheme="shared")


def _split(w: sp.csr_matrix, types: int) -> TypeAssignment:
    """One line per (column, type needed by some neuron for it)."""
    n_rows = w.shape[0]
    coo = w.tocoo()
    values = distinct_values(coo.data)
    weight = np.zeros((n_rows, types), np.int64)
    entry_type = np.empty(coo.nnz, np.int64)
    if values.size <= types:
        index = {int(v): i for i, v in enumerate(values)}
        entry_type[:] = [index[int(v)] for v in coo.data]
        weight[:, :values.size] = values[None, :]
    else:
        for j in range(n_rows):
            mask = slice(w.indptr[j], w.indptr[j + 1])  # coo of a canonical CSR is in row order
            row_vals = np.unique(coo.data[mask])
            pos = np.sort(row_vals[row_vals > 0])
            neg = np.sort(row_vals[row_vals < 0])[::-1]  # -1, -2, ...
            table = {int(v): i for i, v in enumerate(pos)}
            table.update({int(v): types - 1 - i for i, v in enumerate(neg)})
            for v, g in table.items():
                weight[j, g] = v
            entry_type[mask] = [table[int(v)] for v in coo.data[mask]]
    key = coo.col.astype(np.int64) * types + entry_type
    lines, line_of_entry = np.unique(key, return_inverse=True)
    synapses = sp.csr_matrix((np.ones(coo.nnz, bool), (line_of_entry, coo.row)), shape=(lines.size, n_rows))
    return TypeAssignment(line_column=lines // types, line_type=lines % types, synapses=synapses,
                          weight=weight.astype(np.int32), scheme="split")
