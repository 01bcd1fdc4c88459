"""Where a sweep's points run: in this process, in a pool of worker processes, or on a
Dask cluster; always with a bounded number of tasks in flight, the points read from a
stream as slots free up.

Worker processes end with their parent: they ignore Ctrl-C (the parent stops them) and,
on Linux, ask the kernel for SIGKILL when the parent dies (``prctl(PR_SET_PDEATHSIG)``),
with a watchdog thread polling the parent's pid as a fallback elsewhere, so a
``kill -9`` of the sweep leaves no process computing for nobody.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Executor
from concurrent.futures import wait as wait_futures
from typing import Any, Callable, Iterable, Iterator, Mapping

from wsesim.errors import SpecError, SweepInterrupted
from wsesim.sweeps.rows import error_line, min_wafers_task, run_point
from wsesim.sweeps.spec import SweepSpec, point_key

DASK_CONNECT_TIMEOUT_S = 5     # before a scheduler that does not answer is an error
DASK_MAX_HANDSHAKE_BYTES = 1 << 16   # a scheduler's first message is ~200 bytes
IN_FLIGHT_PER_WORKER = 2       # tasks submitted ahead per worker (keeps every one busy)
WORKERS_PER_CPU = 4            # more processes than this per CPU only compete
WATCHDOG_INTERVAL_S = 0.5      # how often a worker checks that its parent still lives
PR_SET_PDEATHSIG = 1           # linux/prctl.h
_DASK_ADDRESS = re.compile(r"(?:\[(?P<ip6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9._-]+))"
                           r":(?P<port>[0-9]{1,5})")


def default_workers() -> int:
    """The CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def max_workers() -> int:
    """The most worker processes a sweep may start: WORKERS_PER_CPU per usable CPU."""
    return WORKERS_PER_CPU * default_workers()


def check_workers(workers: Any, source: str = "<command line>") -> int:
    """``workers`` as a count between 1 and :func:`max_workers`, else a one-line error."""
    top = max_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or \
            not 1 <= workers <= top:
        raise SpecError(source, "--workers", f"expected a whole number from 1 to {top} "
                        f"({WORKERS_PER_CPU} per CPU of this machine), got {workers!r}")
    return workers


# ----------------------------------------------------------------------- workers
def _worker_init(main_pid: int, parent_is_main: bool) -> None:
    """Runs first in every worker process: ignore Ctrl-C, die with the sweep, and print a
    warning (an unknown config.json key) as the one line the CLI prints."""
    import warnings

    from wsesim.errors import show_warning
    warnings.showwarning = show_warning
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    if parent_is_main and parent != main_pid:
        os._exit(1)   # the sweep died before this worker started
    die_with_parent(parent, main_pid)


def _start_ticks(pid: int) -> str | None:
    """When a process started (Linux: field 22 of /proc/PID/stat), to tell it from a
    later process given the same pid; None when it is gone or a zombie."""
    try:
        stat = open(f"/proc/{pid}/stat", encoding="ascii", errors="replace").read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] in "ZX" else fields[19]


def _alive(pid: int, ticks: str | None) -> bool:
    if ticks is not None:   # Linux: a zombie (killed, not yet reaped) is dead too
        return _start_ticks(pid) == ticks
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def die_with_parent(parent: int, main_pid: int | None = None) -> None:
    """End this process when ``parent`` (its parent process) ends, or ``main_pid`` (the
    sweep, when a fork server stands between them: the server outlives the sweep while
    its workers live): the kernel's parent death signal on Linux, and a thread polling
    both pids everywhere."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass   # the watchdog below still ends it
    if os.getppid() != parent:
        os._exit(1)   # the parent died before the signal was asked for
    main = main_pid if main_pid not in (None, parent) else None
    ticks = _start_ticks(main) if main is not None else None

    def watch() -> None:
        while os.getppid() == parent and (main is None or _alive(main, ticks)):
            time.sleep(WATCHDOG_INTERVAL_S)
        os._exit(1)

    threading.Thread(target=watch, name="wsesim-parent-watch", daemon=True).start()


def _process_pool(workers: int) -> Executor:
    """Worker processes: forked where that is safe (Linux, no other thread in this
    process: a script needs no ``if __name__ == "__main__"`` guard), else started from a
    fork server or spawned (a script must guard its top level, as multiprocessing
    requires)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        method = "fork"
    else:
        method = "forkserver" if "forkserver" in methods else "spawn"
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        # workers fork from a server that has imported the simulator once
        ctx.set_forkserver_preload(["wsesim.sweeps", "wsesim.run", "wsesim.specs"])
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                               initializer=_worker_init,
                               initargs=(os.getpid(), method != "forkserver"))


# -------------------------------------------------------------------------- Dask
def parse_dask_address(text: Any, source: str) -> tuple[str, int]:
    """``dask://HOST:PORT`` as (host, port), else a one-line error."""
    bad = SpecError(source, "--executor", f"expected dask://HOST:PORT (a port from 1 to "
                    f"65535), got {str(text)[:200]!r}")
    if not isinstance(text, str) or not text.startswith("dask://"):
        raise bad
    m = _DASK_ADDRESS.fullmatch(text[len("dask://"):])
    if m is None or not 1 <= int(m["port"]) <= 65535:
        raise bad
    return m["ip6"] or m["host"], int(m["port"])


