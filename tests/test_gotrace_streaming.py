"""The Go trace reader works a generation in pieces (groups of threads, blocks of stretches)
to bound its memory: the pieces must not show in the result.

- A goroutine-in-syscall status binds the thread it names before any of that thread's events
  are read. When the status comes in a later group than the thread's own events, the
  thread's group is worked again: the transitions must equal those of the order where the
  status comes first (hand-written events: the runtime rarely writes such a status from
  another thread, and no capture here has one).
- On a real trace, the slices do not depend on the group or block size.
"""

from __future__ import annotations

import numpy as np
import pytest
from tracecorr.parsers import gotrace
from tracecorr.parsers.gotrace import stretches
from tracecorr.parsers.gotrace.decode import EventArrays
from tracecorr.parsers.gotrace.events import EV, MAX_ARGS, NO_THREAD
from tracecorr.parsers.gotrace.states import RUNNING, SYSCALL, WAITING, ThreadStates

from tests.conftest import SAMPLES


def events(m: int, *evs: tuple) -> EventArrays:
    """One batch of thread *m*: (type, time, args...) per event."""
    n = len(evs)
    args = np.zeros((n, MAX_ARGS), np.uint64)
    for i, (_, _, *a) in enumerate(evs):
        args[i, : len(a)] = a
    return EventArrays(
        typ=np.array([e[0] for e in evs], np.uint8),
        m=np.full(n, m, np.int64),
        time=np.array([e[1] for e in evs], np.int64),
        args=args,
        batch=np.zeros(n, np.int64),
        offset=np.arange(n, dtype=np.int64),
        batch_m=np.array([m], np.int64),
    )


# Thread 20 is in a cgo call with goroutine 7 when the generation starts; only a status
# written by thread 10 says so. Thread 20 then returns, runs on and blocks; thread 10 runs
# goroutine 5 meanwhile.
SYSCALL_THREAD = events(20, (EV.GoSyscallEnd, 200), (EV.GoBlock, 300, 0, 0))
STATUS_THREAD = events(
    10,
    (EV.GoStatus, 50, 7, 20, 3),  # goroutine 7, thread 20, status 3 = in a syscall
    (EV.GoStatus, 60, 5, 10, 2),  # goroutine 5 running here
    (EV.GoStop, 400, 0, 0),
)


def transitions_in_order(order: list[str], carried: dict | None = None):
    groups = {"syscall": SYSCALL_THREAD, "status": STATUS_THREAD}
    decoded: list[str] = []

    def decode(batches):
        decoded.append(batches[0])
        return groups[batches[0]]

    states = ThreadStates(initial_gen=1, current=dict(carried or {}))
    tr = states.transitions([[name] for name in order], decode, gen=2)
    rows = [
        (int(tr.goid[i]), int(tr.frm[i]), int(tr.to[i]), int(tr.m[i]), int(tr.time[i]))
        for i in range(len(tr))
    ]
    return rows, states, decoded


def test_a_late_syscall_status_binds_its_thread_as_an_early_one_does():
    first, states_first, decoded_first = transitions_in_order(["status", "syscall"])
    late, states_late, decoded_late = transitions_in_order(["syscall", "status"])
    assert decoded_first == ["status", "syscall"]
    assert decoded_late == ["syscall", "status", "syscall"]  # the thread's group again
    assert late == first
    assert states_late.problems == states_first.problems == {}
    assert states_late.current == states_first.current
    # goroutine 7 left its syscall and blocked, on thread 20
    assert (7, SYSCALL, RUNNING, 20, 200) in late and (7, RUNNING, WAITING, 20, 300) in late
    # without the status, thread 20's events belong to no goroutine (the status matters)
    alone, states_alone, _ = transitions_in_order(["syscall"])
    assert not any(r[0] == 7 for r in alone)
    assert states_alone.problems == {
        "GoSyscallEnd with no goroutine on its thread": 1,
        "GoBlock with no goroutine on its thread": 1,
    }


def test_a_late_status_naming_a_busy_thread_is_counted_once():
    """A status naming a thread that, before the generation, ran another goroutine is a
    problem whichever group it comes in, and is counted once."""
    for order in (["status", "syscall"], ["syscall", "status"]):
        _, states, _ = transitions_in_order(order, carried={20: (9, 4)})
        assert states.problems == {
            "thread running another goroutine named in a syscall status": 1
        }, order


def slices_with(monkeypatch, group_bytes: int, block_rows: int):
    monkeypatch.setattr(gotrace, "GROUP_BYTES", group_bytes)
    monkeypatch.setattr(stretches, "BLOCK_ROWS", block_rows)
    return gotrace.parse(SAMPLES / "go_hiredis" / "go.trace").slices


@pytest.mark.parametrize("group_bytes, block_rows", [(1, 7), (4096, 1000), (1 << 30, 1 << 30)])
def test_slices_do_not_depend_on_the_pieces(monkeypatch, group_bytes, block_rows):
    default = gotrace.parse(SAMPLES / "go_hiredis" / "go.trace").slices
    pieces = slices_with(monkeypatch, group_bytes, block_rows)
    assert len(default) > 5000
    assert pieces.equals(default)


def test_the_order_of_threads_in_a_group_does_not_show(monkeypatch):
    """thread_groups hands each group's threads in ascending order, so state tracking can
    take the events as decoded; threads in another order are sorted there instead. Both
    must give the same tables."""
    monkeypatch.setattr(gotrace, "GROUP_BYTES", 1 << 30)  # one group: every thread in it
    ascending = gotrace.parse(SAMPLES / "go_hiredis" / "go.trace")
    made = gotrace.thread_groups

    def descending(batches, max_bytes):
        out = []
        for group in made(batches, max_bytes):
            ms = [b.m for b in group]
            assert ms == sorted(ms, key=lambda m: -1 if m == NO_THREAD else m)
            out.append(sorted(group, key=lambda b: -1 if b.m == NO_THREAD else b.m, reverse=True))
        return out

    monkeypatch.setattr(gotrace, "thread_groups", descending)
    swapped = gotrace.parse(SAMPLES / "go_hiredis" / "go.trace")
    assert len(ascending.slices) > 5000
    for table in ("slices", "instants", "threads", "stacks"):
        assert getattr(swapped, table).equals(getattr(ascending, table)), table
