"""Where the blocked time went: the blocking records' stacks as one tree (an icicle).

A record's path runs from the caller down to the kernel: for Go, the call site (the Go frame
that called the cgo wrapper) -> the cgo call -> "Go runtime" when the Go runtime, not the
library, spent the time -> the native frames from the outermost to the leaf -> the syscall;
for Python, the Python stack (py-spy's, outermost first, with its native frames) -> the
native frames of perf's callchain -> the syscall. Kernel frames are left out: every path
would share the same entry_SYSCALL_64 -> do_syscall_64 chain, and the syscall node already
says where it ended. A node's value is the blocked time of the records whose path passes
through it, so siblings sum to at most their parent.

Nodes are numbered in pre-order with children by decreasing value, so a node's subtree is
the contiguous range ``[i, i + size)``: the page filters the timeline to a node's records
with one comparison per record.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ROOT_LABEL = "all blocked time"
#: the icicle's node for a record inside a library call that is not the library's time
_NOT_THE_LIBRARY = {
    "go-runtime": "Go runtime",
    "python-runtime": "Python runtime (GIL)",
    "caller": "caller's own code",
}


def _frames(x) -> list[str]:
    return [str(f) for f in x] if isinstance(x, (list, tuple, np.ndarray)) else []


def _user(frames: list[str]) -> list[str]:
    """Native frames without the kernel's (see the module docstring)."""
    return [f for f in frames if "[kernel" not in f]


def record_path(r: dict) -> tuple[str, ...]:
    """The path of one record (a row as a dict), root first."""
    py = _frames(r.get("python_stack"))
    if py:
        head = list(reversed(py))
    else:
        head = [str(x) for x in (r.get("call_site"), r.get("call")) if isinstance(x, str) and x]
        if not head:
            head = ["(no call site)"]
    if r.get("in") in _NOT_THE_LIBRARY:
        head.append(_NOT_THE_LIBRARY[r["in"]])
    native = list(reversed(_user(_frames(r.get("native_stack")))))
    sc = r.get("syscall")
    if isinstance(sc, str) and sc:
        leaf = f"{sc}()"
    else:
        state = r.get("off_cpu_state")
        leaf = f"off-CPU ({state})" if isinstance(state, str) and state else "off-CPU"
    return (*head, *native, leaf)


def blocked_tree(b: pd.DataFrame) -> tuple[dict, np.ndarray]:
    """(tree, node of each record). The tree is columnar: ``label``, ``parent`` (-1 for the
    root), ``depth``, ``value`` (ns), ``count``, ``size`` (nodes in the subtree, itself
    included) and ``x0`` (ns before it among its siblings, plus its parent's ``x0``)."""
    n = len(b)
    wanted = ("python_stack", "call_site", "call", "in", "native_stack", "syscall", "off_cpu_state")
    cols = [c for c in wanted if c in b.columns]
    rows = b[cols].to_dict("records") if n else []
    paths = [record_path(r) for r in rows]
    dur = b["dur_ns"].to_numpy(np.int64) if n else np.zeros(0, np.int64)
    codes, uniq = pd.factorize(pd.Series(paths, dtype=object)) if n else (np.zeros(0, int), [])
    path_dur = np.bincount(codes, weights=dur, minlength=len(uniq)) if n else []
    path_cnt = np.bincount(codes, minlength=len(uniq)) if n else []
    trie = _Trie()
    end_of_path = {
        path: trie.add(path, int(path_dur[k]), int(path_cnt[k])) for k, path in enumerate(uniq)
    }
    tree, pre = trie.columns()
    node_of_path = np.array([pre[end_of_path[p]] for p in uniq], np.int64)
    return tree, (node_of_path[codes] if n else np.zeros(0, np.int64))


class _Trie:
    """A trie over the distinct paths: children by label, value and count per node."""

    def __init__(self) -> None:
        self.children: list[dict[str, int]] = [{}]
        self.label, self.parent, self.depth = [ROOT_LABEL], [-1], [0]
        self.value, self.count = [0], [0]

    def add(self, path: tuple[str, ...], dur: int, cnt: int) -> int:
        """Count a path's records in every node along it; its last node."""
        node = 0
        self.value[0] += dur
        self.count[0] += cnt
        for lab in path:
            nxt = self.children[node].get(lab)
            if nxt is None:
                nxt = len(self.label)
                self.children[node][lab] = nxt
                self.children.append({})
                self.label.append(lab)
                self.parent.append(node)
                self.depth.append(self.depth[node] + 1)
                self.value.append(0)
                self.count.append(0)
            node = nxt
            self.value[node] += dur
            self.count[node] += cnt
        return node

    def columns(self) -> tuple[dict, np.ndarray]:
        """The tree's columns in pre-order, children by decreasing value (subtrees become
        contiguous ranges), and each node's pre-order position."""
        label, parent, value = self.label, self.parent, self.value
        pre = np.zeros(len(label), np.int64)
        order: list[int] = []
        x0 = [0] * len(label)
        stack = [0]
        while stack:
            node = stack.pop()
            pre[node] = len(order)
            order.append(node)
            kids = sorted(self.children[node].values(), key=lambda c: (-value[c], label[c]))
            off = x0[node]
            for c in kids:
                x0[c] = off
                off += value[c]
            stack.extend(reversed(kids))
        size = [1] * len(label)
        for node in reversed(order):
            if parent[node] >= 0:
                size[parent[node]] += size[node]
        tree = {
            "label": [label[i] for i in order],
            "parent": [int(pre[parent[i]]) if parent[i] >= 0 else -1 for i in order],
            "depth": [self.depth[i] for i in order],
            "value": [value[i] for i in order],
            "count": [self.count[i] for i in order],
            "size": [size[i] for i in order],
            "x0": [x0[i] for i in order],
        }
        return tree, pre
