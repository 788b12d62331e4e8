"""Clean-ups of an imported network that keep its function exactly.

``fuse_relabels``: a population ``p`` with identity activation whose only consumer ``q`` reads it
through a scaled permutation (e.g. ``MaxPool`` then ``Relu``, or ``Conv`` then ``Transpose`` then
``Sigmoid``) is merged with ``q``: ``p`` takes ``q``'s activation, shape and element order, and
the permutation and scales move into ``p``'s incoming weights and bias.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from crossmap.ir import INPUT, Network, Projection


def fuse_relabels(net: Network) -> Network:
    """Merge identity populations into their single relabelling consumer, in place; returns it."""
    changed = True
    while changed:
        changed = False
        for q in list(net.layers):
            incoming = net.incoming(q.name)
            if len(incoming) != 1:
                continue
            link = incoming[0]
            p = net.population(link.source)
            if p.name in (INPUT, net.output) or p.activation != "identity" or len(net.outgoing(p.name)) != 1:
                continue
            w = link.weight
            if not _is_scaled_permutation(w) or (p.reduce == "max" and np.any(w.data <= 0)):
                continue
            _merge(net, p.name, q.name, w)
            changed = True
            break
    return net


def _is_scaled_permutation(w: sp.csr_matrix) -> bool:
    """Square, exactly one nonzero in every row and every column."""
    if w.shape[0] != w.shape[1] or w.nnz != w.shape[0]:
        return False
    return bool(np.all(np.diff(w.indptr) == 1) and np.all(np.bincount(w.indices, minlength=w.shape[1]) == 1))


def _merge(net: Network, p_name: str, q_name: str, w: sp.csr_matrix) -> None:
    """Population ``p`` becomes ``q`` (q = w @ p, w a scaled permutation); ``q`` disappears."""
    p, q = net.population(p_name), net.population(q_name)
    projections = []
    for proj in net.projections:
        if proj.target == q_name:
            continue
        if proj.target == p_name:
            proj = Projection(proj.source, p_name, sp.csr_matrix(w @ proj.weight))
        elif proj.source == q_name:
            proj = Projection(p_name, proj.target, proj.weight)
        projections.append(proj)
    p_bias = np.zeros(p.size) if p.bias is None else p.bias
    q_bias = np.zeros(q.size) if q.bias is None else q.bias
    p.bias = np.asarray(w @ p_bias, dtype=np.float64) + q_bias
    p.shape, p.activation, p.params = q.shape, q.activation, q.params
    p.source_nodes = p.source_nodes + [n for n in q.source_nodes if n not in p.source_nodes]
    net.projections = projections
    net.populations = [pop for pop in net.populations if pop.name != q_name]
    if net.output == q_name:
        net.output = p_name
