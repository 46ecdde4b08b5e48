"""What both embedded servers need to run a child server process safely."""

from __future__ import annotations

import ctypes
import logging
import os
import pwd
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mistersmith.errors import MisterSmithError
from mistersmith.files import open_private

__all__ = ["EmbeddedServerError", "ServerProcess", "free_port", "parent_death_signal", "run_as", "stop_process"]

logger = logging.getLogger("mistersmith.embedded")

_PR_SET_PDEATHSIG = 1


class EmbeddedServerError(MisterSmithError):
    """An embedded server could not be found, set up, started or stopped.

    ``data_dir`` is its data directory; ``detail`` what went wrong (with the
    tail of the server log when there is one).
    """

    code = "embedded_server"
    server = "server"

    def __init__(self, data_dir: Path, detail: str) -> None:
        super().__init__(f"embedded {self.server} in {str(data_dir)!r}: {detail}")
        self.data_dir = data_dir
        self.detail = detail


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def run_as(user: str | None) -> dict[str, Any]:
    """``subprocess`` arguments that run a child as ``user`` with that user's own groups (or as us).

    ``user=`` alone changes only the uid: the child would keep our groups
    (root's, under root).
    """
    if user is None:
        return {}
    account = pwd.getpwnam(user)
    return {"user": account.pw_uid, "group": account.pw_gid,
            "extra_groups": os.getgrouplist(user, account.pw_gid)}


def parent_death_signal(sig: signal.Signals) -> Callable[[], None] | None:
    """A ``preexec_fn`` making the child get ``sig`` when its parent thread dies (Linux), or None."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sig)

    return preexec


class ServerProcess:
    """One embedded server's process: started, watched, waited for and stopped the same way for both.

    The process is started from a thread of its own, which then waits for
    it: the parent-death signal (``death_signal``) fires when the *thread*
    that forked the child ends, so that thread lives exactly as long as the
    child, and the server dies with us, even after ``kill -9``, never before.
    ``stop`` sends ``stop_signals`` in turn. Failures raise ``error`` (the
    server's ``EmbeddedServerError``), with the tail of ``log_path``.
    """

    def __init__(
        self,
        error: type[EmbeddedServerError],
        data_dir: Path,
        log_path: Path,
        *,
        death_signal: signal.Signals,
        stop_signals: Sequence[signal.Signals],
        thread_name: str,
    ) -> None:
        self.error = error
        self.data_dir = data_dir
        self.log_path = log_path
        self.death_signal = death_signal
        self.stop_signals = tuple(stop_signals)
        self.thread_name = thread_name
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None
        self._watcher: threading.Thread | None = None
        self._stopping = False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.running else None

    def launch(self, command: list[str], *, user: str | None = None) -> None:
        """Start ``command`` in ``data_dir`` (as ``user``, see ``run_as``), its output appended to
        ``log_path`` (``0600``)."""
        spawned = threading.Event()
        outcome: list[subprocess.Popen[bytes] | BaseException] = []
        log = open(self.log_path, "ab", opener=open_private)  # noqa: SIM115 - the watcher closes it

        def watch() -> None:
            try:
                proc = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, **run_as(user),
                    start_new_session=True, preexec_fn=parent_death_signal(self.death_signal), cwd=self.data_dir,
                )
            except BaseException as exc:
                outcome.append(exc)
                log.close()
                spawned.set()
                return
            outcome.append(proc)
            spawned.set()
            self.exit_code = proc.wait()
            log.close()
            if not self._stopping:
                logger.error("embedded %s (pid %d) exited with %s", self.error.server, proc.pid, self.exit_code)

        self.exit_code = None
        watcher = threading.Thread(target=watch, name=self.thread_name, daemon=True)
        watcher.start()
        spawned.wait()
        started = outcome[0]
        if isinstance(started, BaseException):
            watcher.join()
            raise self.error(self.data_dir, f"could not run {command[0]}: {started!r}") from started
        self.proc, self._watcher = started, watcher

    def wait_ready(
        self, ready: Callable[[subprocess.Popen[bytes]], bool], timeout_s: float, poll_s: float
    ) -> str | None:
        """Poll ``ready(proc)`` until it holds: None; else what went wrong (the process exited, or
        ``timeout_s`` passed), with the log's tail, for the owner to stop and raise."""
        deadline = time.monotonic() + timeout_s
        proc = self.proc
        assert proc is not None
        while not ready(proc):
            if proc.poll() is not None:
                return f"{self.error.server} exited with {proc.returncode} while starting:\n{self.log_tail()}"
            if time.monotonic() > deadline:
                return f"not ready within start_timeout_s={timeout_s}:\n{self.log_tail()}"
            time.sleep(poll_s)
        return None

    def stop(self, timeout_s: float) -> None:
        """Send ``stop_signals`` in turn, each given ``timeout_s``, until the process has exited."""
        proc, watcher = self.proc, self._watcher
        if proc is None:
            return
        self._stopping = True
        try:
            stop_process(proc, self.stop_signals, timeout_s, self.error.server)
            if watcher is not None:
                watcher.join(timeout_s)
        finally:
            self.proc = None
            self._watcher = None
            self._stopping = False

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""


def stop_process(proc: subprocess.Popen[bytes], signals: Sequence[signal.Signals], timeout_s: float, name: str) -> None:
    """Send ``signals`` in turn, each given ``timeout_s`` to work, until ``proc`` has exited."""
    for sig in signals:
        if proc.poll() is not None:
            return
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            logger.error("embedded %s (pid %d) ignored %s", name, proc.pid, sig.name)
