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

log = logging.getLogger("zonecat.worker")

RESTART_DELAY_SECONDS = 1.0


class WorkerProcess:
    """The parent's handle on its worker process: start, wake, stop; restarts a worker process that died."""

    def __init__(self, concurrency: int = 1) -> None:
        self.concurrency = concurrency
        self._process: subprocess.Popen[bytes] | None = None
        self._wake_write: int | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._supervisor: threading.Thread | None = None
        self._ready_read: int | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start the worker process and the thread that restarts it if it exits on its own."""
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
        process = subprocess.Popen(command, pass_fds=(read_end, ready_write))
        os.close(read_end)
        os.close(ready_write)
        with self._lock:
            old, old_ready = self._wake_write, self._ready_read
            self._process, self._wake_write, self._ready_read = process, write_end, ready_read
        for fd in (old, old_ready):
            if fd is not None:
                os.close(fd)
        log.info("worker process started", extra={"pid": process.pid})

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            process = self._process
            if process is None:
                return
            code = process.wait()
            if self._stopping.is_set():
                return
            log.error("worker process exited; restarting it", extra={"pid": process.pid, "exit_code": code})
            if self._stopping.wait(RESTART_DELAY_SECONDS):
                return
            self._spawn()

    def wake(self) -> None:
        """Tell the worker process a task was just enqueued (never blocks)."""
        with self._lock:
            fd = self._wake_write
        if fd is None:
            return
        with contextlib.suppress(BlockingIOError, BrokenPipeError, OSError):
            os.write(fd, b"\x01")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM: the worker finishes its current entity step, hands its task back and exits."""
        self._stopping.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("worker process did not stop in time; killing it", extra={"pid": process.pid})
                process.kill()
                process.wait()
        if self._supervisor is not None:
            self._supervisor.join(timeout=5)
        with self._lock:
            fds, self._wake_write, self._ready_read = (self._wake_write, self._ready_read), None, None
        for fd in fds:
            if fd is not None:
                os.close(fd)


# -- the child's side ---------------------------------------------------------------------------------------


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies; exit now if the parent is already gone."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)  # the parent died before the request above took effect


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