def _recv_exactly(sock: socket.socket, n: int, deadline: float) -> bytes:
    data = b""
    while len(data) < n:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the connection was closed")
        data += chunk
    return data


def probe_dask_scheduler(host: str, port: int, source: str,
                         timeout_s: float = DASK_CONNECT_TIMEOUT_S) -> None:
    """Check, within ``timeout_s``, that a Dask scheduler listens at host:port: it
    greets every connection with a short handshake message. (The Dask client waits for
    that greeting without a timeout, and reads its first 8 bytes as a length to
    allocate: a silent server would hang it, an HTTP server make it allocate
    exabytes.)"""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    deadline = time.monotonic() + timeout_s
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            (size,) = struct.unpack("Q", _recv_exactly(sock, 8, deadline))
            if not 0 < size <= DASK_MAX_HANDSHAKE_BYTES or \
                    b"compression" not in _recv_exactly(sock, size, deadline):
                raise SpecError(source, "--executor", f"something at {where} answers, but "
                                "not as a Dask scheduler")
    except (socket.timeout, TimeoutError):
        raise SpecError(source, "--executor", f"nothing at {where} answered as a Dask "
                        f"scheduler within {timeout_s:g} s") from None
    except OSError as exc:
        raise SpecError(source, "--executor", f"cannot connect to a Dask scheduler at "
                        f"{where}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def _quiet_dask_logs() -> Iterator[None]:
    import logging
    loggers = [logging.getLogger(n) for n in ("distributed", "tornado", "asyncio")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def dask_client(address: str, source: str = "<command line>",
                timeout_s: float = DASK_CONNECT_TIMEOUT_S) -> Any:
    """A client of the Dask scheduler at ``dask://HOST:PORT`` with at least one worker,
    or a one-line error within about 3 x ``timeout_s``."""
    host, port = parse_dask_address(address, source)
    try:
        from distributed import Client
    except ImportError:
        raise SpecError(source, "--executor", "a Dask executor needs the "
                        "distributed extra: pip install 'wsesim[distributed]'") from None
    probe_dask_scheduler(host, port, source, timeout_s)
    target = f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"
    with _quiet_dask_logs():
        try:
            client = Client(target, timeout=timeout_s)
        except Exception as exc:  # noqa: BLE001 - any failure to connect is one line
            raise SpecError(source, "--executor", f"cannot connect to the Dask scheduler "
                            f"at {target}: {error_line(exc)}") from None
        try:
            client.wait_for_workers(1, timeout=timeout_s)
        except Exception:  # noqa: BLE001
            client.close()
            raise SpecError(source, "--executor", f"the Dask scheduler at {target} has no "
                            f"workers (waited {timeout_s:g} s)") from None
    return client


def check_executor(executor: Any, source: str) -> None:
    """``executor`` is None, ``dask://HOST:PORT`` or an object with ``submit``, else a
    one-line error (before anything is written)."""
    if isinstance(executor, str):
        parse_dask_address(executor, source)
    elif executor is not None and not callable(getattr(executor, "submit", None)):
        raise SpecError(source, "--executor", "expected dask://HOST:PORT, a "
                        "distributed.Client or a concurrent.futures executor, got "
                        f"{type(executor).__name__}")


def _is_dask_client(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "distributed" and hasattr(obj, "submit")


# ---------------------------------------------------------------------- backends
class _Done:
    """A task already run in this process (see _SerialBackend)."""

    __slots__ = ("value", "error")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.value, self.error = None, None
        try:
            self.value = fn(*args)
        except Exception as exc:  # noqa: BLE001
            self.error = exc


class _SerialBackend:
    """Runs each task when it is submitted, in this process."""

    capacity = 1

    def submit(self, fn: Callable[..., Any], *args: Any) -> _Done:
        return _Done(fn, args)

    def wait_any(self, futures: list[Any]) -> list[Any]:
        return futures

    @staticmethod
    def outcome(fut: _Done) -> Any:
        if fut.error is not None:
            raise fut.error
        return fut.value

    def cancel(self, futures: list[Any]) -> None:
        pass

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


class _PoolBackend:
    """A ``concurrent.futures`` executor (its own process pool, or the caller's)."""

    def __init__(self, pool: Executor, capacity: int, own: bool) -> None:
        self.pool, self.capacity, self.own = pool, capacity, own

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.pool.submit(fn, *args)

    def wait_any(self, futures: list[Any]) -> list[Any]:
        return list(wait_futures(futures, return_when=FIRST_COMPLETED).done)

    @staticmethod
    def outcome(fut: Any) -> Any:
        return fut.result()

    def cancel(self, futures: list[Any]) -> None:
        for f in futures:
            f.cancel()

    def abort(self) -> None:
        """Stop at once: kill this backend's own worker processes."""
        if not self.own:
            return
        procs = list((getattr(self.pool, "_processes", None) or {}).values())
        for p in procs:
            with contextlib.suppress(Exception):
                p.kill()
        self.pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            with contextlib.suppress(Exception):
                p.join(timeout=5)

    def close(self) -> None:
        if self.own:
            self.pool.shutdown(wait=True, cancel_futures=True)


class _DaskBackend(_PoolBackend):
    def __init__(self, client: Any, own: bool) -> None:
        from distributed import as_completed
        self.client, self.own = client, own
        self.capacity = max(1, sum(client.nthreads().values()))
        self._done = as_completed()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        fut = self.client.submit(fn, *args, pure=False)
        self._done.add(fut)
        return fut

    def wait_any(self, futures: list[Any]) -> list[Any]:
        return [next(self._done), *self._done.next_batch(block=False)]

    def abort(self) -> None:
        self.close()   # the futures are cancelled; the cluster's workers are not ours

    def close(self) -> None:
        if self.own:
            with _quiet_dask_logs():
                self.client.close()


def open_backend(executor: Any, workers: int, tasks: int,
                 source: str = "<command line>") -> Any:
    """The backend for ``executor`` (None: this process when ``workers`` is 1 or there
    is at most one task, else a pool of ``workers`` processes; ``"dask://HOST:PORT"``;
    a ``distributed.Client``; any ``concurrent.futures.Executor``). A Dask address is
    connected to here, before anything is written."""
    if isinstance(executor, str):
        return _DaskBackend(dask_client(executor, source), own=True)
    if executor is not None and _is_dask_client(executor):
        return _DaskBackend(executor, own=False)
    if executor is not None:
        check_executor(executor, source)
        n = getattr(executor, "_max_workers", None)
        return _PoolBackend(executor, n if isinstance(n, int) else workers, own=False)
    if workers <= 1 or tasks <= 1:
        return _SerialBackend()
    n = min(workers, tasks)
    return _PoolBackend(_process_pool(n), n, own=True)


# ------------------------------------------------------------------------ running
def _min_wafers_group(spec: SweepSpec, params: Mapping[str, Any]
                      ) -> tuple[str, dict[str, Any]] | None:
    """The key of the points sharing this point's fewest wafers (its parameters other
    than ``wafers`` and ``name``) and those parameters, or None when the point asks for
    ``wafers: auto`` (its simulation finds them anyway)."""
    if params.get("wafers", spec.base.get("wafers", "auto")) == "auto":
        return None
    rest = {k: v for k, v in params.items() if k not in ("wafers", "name")}
    return point_key(rest), rest


def _with_min_wafers(row: dict[str, Any], value: int | None, error: str) -> dict[str, Any]:
    row["min_wafers"] = value
    if error and not row.get("error"):
        row["error"] = f"min_wafers: {error}"
    return row


def execute(spec: SweepSpec, todo: Iterable[tuple[int, Mapping[str, Any]]],
            backend: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, row) of each point of ``todo`` (index, parameters) as it completes, at
    most IN_FLIGHT_PER_WORKER tasks per worker in flight (the stream is read as they
    finish).

    The fewest wafers do not depend on ``wafers``: when the sweep varies only
    ``wafers`` along an axis, the points that differ only in it share one search (a
    task of its own, submitted just before the first of them), and each point
    simulates just its own wafer count."""
    shared = spec.wafers_group_size() > 1
    limit = max(2, IN_FLIGHT_PER_WORKER * backend.capacity)
    args = (spec.base_source, spec.base_dir)
    futures: dict[Any, tuple[str, Any]] = {}
    searching: set[str] = set()
    found: dict[str, tuple[int | None, str]] = {}   # group -> (min wafers, error)
    waiting: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    stream = iter(todo)
    more = True
    try:
        while True:
            while more and len(futures) < limit:
                item = next(stream, None)
                if item is None:
                    more = False
                    break
                index, params = item
                group = _min_wafers_group(spec, params) if shared else None
                g = group[0] if group else None
                if group and g not in found and g not in searching:
                    searching.add(g)
                    futures[backend.submit(min_wafers_task, spec.base, group[1],
                                           *args)] = ("group", g)
                futures[backend.submit(run_point, spec.base, dict(params), *args,
                                       g is None, spec.performance)] = ("point", (index, g))
            if not futures:
                return
            for fut in backend.wait_any(list(futures)):
                kind, ref = futures.pop(fut)
                try:  # the tasks catch every error of a point: this is the workers failing
                    value = backend.outcome(fut)
                except Exception as exc:  # noqa: BLE001
                    raise SweepInterrupted(
                        f"the sweep's workers failed ({error_line(exc)}); the points done "
                        "so far are saved, run the sweep again to resume") from exc
                if kind == "group":
                    searching.discard(ref)
                    found[ref] = value
                    for index, row in waiting.pop(ref, []):
                        yield index, _with_min_wafers(row, *value)
                    continue
                index, g = ref
                if g is None or value.get("error"):
                    yield index, value
                elif g in found:
                    yield index, _with_min_wafers(value, *found[g])
                else:
                    waiting.setdefault(g, []).append((index, value))
    finally:
        backend.cancel(list(futures))
