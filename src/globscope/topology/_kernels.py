"""Compiled (numba) kernels of the topology engine. Private: use the public modules.

All kernels work on flat arrays in VTK vertex order. ``rank[v]`` is the position of vertex ``v``
in the total vertex order (``-1`` for masked vertices), ``verts`` the unmasked vertices sorted by
rank. ``dims``, ``strides`` (length 4) and ``offs`` (K x 4) describe the grid
(:mod:`globscope.topology.grid`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

NJ = dict(cache=True, nogil=True)


@njit(**NJ)
def neighbors(v, dims, strides, offs, rank, out_u, out_slot):
    """Unmasked neighbours of ``v``; returns their count, fills ``out_u`` / ``out_slot``."""
    c0 = (v // strides[0]) % dims[0]
    c1 = (v // strides[1]) % dims[1]
    c2 = (v // strides[2]) % dims[2]
    c3 = (v // strides[3]) % dims[3]
    n = 0
    for k in range(offs.shape[0]):
        a = c0 + offs[k, 0]
        b = c1 + offs[k, 1]
        c = c2 + offs[k, 2]
        d = c3 + offs[k, 3]
        if a < 0 or a >= dims[0] or b < 0 or b >= dims[1]:
            continue
        if c < 0 or c >= dims[2] or d < 0 or d >= dims[3]:
            continue
        u = v + offs[k, 0] * strides[0] + offs[k, 1] * strides[1] + offs[k, 2] * strides[2] \
            + offs[k, 3] * strides[3]
        if rank[u] < 0:
            continue
        out_u[n] = u
        out_slot[n] = k
        n += 1
    return n


@njit(**NJ)
def _find(parent, x):
    r = x
    while parent[r] != r:
        r = parent[r]
    while parent[x] != r:
        nxt = parent[x]
        parent[x] = r
        x = nxt
    return r


@njit(**NJ)
def join_sweep(rank, verts, dims, strides, offs):
    """Union-find sweep of the sublevel sets: persistence pairs, join tree and segmentation.

    Returns
    -------
    pair_birth, pair_death : int64 (n_pairs,)   finite minimum-saddle pairs (elder rule)
    pair_elder : int64 (n_pairs,)               the older minimum that survives the merge
    node_vertex : int64 (n_nodes,)              tree nodes in increasing vertex order
    arc_down, arc_up : int64 (n_arcs,)          node indices, arcs in creation order
    seg : int64 (N,)                            arc (creation index) of every vertex, -1 masked
    comp_min, comp_max : int64 (n_components,)  essential pairs: component minimum and maximum
    """
    N = rank.shape[0]
    K = offs.shape[0]
    parent = np.empty(N, dtype=np.int64)
    for i in range(N):
        parent[i] = -1
    cmin = np.empty(N, dtype=np.int64)   # minimum vertex of a component (at its root)
    carc = np.empty(N, dtype=np.int64)   # current (open) arc of a component (at its root)
    seg = np.full(N, -1, dtype=np.int64)
    pb = np.empty(N // 2 + 2, dtype=np.int64)
    pd = np.empty(N // 2 + 2, dtype=np.int64)
    pe = np.empty(N // 2 + 2, dtype=np.int64)
    node_vertex = np.empty(N, dtype=np.int64)
    arc_down = np.empty(N, dtype=np.int64)
    arc_up = np.full(N, -1, dtype=np.int64)
    nu = np.empty(K, dtype=np.int64)
    ns = np.empty(K, dtype=np.int64)
    roots = np.empty(K, dtype=np.int64)
    n_pairs = 0
    n_nodes = 0
    n_arcs = 0
    for idx in range(verts.shape[0]):
        v = verts[idx]
        rv = rank[v]
        m = neighbors(v, dims, strides, offs, rank, nu, ns)
        nr = 0
        for t in range(m):
            u = nu[t]
            if rank[u] < rv:
                r = _find(parent, u)
                dup = False
                for q in range(nr):
                    if roots[q] == r:
                        dup = True
                        break
                if not dup:
                    roots[nr] = r
                    nr += 1
        if nr == 1:  # regular: v joins the component below it
            r = roots[0]
            parent[v] = r
            seg[v] = carc[r]
            continue
        if nr == 0:  # minimum: a new component
            parent[v] = v
            cmin[v] = v
            owner = v
        else:  # join saddle: the component with the oldest minimum survives (elder rule)
            owner = roots[0]
            for q in range(1, nr):
                if rank[cmin[roots[q]]] < rank[cmin[owner]]:
                    owner = roots[q]
            for q in range(nr):
                r = roots[q]
                arc_up[carc[r]] = n_nodes  # the arcs below end at v's node
                if r != owner:
                    pb[n_pairs] = cmin[r]
                    pd[n_pairs] = v
                    pe[n_pairs] = cmin[owner]
                    n_pairs += 1
                    parent[r] = owner
            parent[v] = owner
        # either way v is a node, and the arc above it starts there
        node_vertex[n_nodes] = v
        arc_down[n_arcs] = n_nodes
        carc[owner] = n_arcs
        seg[v] = n_arcs
        n_nodes += 1
        n_arcs += 1
    # one root per connected component, placed on its maximum (the last vertex of it)
    comp_root = np.full(N, -1, dtype=np.int64)
    comp_max_v = np.empty(N, dtype=np.int64)
    n_comp = 0
    for idx in range(verts.shape[0] - 1, -1, -1):
        v = verts[idx]
        r = _find(parent, v)
        if comp_root[r] == -1:
            comp_root[r] = n_comp
            comp_max_v[n_comp] = v
            n_comp += 1
    comp_min = np.empty(n_comp, dtype=np.int64)
    comp_max = np.empty(n_comp, dtype=np.int64)
    for c in range(n_comp - 1, -1, -1):
        vmax = comp_max_v[c]
        r = _find(parent, vmax)
        comp_min[n_comp - 1 - c] = cmin[r]
        comp_max[n_comp - 1 - c] = vmax
    # close each component's open arc at a root node on its maximum (node ids are put in
    # vertex order by the caller when there are several components)
    for c in range(n_comp):
        vmax = comp_max[c]
        r = _find(parent, vmax)
        a = carc[r]
        if node_vertex[arc_down[a]] == vmax:
            # the maximum is itself a node (1-D join saddle on top): no arc above it
            arc_up[a] = -2
            continue
        node_vertex[n_nodes] = vmax
        arc_up[a] = n_nodes
        n_nodes += 1
    return (pb[:n_pairs].copy(), pd[:n_pairs].copy(), pe[:n_pairs].copy(),
            node_vertex[:n_nodes].copy(), arc_down[:n_arcs].copy(), arc_up[:n_arcs].copy(), seg,
            comp_min, comp_max)


@njit(**NJ)
def link_components(rank, dims, strides, offs, adj, boundary_out, lower_out, upper_out):
    """Number of connected components of the lower and the upper link of every vertex."""
    N = rank.shape[0]
    K = offs.shape[0]
    nu = np.empty(K, dtype=np.int64)
    ns = np.empty(K, dtype=np.int64)
    lab = np.empty(K, dtype=np.int64)
    side = np.empty(K, dtype=np.int8)
    for v in range(N):
        if rank[v] < 0:
            lower_out[v] = -1
            upper_out[v] = -1
            continue
        on_b = False
        for a in range(4):
            if dims[a] > 1:
                c = (v // strides[a]) % dims[a]
                if c == 0 or c == dims[a] - 1:
                    on_b = True
        boundary_out[v] = on_b
        m = neighbors(v, dims, strides, offs, rank, nu, ns)
        rv = rank[v]
        for t in range(m):
            lab[t] = t
            side[t] = 1 if rank[nu[t]] > rv else 0
        # union neighbours on the same side joined by a link edge
        for t in range(m):
            for w in range(t + 1, m):
                if side[t] == side[w] and adj[ns[t], ns[w]]:
                    a = t
                    while lab[a] != a:
                        a = lab[a]
                    b = w
                    while lab[b] != b:
                        b = lab[b]
                    if a != b:
                        if a < b:
                            lab[b] = a
                        else:
                            lab[a] = b
        nl = 0
        nh = 0
        for t in range(m):
            if lab[t] == t:
                if side[t] == 1:
                    nh += 1
                else:
                    nl += 1
        lower_out[v] = nl
        upper_out[v] = nh


_BIG = np.int64(1) << np.int64(62)


@njit(**NJ)
def _heap_push(hk, hv, size, key, v):
    """Max-heap on (key, v) (lexicographic, like std::priority_queue of pairs)."""
    i = size
    hk[i] = key
    hv[i] = v
    while i > 0:
        p = (i - 1) // 2
        if hk[p] > hk[i] or (hk[p] == hk[i] and hv[p] > hv[i]):
            break
        hk[p], hk[i] = hk[i], hk[p]
        hv[p], hv[i] = hv[i], hv[p]
        i = p
    return size + 1


@njit(**NJ)
def _heap_pop(hk, hv, size):
    v = hv[0]
    size -= 1
    hk[0] = hk[size]
    hv[0] = hv[size]
    i = 0
    while True:
        l = 2 * i + 1
        r = l + 1
        b = i
        if l < size and (hk[l] > hk[b] or (hk[l] == hk[b] and hv[l] > hv[b])):
            b = l
        if r < size and (hk[r] > hk[b] or (hk[r] == hk[b] and hv[r] > hv[b])):
            b = r
        if b == i:
            break
        hk[b], hk[i] = hk[i], hk[b]
        hv[b], hv[i] = hv[i], hv[b]
        i = b
    return v, size


@njit(**NJ)
def flatten_segments(rank, dims, strides, offs, minima, saddles, segid):
    """Segments of removed minima: the component of ``{rank < rank[saddle]}`` holding the minimum.

    ``segid`` (N,) is filled with the index of the segment of each vertex (-1 elsewhere).
    Returns the vertices of all segments, concatenated, and the start of each segment.
    """
    N = rank.shape[0]
    K = offs.shape[0]
    nu = np.empty(K, dtype=np.int64)
    ns = np.empty(K, dtype=np.int64)
    out = np.empty(N, dtype=np.int64)
    start = np.empty(minima.shape[0] + 1, dtype=np.int64)
    n = 0
    for p in range(minima.shape[0]):
        start[p] = n
        m = minima[p]
        rs = rank[saddles[p]]
        segid[m] = p
        out[n] = m
        head = n
        n += 1
        while head < n:
            v = out[head]
            head += 1
            k = neighbors(v, dims, strides, offs, rank, nu, ns)
            for t in range(k):
                u = nu[t]
                if segid[u] == -1 and rank[u] < rs:
                    segid[u] = p
                    out[n] = u
                    n += 1
    start[minima.shape[0]] = n
    return out[:n].copy(), start


@njit(**NJ)
def lts_local_order(inv, dims, strides, offs, rank, segs, start, saddles, segid, n_active):
    """TTK LTS ``computeLocalOrderOfSegment`` on every segment, in TTK's inverted order domain.

    ``inv`` is the inverted order (``n_active - 1 - rank``), in which removed minima are maxima.
    Returns ``local`` (N,): the local order of segment vertices (negative), ``2**62`` on saddles.
    """
    N = rank.shape[0]
    K = offs.shape[0]
    nu = np.empty(K, dtype=np.int64)
    ns = np.empty(K, dtype=np.int64)
    local = np.zeros(N, dtype=np.int64)
    for p in range(saddles.shape[0]):
        a = start[p]
        b = start[p + 1]
        n = b - a
        s = saddles[p]
        if n == 1:
            local[segs[a]] = -2
            continue
        for i in range(a, b):
            v = segs[i]
            local[v] = inv[v] - n_active
        hk = np.empty(n + 2, dtype=np.int64)
        hv = np.empty(n + 2, dtype=np.int64)
        seq = np.empty(n + 1, dtype=np.int64)
        boundary = np.empty(n, dtype=np.int64)
        cand = np.empty(n, dtype=np.int64)
        nb = 0
        superlevel = True
        it = 0
        while True:
            it += 1
            size = 0
            if superlevel:
                size = _heap_push(hk, hv, size, _BIG, s)
            else:
                off = -n - 1
                for i in range(a, b):
                    v = segs[i]
                    local[v] = off - local[v]
                for i in range(nb):
                    v = boundary[i]
                    size = _heap_push(hk, hv, size, local[v], v)
                    local[v] = 0
                size = _heap_push(hk, hv, size, -_BIG, s)
            q = 0
            while size > 0:
                v, size = _heap_pop(hk, hv, size)
                seq[q] = v
                q += 1
                k = neighbors(v, dims, strides, offs, rank, nu, ns)
                for t in range(k):
                    u = nu[t]
                    if segid[u] == p and local[u] < 0:
                        size = _heap_push(hk, hv, size, local[u], u)
                        local[u] = 0
            if superlevel:
                for i in range(1, n + 1):
                    local[seq[i]] = -i
            else:
                o = -n
                for i in range(n):
                    local[seq[i]] = o
                    o += 1
            superlevel = not superlevel
            nres_max = 0
            nres_min = 0
            nc = 0
            for i in range(a, b):
                v = segs[i]
                on_b = False
                smaller = False
                larger = False
                lv = local[v]
                k = neighbors(v, dims, strides, offs, rank, nu, ns)
                for t in range(k):
                    u = nu[t]
                    if u == s:
                        larger = True
                        continue
                    if segid[u] != p:
                        on_b = True
                    elif local[u] > lv:
                        larger = True
                    else:
                        smaller = True
                if not larger:
                    nres_max += 1
                if on_b:
                    cand[nc] = v
                    nc += 1
                elif not smaller:
                    nres_min += 1
            residual = nres_min > 0 or nres_max > 0
            if residual and nb == 0:
                for i in range(nc):
                    boundary[i] = cand[i]
                nb = nc
            if not residual or it > 1000:
                break
    for p in range(saddles.shape[0]):
        local[saddles[p]] = _BIG
    return local


@njit(**NJ)
def bottleneck_rank(rank, verts, dims, strides, offs, source, target):
    """The lowest rank at which ``source`` and ``target`` lie in one component of the sublevel
    set (the rank of the join saddle between them), or -1 when they never do (a mask splits them)."""
    N = rank.shape[0]
    K = offs.shape[0]
    parent = np.full(N, -1, dtype=np.int64)
    nu = np.empty(K, dtype=np.int64)
    ns = np.empty(K, dtype=np.int64)
    for idx in range(verts.shape[0]):
        v = verts[idx]
        parent[v] = v
        m = neighbors(v, dims, strides, offs, rank, nu, ns)
        for t in range(m):
            u = nu[t]
            if rank[u] < rank[v]:
                parent[_find(parent, u)] = _find(parent, v)
        if parent[source] >= 0 and parent[target] >= 0 and _find(parent, source) == _find(parent, target):
            return rank[v]
    return -1


@njit(**NJ)
def sublevel_path(rank, dims, strides, offs, source, target, level):
    """A path of fewest edges from ``source`` to ``target`` through vertices of rank at most
    ``level`` (breadth first); empty when there is none."""
    N = rank.shape[0]
    K = offs.shape[0]
    prev = np.full(N, -2, dtype=np.int64)
    queue = np.empty(N, dtype=np.int64)
    nu = np.empty(K, dtype=np.int64)
    ns = np.empty(K, dtype=np.int64)
    prev[source] = -1
    queue[0] = source
    head, tail = 0, 1
    while head < tail:
        v = queue[head]
        head += 1
        if v == target:
            break
        m = neighbors(v, dims, strides, offs, rank, nu, ns)
        for t in range(m):
            u = nu[t]
            if prev[u] == -2 and rank[u] <= level:
                prev[u] = v
                queue[tail] = u
                tail += 1
    if prev[target] == -2:
        return np.zeros(0, dtype=np.int64)
    n = 1
    v = target
    while prev[v] != -1:
        v = prev[v]
        n += 1
    path = np.empty(n, dtype=np.int64)
    v = target
    for i in range(n - 1, -1, -1):
        path[i] = v
        v = prev[v]
    return path
