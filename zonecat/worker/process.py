"""The worker process of `zonecat serve`: tasks run outside the API process.

Why a process and not threads: the API and the worker would share one GIL, and cel-expr-python holds it for the
whole evaluation of a binding. A slow (or hostile) binding, or a 10,000-entity install, then delayed every request
of the API, health checks included, by up to seconds. In a process of its own the worker has its own GIL (and its
own core), and the API answers within milliseconds whatever the tasks do.

The two processes share the database (SQLite writers queue on an flock, see ``zonecat.store.database``) and one
pipe: the API writes a byte into it whenever it enqueues a task, which wakes the worker at once. The worker
process lives and dies with its parent: it is killed when the parent dies (Linux ``PR_SET_PDEATHSIG``; elsewhere
it notices the pipe closing), just as in-process worker threads would be. A worker process that exits on its own
is restarted by the parent.

On Linux the first worker process is forked (``WorkerProcess.fork``) at the start of ``serve``, once the worker's
modules are imported and before anything else: no thread, no database connection and no socket exists yet. It
then shares those modules' memory with the API process (copy-on-write; the collector's objects frozen first so
that neither process's collections write to them) instead of importing its own copy, and it starts without
importing anything. It waits for ``start()``: the parent migrates the database first. A restart after a crash
spawns a fresh ``zonecat worker`` instead, since by then the parent runs threads, and forking a process with
threads can copy a lock some other thread holds.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, Protocol

log = logging.getLogger("zonecat.worker")

RESTART_DELAY_SECONDS = 1.0
PROCESS_NAME = b"zonecat-worker"  # /proc/<pid>/comm of a forked worker process


# Signals that stop a process on purpose: a service manager stopping the whole process group, an operator.
_STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


def exit_report(code: int | None) -> tuple[int, str]:
    """How serve logs an exit of its worker process that it did not ask for (it restarts the process either way).

    An exit without error, or a stop signal serve did not send, means something stopped the worker on purpose (e.g.
    systemd's ``KillMode=control-group`` signals every process of the service, serve learning of it a moment
    later): a warning. A crash (an exit code, a fatal signal, ``SIGKILL`` from the OOM killer) is an error."""
    if code is None:
        return logging.ERROR, "worker process ended; restarting it"
    if code == 0:
        return logging.WARNING, "worker process exited without error, unasked; restarting it"
    if code < 0:
        try:
            sent = signal.Signals(-code)
        except ValueError:
            return logging.ERROR, f"worker process killed by signal {-code}; restarting it"
        if sent in _STOP_SIGNALS:
            return logging.WARNING, f"worker process stopped by {sent.name}, not sent by serve; restarting it"
        return logging.ERROR, f"worker process killed by {sent.name}; restarting it"
    return logging.ERROR, f"worker process exited with code {code}; restarting it"


class Child(Protocol):
    """What the parent needs of a worker process: ``subprocess.Popen`` for a spawned one, ``Forked`` otherwise."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


