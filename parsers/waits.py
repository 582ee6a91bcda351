"""Native frames that mean "this thread is waiting", and the syscalls they wait in.

One list for everyone who reads sampled native stacks: the py-spy parser marks a sample as
waiting from it, alignment pairs a waiting py-spy run with the perf syscall its leaf makes (a
``poll`` run with a ``poll`` syscall, never with a ``nanosleep``), and the correlator asks
which syscall a Python call site was waiting in.

Three kinds of frames:

    libc wrappers       a syscall wrapper (``__libc_recv``, ``__GI___poll``): the syscalls it
                        makes; glibc's internal aliases are normalised away
    CPython socket      the socket module's waits (``internal_select``, ``sock_recv_into``),
    waits               for stacks whose libc leaf py-spy showed only as an address
    futex waits         locks, condition variables, semaphores: a ``futex`` syscall. In
                        CPython on Linux a condition-variable wait is the GIL's (its locks
                        are semaphores): ``GIL_WAITS``
    other waits         frames that only say the thread waits (``time.sleep``)
"""

from __future__ import annotations

#: libc wrapper (normalised, see ``wrapper_syscalls``) -> the syscalls it makes
LIBC_WRAPPERS: dict[str, frozenset[str]] = {
    "poll": frozenset({"poll", "ppoll"}),
    "ppoll": frozenset({"ppoll"}),
    "select": frozenset({"select", "pselect6"}),
    "pselect": frozenset({"pselect6"}),
    "epoll_wait": frozenset({"epoll_wait", "epoll_pwait", "epoll_pwait2"}),
    "recv": frozenset({"recvfrom"}),
    "recvfrom": frozenset({"recvfrom"}),
    "recvmsg": frozenset({"recvmsg"}),
    "read": frozenset({"read"}),
    "nanosleep": frozenset({"nanosleep", "clock_nanosleep"}),
    "clock_nanosleep": frozenset({"clock_nanosleep", "nanosleep"}),
    "accept": frozenset({"accept", "accept4"}),
    "accept4": frozenset({"accept4"}),
    "connect": frozenset({"connect"}),
}

#: CPython's socket-module waits (callers of the libc wrappers) -> the syscalls below them
CPYTHON_SOCKET_WAITS: dict[str, frozenset[str]] = {
    "internal_select": frozenset({"poll", "ppoll", "select"}),
    "sock_call_ex": frozenset({"poll", "ppoll", "recvfrom", "read"}),
    "sock_recv_guts": frozenset({"recvfrom", "read", "poll"}),
    "sock_recv_into": frozenset({"recvfrom", "read", "poll"}),
    "sock_recv": frozenset({"recvfrom", "read", "poll"}),
}

#: libc's condition-variable waits and mutex lock: in CPython, the GIL's (take_gil locks its
#: mutex, then waits on its condition variable, timed by the switch interval); CPython's own
#: locks are semaphores
GIL_WAITS = frozenset(
    {"pthread_cond_wait", "pthread_cond_timedwait", "pthread_cond_timedwait64",
     "pthread_cond_clockwait", "pthread_cond_clockwait64", "pthread_mutex_lock"}
)  # fmt: skip

#: futex-based waits (locks, condition variables, semaphores): the futex syscall
FUTEX_WAITS = GIL_WAITS | frozenset(
    {
        "futex_wait",
        "futex_abstimed_wait_common",
        "futex_abstimed_wait_cancelable",
        "sem_wait",
        "sem_clockwait",
        "sem_timedwait",
        "lll_lock_wait",
        "lll_lock_wait_private",
        "PyThread_acquire_lock_timed",
    }
)

#: CPython's GIL functions, as a native callchain names them (DWARF, or a debug build's
#: frame pointers): a futex under one of them is the interpreter waiting for the GIL
CPYTHON_GIL_FUNCTIONS = frozenset(
    {"take_gil", "PyEval_RestoreThread", "PyEval_AcquireThread", "PyEval_AcquireLock"}
)

#: frames that mean waiting without naming one syscall
OTHER_WAITS = frozenset({"time_sleep", "lock_PyThread_acquire_lock"})

#: how far from the leaf a stack is searched for the frame that says what it waits in
WAIT_FRAME_DEPTH = 6

_GLIBC_PREFIXES = ("GI___", "GI_", "libc_")


def normalise(function: str) -> str:
    """glibc's aliases of a function -> its plain name: '__GI___poll' -> 'poll',
    '__libc_recv' -> 'recv', '__clock_nanosleep' -> 'clock_nanosleep', and without a symbol
    version: 'pthread_cond_timedwait@@GLIBC_2.3.2' -> 'pthread_cond_timedwait'."""
    name = function.split("@", 1)[0].lstrip("_")
    for prefix in _GLIBC_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :].lstrip("_")
    return name


def wrapper_syscalls(function: str) -> frozenset[str]:
    """Syscalls a libc frame stands for: '__libc_recv' -> {'recvfrom'}; unknown -> empty."""
    return LIBC_WRAPPERS.get(normalise(function), frozenset())


_FUTEX = frozenset({"futex"})


def frame_waits(function: str) -> frozenset[str]:
    """Syscalls a native frame waits in, as a libc wrapper, a futex-based wait or a CPython
    socket wait."""
    name = normalise(function)
    if name in FUTEX_WAITS:
        return _FUTEX
    return wrapper_syscalls(function) or CPYTHON_SOCKET_WAITS.get(function, frozenset())


def is_wait_frame(function: str) -> bool:
    """Does this native frame mean the thread is waiting (in the kernel)?"""
    return bool(frame_waits(function)) or normalise(function) in OTHER_WAITS


def is_gil_wait(functions: list[str]) -> bool:
    """Is a native stack (leaf first) the interpreter waiting for the GIL? Its first wait
    frame is a condition-variable wait, or a GIL function is among its first frames."""
    for f in functions[:WAIT_FRAME_DEPTH]:
        name = normalise(f)
        if name in CPYTHON_GIL_FUNCTIONS or name in GIL_WAITS:
            return True
        if frame_waits(f):
            return False
    return False


def stack_waits(functions: list[str]) -> frozenset[str]:
    """Syscalls a stack (leaf first) is waiting in: its first frame that names a libc wrapper
    or a CPython socket wait, within a few frames of the leaf."""
    for f in functions[:WAIT_FRAME_DEPTH]:
        found = frame_waits(f)
        if found:
            return found
    return frozenset()
