"""A balanced k-way min-cut of a computation graph: which vertices share an actor
(`--vertices-per-actor auto`, docs/placement.md).

Pure Python and numpy, no Ray: `min_cut` takes vertices in topological order, a
weight per vertex (its compute) and a weight per edge (bytes per batch that cross
it), and returns k shards such that

- every vertex is in exactly one shard, every shard is non-empty;
- no shard's weight exceeds the balance bound `B = (1 + imbalance) * B*`, where B*
  is the heaviest shard of the most balanced split of the topological order into k
  contiguous runs (so B is always reachable, even when one vertex outweighs W / k);
- the cut (the weight of edges between shards) is as small as the two steps below
  find it:

1. the best contiguous split under B of two topological orders (the graph's own and a
   depth-first one that keeps branches together), by dynamic programming over split
   points (O(n k), a sliding-window minimum). Its objective is the sum over split
   points of the weight of edges crossing each: the cut itself when no edge skips a
   whole shard, an upper bound otherwise;
2. Fiduccia–Mattheyses passes on the exact cut: vertices move, one at a time and
   each at most once per pass, to the neighbouring shard that gains most while
   every shard stays within B and non-empty, accepting losing moves on the way;
   the pass is rolled back to its best prefix; passes repeat while they gain.

The split into equal-size contiguous chunks (what an integer `--vertices-per-actor`
does) is refined the same way whenever it meets B, and the smaller cut of the two is
kept: the result never cuts more than equal chunking within the same bound. Ties are
broken by position in the topological order, so the same graph and k give the same
shards every time.

`model_weights` estimates the weights from a graph's shapes; `--placement-from`
takes the edge weights from a traffic log instead (placement.py).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: how much heavier than the most balanced contiguous split a shard may get
IMBALANCE = 0.1
#: bytes of one number on the wire (float64: every message of the engine)
ITEM_BYTES = 8
#: Fiduccia–Mattheyses: at most this many passes, and a pass stops after this many
#: moves in a row that did not improve on its best prefix
MAX_PASSES = 8
PATIENCE = 64


@dataclass(frozen=True)
class Weights:
    """What a partition weighs: vertices in topological order, a compute estimate per
    vertex, and bytes per batch per neighbour pair (undirected, summed over kinds)."""
    order: tuple[str, ...]
    vertex: Mapping[str, float]
    edge: Mapping[tuple[str, str], float]


@dataclass(frozen=True)
class Partition:
    """Shards (each in topological order; shards ordered by their first vertex), the
    bytes per batch crossing between shards, the total over all edges, each shard's
    weight and the balance bound they meet."""
    shards: tuple[tuple[str, ...], ...]
    cut: float
    total: float
    loads: tuple[float, ...]
    bound: float

    @property
    def cut_fraction(self) -> float:
        return self.cut / self.total if self.total else 0.0


# --- weights from a graph's shapes ----------------------------------------------------------


def model_weights(graph, batch_size: int) -> Weights:
    """Weights estimated from the graph alone, for batches of `batch_size` samples.

    Vertex: multiply-adds per batch plus activation size (`batch * (macs + act) +
    params`): a parameter tensor is used once per output position (its activation's
    size over its first axis: 1 for dense, the pixels of a conv's channel), and the
    optimizer touches every parameter once. Edge parent -> child: the parent's value
    forward and the child's error back (inputs take no error), `batch * size * 8`
    bytes each; a tied member and its owner: the partial update and the new value,
    `params * 8` bytes each.
    """
    batch = int(batch_size)
    shapes = graph.param_shapes()
    vertex = {}
    for name in graph.order:
        shape = graph.shapes[name]
        act = math.prod(shape)
        positions = act // shape[0] if len(shape) > 1 and shape[0] else 1
        params = sum(math.prod(s) for s in shapes.get(name, {}).values())
        vertex[name] = float(batch * (params * positions + act) + params)
    edge: dict[tuple[str, str], float] = {}
    for parent, child in graph.edges:
        size = math.prod(graph.shapes[parent]) * ITEM_BYTES * batch
        both = 1 if graph.is_input(parent) else 2
        _add(edge, parent, child, float(size * both))
    for group in graph.tied:
        owner, param = group.owner
        size = math.prod(shapes[owner][param]) * ITEM_BYTES
        for member, _ in group.members:
            if member != owner:
                _add(edge, owner, member, float(2 * size))
    return Weights(tuple(graph.order), vertex, edge)


def _add(edge: dict, a: str, b: str, w: float) -> None:
    key = (a, b) if a <= b else (b, a)
    edge[key] = edge.get(key, 0.0) + w


def pair(a: str, b: str) -> tuple[str, str]:
    """The key of an undirected neighbour pair in `Weights.edge`."""
    return (a, b) if a <= b else (b, a)


# --- partitions -------------------------------------------------------------------------------


def contiguous(order: Sequence[str], k: int) -> tuple[tuple[str, ...], ...]:
    """`order` cut into k contiguous runs of equal size (the first ones one longer)."""
    n = len(order)
    k = max(1, min(k, n))
    size, extra = divmod(n, k)
    out, start = [], 0
    for i in range(k):
        end = start + size + (i < extra)
        out.append(tuple(order[start:end]))
        start = end
    return tuple(out)


def cut_of(shards: Sequence[Sequence[str]], weights: Weights) -> float:
    """Bytes per batch on edges between different shards."""
    where = {v: i for i, s in enumerate(shards) for v in s}
    return float(sum(w for (a, b), w in sorted(weights.edge.items()) if where[a] != where[b]))


def min_cut(weights: Weights, k: int, imbalance: float = IMBALANCE) -> Partition:
    """k shards (k capped by the vertex count) of small cut under the balance bound
    (see the module doc)."""
    order = weights.order
    n = len(order)
    k = max(1, min(int(k), n))
    index = {v: i for i, v in enumerate(order)}
    w = np.array([float(weights.vertex[v]) for v in order])
    edges = sorted((min(index[a], index[b]), max(index[a], index[b]), float(x))
                   for (a, b), x in weights.edge.items() if a != b and x > 0)
    prefix = np.concatenate([[0.0], np.cumsum(w)])
    bound = balanced_bound(prefix, k) * (1.0 + imbalance)
    candidates = []
    for other in (np.arange(n), _depth_first(n, edges)):   # two topological orders
        split = _split_dp(np.concatenate([[0.0], np.cumsum(w[other])]),
                          _renumbered(edges, other), n, k, bound)
        if split is not None:
            part = np.empty(n, dtype=np.int64)
            part[other] = split
            candidates.append(part)
    equal = [len(s) for s in contiguous(order, k)]
    equal_part = np.repeat(np.arange(k), equal)
    if max(np.bincount(equal_part, weights=w, minlength=k)) <= bound:
        candidates.append(equal_part)
    neighbours = _adjacency(n, edges)
    best = None
    for part in candidates:
        part = _refine(part.copy(), w, neighbours, k, bound)
        cut = _cut(part, edges)
        if best is None or cut < best[0]:
            best = (cut, part)
    cut, part = best
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(part.tolist()):
        groups.setdefault(p, []).append(i)
    ordered = sorted(groups.values(), key=lambda members: members[0])
    shards = tuple(tuple(order[i] for i in members) for members in ordered)
    loads = tuple(float(w[members].sum()) for members in ordered)
    return Partition(shards, cut, float(sum(x for _, _, x in edges)), loads, bound)


def balanced_bound(prefix: np.ndarray, k: int) -> float:
    """B*: the smallest possible heaviest run of a split into k contiguous runs
    (bisection on the bound; a greedy scan tells whether k runs suffice)."""
    total = float(prefix[-1])
    lo = max(total / k, float(np.max(np.diff(prefix))) if len(prefix) > 1 else 0.0)
    hi = total
    if _runs_needed(prefix, lo) <= k:
        return lo
    for _ in range(100):
        mid = (lo + hi) / 2
        if mid <= lo or mid >= hi:
            break
        if _runs_needed(prefix, mid) <= k:
            hi = mid
        else:
            lo = mid
    return hi


def _runs_needed(prefix: np.ndarray, bound: float) -> int:
    """Contiguous runs of weight <= bound a greedy scan needs (the fewest possible)."""
    runs, start, n = 0, 0, len(prefix) - 1
    while start < n:
        end = int(np.searchsorted(prefix, prefix[start] + bound, side="right")) - 1
        if end <= start:
            return n + 1   # one vertex alone exceeds the bound
        runs, start = runs + 1, end
    return runs


def _split_dp(prefix: np.ndarray, edges, n: int, k: int, bound: float) -> np.ndarray:
    """Shard of each vertex: the contiguous split into exactly k runs, each within
    `bound`, that minimises the summed weight crossing its split points."""
    diff = np.zeros(n + 1)
    for a, b, x in edges:          # the edge crosses split points a+1 .. b
        diff[a + 1] += x
        diff[b + 1] -= x
    crossing = np.cumsum(diff)[:n + 1]   # crossing[j]: weight across the split before j
    crossing[n] = 0.0
    # lowest start of a run ending at j that stays within the bound
    low = np.searchsorted(prefix, prefix - bound * (1 + 1e-12), side="left")
    inf = math.inf
    cost = np.full(n + 1, inf)
    cost[0] = 0.0
    choice = np.zeros((k + 1, n + 1), dtype=np.int64)
    for m in range(1, k + 1):
        new = np.full(n + 1, inf)
        window: list[int] = []   # a monotone deque of candidate starts i, as a list
        head = 0
        nxt = 0                  # next start to enter the window
        last = n - (k - m)       # the m-th run must leave a vertex for each later one
        for j in range(m, last + 1):
            while nxt <= j - 1:
                if cost[nxt] < inf:
                    while len(window) > head and cost[window[-1]] >= cost[nxt]:
                        window.pop()
                    window.append(nxt)
                nxt += 1
            while head < len(window) and window[head] < low[j]:
                head += 1
            if head < len(window):
                i = window[head]
                new[j] = cost[i] + crossing[j]
                choice[m, j] = i
        cost = new
    if not cost[n] < inf:  # another order than the one B* was found in: no split fits
        return None
    part = np.zeros(n, dtype=np.int64)
    j = n
    for m in range(k, 0, -1):
        i = int(choice[m, j])
        part[i:j] = m - 1
        j = i
    return part


def _depth_first(n: int, edges) -> np.ndarray:
    """Another topological order: depth first from the earliest vertices, a vertex's
    children right after it once their other parents are placed, so a branch stays
    together (the graph's own order is breadth-like for wide graphs). Ties by index."""
    children: list[list[int]] = [[] for _ in range(n)]
    waiting = np.zeros(n, dtype=np.int64)
    for a, b, _ in edges:
        children[a].append(b)
        waiting[b] += 1
    stack = [v for v in range(n - 1, -1, -1) if waiting[v] == 0]
    out = []
    while stack:
        v = stack.pop()
        out.append(v)
        for c in sorted(children[v], reverse=True):   # each pair once (merged weights)
            waiting[c] -= 1
            if waiting[c] == 0:
                stack.append(c)
    return np.array(out, dtype=np.int64)


def _renumbered(edges, order: np.ndarray) -> list:
    """The edges with vertices numbered by their position in `order` (lower end first)."""
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    return sorted((int(min(position[a], position[b])), int(max(position[a], position[b])), x)
                  for a, b, x in edges)


def _adjacency(n: int, edges) -> list[list[tuple[int, float]]]:
    neighbours: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    for a, b, x in edges:
        neighbours[a].append((b, x))
        neighbours[b].append((a, x))
    return neighbours


def _cut(part: np.ndarray, edges) -> float:
    return float(sum(x for a, b, x in edges if part[a] != part[b]))


def _refine(part: np.ndarray, w: np.ndarray, neighbours, k: int, bound: float) -> np.ndarray:
    """Fiduccia–Mattheyses passes (k-way, one vertex at a time) on the exact cut."""
    state = _Moves(part, w, neighbours, k, bound)
    for _ in range(MAX_PASSES):
        if not state.one_pass():
            break
    return state.part


class _Moves:
    """The state of the refinement: shards, their loads and sizes, and per vertex the
    weight of its edges into each shard (`conn[v][s]`)."""

    def __init__(self, part, w, neighbours, k: int, bound: float):
        self.part, self.w, self.neighbours, self.bound = part, w, neighbours, bound
        self.load = np.bincount(part, weights=w, minlength=k).astype(float)
        self.size = np.bincount(part, minlength=k)
        self.conn: list[dict[int, float]] = [{} for _ in range(len(part))]
        for v, row in enumerate(self.conn):
            for u, x in neighbours[v]:
                s = int(part[u])
                row[s] = row.get(s, 0.0) + x

    def best_move(self, v: int):
        """(gain, shard) of v's best move that keeps the bound and leaves no shard empty."""
        here = int(self.part[v])
        if self.size[here] <= 1:
            return None
        inside = self.conn[v].get(here, 0.0)
        best = None
        for s in sorted(self.conn[v]):
            if s == here or self.load[s] + self.w[v] > self.bound:
                continue
            gain = self.conn[v][s] - inside
            if best is None or gain > best[0]:
                best = (gain, s)
        return best

    def move(self, v: int, target: int) -> int:
        """Move v to `target`; returns the shard it left."""
        here = int(self.part[v])
        self.part[v] = target
        self.load[here] -= self.w[v]
        self.load[target] += self.w[v]
        self.size[here] -= 1
        self.size[target] += 1
        for u, x in self.neighbours[v]:
            _shift(self.conn[u], here, target, x)
        return here

    def one_pass(self) -> bool:
        """One pass: best moves first (losing ones too), each vertex at most once, then
        back to the best prefix. True when it lowered the cut."""
        n = len(self.part)
        locked = np.zeros(n, dtype=bool)
        version = np.zeros(n, dtype=np.int64)
        heap: list = []

        def push(v: int) -> None:
            found = self.best_move(v)
            if found is not None:
                heapq.heappush(heap, (-found[0], v, found[1], int(version[v])))

        for v in range(n):
            push(v)
        moves: list[tuple[int, int]] = []
        total = best_total = 0.0
        best_len = 0
        while heap and len(moves) - best_len <= PATIENCE:
            neg, v, target, ver = heapq.heappop(heap)
            if locked[v] or ver != version[v]:
                continue
            if self.size[self.part[v]] <= 1 or self.load[target] + self.w[v] > self.bound:
                version[v] += 1   # loads moved since it was pushed: ask again
                push(v)
                continue
            moves.append((v, self.move(v, target)))
            locked[v] = True
            total += -neg
            if total > best_total + 1e-9 * max(1.0, abs(best_total)):
                best_total, best_len = total, len(moves)
            for u, _ in self.neighbours[v]:
                if not locked[u]:
                    version[u] += 1
                    push(u)
        for v, source in reversed(moves[best_len:]):   # back to the best prefix
            self.move(v, source)
        return best_len > 0


def _shift(row: dict, source: int, target: int, x: float) -> None:
    left = row[source] - x
    if left <= 1e-12 * x:
        del row[source]
    else:
        row[source] = left
    row[target] = row.get(target, 0.0) + x