class Forked:
    """A forked child, waited for as ``subprocess.Popen`` waits (any thread may ``poll`` or ``wait``, with a
    timeout): through a pidfd, readable once the child has exited, and a reap (``waitpid``) under a lock. Signals go
    through the pidfd too, so that none can reach another process that reuses the pid once the child is reaped."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._lock = threading.Lock()
        self._pidfd = os.pidfd_open(pid)

    def poll(self) -> int | None:
        with self._lock:
            if self.returncode is None:
                try:
                    pid, status = os.waitpid(self.pid, os.WNOHANG)
                except ChildProcessError:  # reaped by someone else: its code is lost (Popen says 0 too)
                    pid, status = self.pid, 0
                if pid == self.pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(f"worker process {self.pid}", timeout or 0.0)
            with self._lock:
                pidfd = self._pidfd
            if pidfd < 0:  # closed: wait as Popen does, by polling
                time.sleep(min(0.05, left) if left is not None else 0.05)
            else:
                select.select([pidfd], [], [], left)
        return code

    def send_signal(self, sig: int) -> None:
        with self._lock:
            if self.returncode is None and self._pidfd >= 0:
                with contextlib.suppress(ProcessLookupError):  # exited, not reaped yet: as Popen
                    signal.pidfd_send_signal(self._pidfd, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def close(self) -> None:
        """Close the pidfd, once (a second call does nothing)."""
        with self._lock:
            pidfd, self._pidfd = self._pidfd, -1
        if pidfd >= 0:
            os.close(pidfd)


def can_fork() -> bool:
    """True where the first worker process can be forked: Linux with pidfds (5.3+), and only this thread running."""
    if not sys.platform.startswith("linux") or threading.active_count() != 1 or not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


class WorkerProcess:
    """The parent's handle on its worker process: start, wake, stop; restarts a worker process that died."""

    def __init__(self, concurrency: int = 1) -> None:
        self.concurrency = concurrency
        self._process: Child | None = None
        self._go_write: int | None = None  # the forked worker process waits for a byte on this pipe
        self._wake_write: int | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._supervisor: threading.Thread | None = None
        self._ready_read: int | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def fork(self, main: Callable[[int, int], None]) -> None:
        """Fork the first worker process now; it calls ``main(wake_fd, ready_fd)`` once ``start()`` is called, and
        exits as ``exit_after`` says. Call only while this is the process's one thread (``can_fork``)."""
        wake_read, wake_write = os.pipe()
        ready_read, ready_write = os.pipe()
        go_read, go_write = os.pipe()
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError as exc:  # out of processes or memory: start() spawns one later instead
            for fd in (wake_read, wake_write, ready_read, ready_write, go_read, go_write):
                os.close(fd)
            log.warning("could not fork the worker process; it will be spawned", extra={"error": str(exc)})
            return
        if pid == 0:
            # A process group of its own, as a spawned one has (see _spawn).
            with contextlib.suppress(OSError):
                os.setpgid(0, 0)
            for fd in (wake_write, ready_read, go_write):
                os.close(fd)
            _run_forked(main, go_read, wake_read, ready_write, parent)
        for fd in (wake_read, ready_write, go_read):
            os.close(fd)
        try:
            child = Forked(pid)
        except OSError as exc:  # no pidfd after all: end the child (closing go_write) and spawn one later
            for fd in (wake_write, ready_read, go_write):
                os.close(fd)
            os.waitpid(pid, 0)
            log.warning("could not watch the forked worker process; it will be spawned", extra={"error": str(exc)})
            return
        os.set_blocking(wake_write, False)
        with self._lock:
            self._process, self._wake_write, self._ready_read = child, wake_write, ready_read
        self._go_write = go_write
        log.info("worker process forked", extra={"pid": pid})

    def start(self) -> None:
        """Let the forked worker process run (or spawn one), and start the thread that restarts it if it exits on
        its own."""
        if self._go_write is not None:
            with contextlib.suppress(OSError):
                os.write(self._go_write, b"\x01")
            os.close(self._go_write)
            self._go_write = None
        else:
            self._spawn()
        # The supervisor also owns every respawn: PR_SET_PDEATHSIG fires when the *thread* that forked the child
        # ends, so children are only forked by threads that outlive them (the main thread or this one).
        self._supervisor = threading.Thread(target=self._supervise, name="worker-supervisor", daemon=True)
        self._supervisor.start()

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the first worker process runs tasks (or exited, or ``timeout``); True when it is ready."""
        fd = self._ready_read
        if fd is None:
            return False
        ready, _, _ = select.select([fd], [], [], timeout)
        answered = bool(ready) and os.read(fd, 1) == b"\x01"
        if not answered:
            log.warning("worker process not ready; serving anyway", extra={"timeout_seconds": timeout})
        return answered

    def _spawn(self) -> None:
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)  # a full pipe already means "wake up": never block a request on it
        ready_read, ready_write = os.pipe()
        command = [
            sys.executable,
            "-m",
            "zonecat",
            "worker",
            "--concurrency",
            str(self.concurrency),
            "--wake-fd",
            str(read_end),
            "--parent-pid",
            str(os.getpid()),
            "--ready-fd",
            str(ready_write),
        ]
        try:
            # A process group of its own: Ctrl-C in a terminal reaches serve alone, which then stops this process
            # itself, instead of both stopping at once (and serve restarting a worker it is about to stop).
            process = subprocess.Popen(command, pass_fds=(read_end, ready_write), process_group=0)
        except BaseException:
            for end in (read_end, write_end, ready_read, ready_write):
                os.close(end)
            raise
        os.close(read_end)
        os.close(ready_write)
        with self._lock:
            old, old_ready, old_process = self._wake_write, self._ready_read, self._process
            self._process, self._wake_write, self._ready_read = process, write_end, ready_read
        for fd in (old, old_ready):
            if fd is not None:
                os.close(fd)
        if isinstance(old_process, Forked):
            old_process.close()  # reaped by the supervisor, which spawns this one
        log.info("worker process started", extra={"pid": process.pid})

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            process = self._process
            if process is None:
                return
            code = process.wait()
            if self._stopping.is_set():
                return
            level, message = exit_report(code)
            log.log(level, message, extra={"pid": process.pid, "exit_code": code})
            if self._stopping.wait(RESTART_DELAY_SECONDS):
                return
            try:
                self._spawn()
            except OSError:  # out of processes, memory or fds for now: try again after the delay
                log.exception("could not restart the worker process")

    def wake(self) -> None:
        """Tell the worker process a task was just enqueued (never blocks)."""
        # Written under the lock that a restart or stop() holds to close the fd: never into a reused fd number.
        with self._lock, contextlib.suppress(BlockingIOError, BrokenPipeError, OSError):
            if self._wake_write is not None:
                os.write(self._wake_write, b"\x01")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM: the worker finishes its current entity step, hands its task back and exits."""
        self._stopping.set()
        if self._go_write is not None:  # forked and never started: the closed pipe ends it
            os.close(self._go_write)
            self._go_write = None
        process = self._process
        if process is not None:
            _terminate(process, timeout)
        if self._supervisor is not None:
            self._supervisor.join(timeout=timeout)  # it may be starting a replacement, stopped below
        with self._lock:
            latest = self._process
        if latest is not process and latest is not None:
            # The supervisor was restarting a crashed worker process while this stop began: stop that one too.
            _terminate(latest, timeout)
        for item in (process, latest):
            if isinstance(item, Forked):
                item.close()
        with self._lock:
            fds, self._wake_write, self._ready_read = (self._wake_write, self._ready_read), None, None
        for fd in fds:
            if fd is not None:
                os.close(fd)


