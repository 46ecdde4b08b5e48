"""What both embedded servers need to run a child server process safely."""

from __future__ import annotations

import ctypes
import logging
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from mistersmith.errors import MisterSmithError

__all__ = ["EmbeddedServerError", "free_port", "launch_watched", "parent_death_signal", "stop_process"]

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


def parent_death_signal(sig: signal.Signals) -> Callable[[], None] | None:
    """A ``preexec_fn`` making the child get ``sig`` when its parent thread dies (Linux), or None."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sig)

    return preexec


def launch_watched(
    command: list[str],
    *,
    log_path: Path,
    cwd: Path,
    death_signal: signal.Signals,
    thread_name: str,
    on_exit: Callable[[subprocess.Popen[bytes], int], None],
    user: str | None = None,
) -> tuple[subprocess.Popen[bytes], threading.Thread]:
    """Start a server process from a thread of its own, which then waits for it and calls ``on_exit``.

    The parent-death signal (``death_signal``) fires when the *thread* that
    forked the child ends, so that thread lives exactly as long as the child:
    the server dies with us, even after ``kill -9``, and never before. Output
    goes to ``log_path``. Raises what starting the process raised.
    """
    spawned = threading.Event()
    outcome: list[subprocess.Popen[bytes] | BaseException] = []
    log = open(log_path, "ab")  # noqa: SIM115 - the watcher closes it

    def watch() -> None:
        try:
            proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, user=user,
                start_new_session=True, preexec_fn=parent_death_signal(death_signal), cwd=cwd,
            )
        except BaseException as exc:
            outcome.append(exc)
            log.close()
            spawned.set()
            return
        outcome.append(proc)
        spawned.set()
        code = proc.wait()
        log.close()
        on_exit(proc, code)

    watcher = threading.Thread(target=watch, name=thread_name, daemon=True)
    watcher.start()
    spawned.wait()
    started = outcome[0]
    if isinstance(started, BaseException):
        watcher.join()
        raise started
    return started, watcher


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