def _terminate(child: Child, timeout: float) -> None:
    """SIGTERM a running worker process and wait for it; SIGKILL it after ``timeout``."""
    if child.poll() is not None:
        return
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log.warning("worker process did not stop in time; killing it", extra={"pid": child.pid})
        child.kill()
        child.wait()


# -- the child's side ---------------------------------------------------------------------------------------


def _run_forked(main: Callable[[int, int], None], go_fd: int, wake_fd: int, ready_fd: int, parent: int) -> None:
    """The forked worker process's whole life: it waits for ``start()``, then runs ``main``."""

    def life() -> None:
        die_with_parent(parent)
        _name_process(PROCESS_NAME, (f"zonecat worker --parent-pid {parent}".encode(), b"zonecat worker"))
        go = os.read(go_fd, 1)
        os.close(go_fd)
        if go == b"\x01":  # else the parent ended (or failed to boot) before starting this worker
            main(wake_fd, ready_fd)

    exit_after(life, "worker process failed")


def exit_after(body: Callable[[], None], failure: str) -> NoReturn:
    """Run ``body`` in a forked child, then end the child with ``os._exit``, never returning into the parent's code:
    0 when ``body`` returns, SystemExit's code, 130 for Ctrl-C (which reaches a whole process group), else 1 with
    ``failure`` logged with the exception."""
    code = 1
    try:
        body()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        code = 130
    except BaseException:
        log.exception(failure)
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _name_process(name: bytes, titles: tuple[bytes, ...]) -> None:
    """Name this forked process apart from the API process whose command line it inherited: ``name`` in
    /proc/<pid>/comm (``top``, ``ps -o comm``) and the first of ``titles`` that fits (else the last, cut) in
    /proc/<pid>/cmdline (``ps``, ``pgrep -f``), so
    that ``pkill -f "zonecat serve"`` signals serve alone, as it did when the worker process was a ``zonecat
    worker`` of its own (serve then stops its worker process itself)."""
    _prctl(PR_SET_NAME, ctypes.c_char_p(name[:15]))
    with contextlib.suppress(OSError, ValueError, IndexError):
        # The command line the kernel shows is the original argv area of this process (Python keeps copies of its
        # own): overwrite it in place, padded with NULs, as setproctitle does. Fields 48 and 49 of
        # /proc/self/stat are where it starts and ends.
        fields = Path("/proc/self/stat").read_bytes().rsplit(b")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])
        size = end - start
        if start and size > 1:
            title = fitting_title(titles, size)
            ctypes.memmove(start, title + b"\0" * (size - len(title)), size)


def fitting_title(titles: tuple[bytes, ...], size: int) -> bytes:
    """The first of ``titles`` that fits an argv area of ``size`` bytes with its final NUL, else the last, cut."""
    return next((title for title in titles if len(title) < size), titles[-1][: size - 1])


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies; exit now if the parent is already gone."""
    if sys.platform.startswith("linux"):
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)  # the parent died before the request above took effect


PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15


def _prctl(option: int, value: object) -> None:
    """Linux ``prctl(option, value)`` through libc; nothing where there is none."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def report_ready(ready_fd: int) -> None:
    """Tell the parent that tasks can run now."""
    with contextlib.suppress(OSError):
        os.write(ready_fd, b"\x01")
        os.close(ready_fd)


def listen_to_parent(wake_fd: int, wake: Callable[[], None]) -> threading.Thread:
    """A thread that calls ``wake`` for every byte the parent writes, and ends this process like a crash (as the
    death signal would) when the parent's end closes without a SIGTERM first."""

    def run() -> None:
        while True:
            try:
                data = os.read(wake_fd, 4096)
            except InterruptedError:
                continue
            except OSError:
                data = b""
            if not data:
                # Give a SIGTERM sent together with the close a moment to be handled first.
                time.sleep(0.5)
                log.error("parent process gone; worker process exiting")
                os._exit(1)
            wake()

    thread = threading.Thread(target=run, name="parent-pipe", daemon=True)
    thread.start()
    return thread
