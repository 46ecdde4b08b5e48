"""`mistersmith serve`: starts on free ports in a temp data dir (outside pytest's basetemp: see
the ``node_dir`` fixture), says where it listens, refuses a
second node on the same data dir and bad settings (exit 2, one line), and stops cleanly on
SIGTERM/SIGINT or over NATS, leaving no nats-server or postgres behind."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

import pytest
from _cli_helpers import Served, alive, call, children, processes_using, run_cli

from mistersmith.cli import EXIT_OK, EXIT_USAGE


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_signal_stops_the_node_cleanly_without_orphans(
    node_dir: Path, capsys: pytest.CaptureFixture[str], sig: signal.Signals
) -> None:
    data_dir = node_dir / "node"
    served = Served(data_dir).start()
    try:
        ready = served.ready
        info = json.loads((data_dir / "node.json").read_text())
        assert info["pid"] == served.pid == ready["pid"]
        assert info["node_id"] == ready["node_id"] and info["http_url"] == ready["http_url"]
        assert ready["nats_url"].startswith("nats://127.0.0.1:") and ready["http_url"].startswith("http://127.0.0.1:")
        assert "echo" in ready["kinds"] and "process" not in ready["kinds"]  # the generic process kind is off

        kids = children(served.pid)
        commands = {pid: _cmdline(pid) for pid in kids}
        nats_pids = [p for p, c in commands.items() if "nats-server" in c]
        postmaster = int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
        assert len(nats_pids) == 1 and postmaster in kids, commands
        assert call(capsys, "--data-dir", str(data_dir), "spawn", "echo", "--id", "s1").code == EXIT_OK
    except BaseException:
        served.stop(signal.SIGKILL)
        raise

    assert served.stop(sig) == EXIT_OK, served.stderr()
    stopped = json.loads(served.next_line() or "{}")
    assert stopped == {"event": "stopped", "node_id": ready["node_id"], "reason": sig.name}
    leftovers = [p for p in [*kids, postmaster] if alive(p)]
    assert leftovers == [], {p: _cmdline(p) for p in leftovers}
    assert processes_using(data_dir) == []
    assert not (data_dir / "node.json").exists()
    assert "Traceback" not in served.stderr()


def test_a_second_serve_on_the_same_data_dir_is_refused(node_dir: Path) -> None:
    with Served(node_dir / "node") as served:
        again = run_cli("serve", "--data-dir", str(served.data_dir), "--http-port", "0")
        assert again.returncode == EXIT_USAGE
        assert again.stdout == ""
        assert again.stderr.count("\n") == 1 and again.stderr.startswith("mistersmith: ")
        assert f"pid {served.pid}" in again.stderr and "already serving" in again.stderr
        assert served.proc is not None and served.proc.poll() is None  # the first node is untouched


@pytest.mark.parametrize(("toml", "flags", "expected"), [
    ("[http]\nport = 'eighty'\n", (), "http.port='eighty'"),
    ("[http\nport = 1\n", (), "fix the TOML"),
    ("[nodes]\nid = 'x'\n", (), "nodes.id='x'"),
    (None, ("--http-port", "99999"), "http.port='99999' (from the command line)"),
    (None, ("--log-level", "loud"), "logging.level='LOUD'"),
    (None, ("--log-format", "xml"), "logging.format='xml'"),
    (None, ("--config", "/nonexistent/mistersmith.toml"), "name an existing TOML file"),
    (None, ("--kind", "no_such_module:Agent"), "cannot import 'no_such_module'"),
    (None, ("--bogus",), "unrecognized arguments: --bogus"),
], ids=["bad-value-in-file", "bad-toml", "unknown-setting", "bad-port-flag", "bad-log-level", "bad-log-format",
        "missing-file", "bad-kind", "unknown-flag"])
def test_bad_settings_are_one_line_and_exit_code_2(
    tmp_path: Path, toml: str | None, flags: tuple[str, ...], expected: str
) -> None:
    args = ["serve", "--data-dir", str(tmp_path / "node"), *flags]
    if toml is not None:
        (tmp_path / "mistersmith.toml").write_text(toml)
        args += ["--config", str(tmp_path / "mistersmith.toml")]
    done = run_cli(*args)
    assert done.returncode == EXIT_USAGE, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("mistersmith: "), done.stderr
    assert expected in done.stderr
    assert not (tmp_path / "node" / "node.json").exists()


def test_shutdown_over_nats_when_the_node_allows_it(node_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = node_dir / "node"
    with Served(data_dir, "--allow-remote-shutdown") as served:
        asked = call(capsys, "--data-dir", str(data_dir), "shutdown", "--json")
        assert asked.code == EXIT_OK, asked.err
        assert asked.json() == {"node": served.ready["node_id"], "shutting_down": True}
        assert served.wait() == EXIT_OK
        stopped = json.loads(served.next_line() or "{}")
        assert stopped["event"] == "stopped" and "NATS" in stopped["reason"]
    assert processes_using(data_dir) == []


def test_a_taken_http_port_is_one_line_and_leaves_nothing_behind(node_dir: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = run_cli("serve", "--data-dir", str(node_dir / "node"), "--http-port", str(port))
    assert done.returncode == EXIT_USAGE
    assert f"127.0.0.1:{port} is in use" in done.stderr.splitlines()[-1]
    assert "Traceback" not in done.stderr
    assert processes_using(node_dir / "node") == []
    # checked before anything starts: neither embedded server was started, nor its directory made
    assert not (node_dir / "node" / "postgres").exists() and not (node_dir / "node" / "nats").exists()
    assert not (node_dir / "node" / "node.json").exists()


def test_the_embedded_nats_port_is_stable_and_falls_back_when_taken(
    node_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert call(capsys, "config", "--json").json()["settings"]["nats"]["embedded_port"] == 4222  # the default
    data_dir = node_dir / "node"
    with socket.create_server(("127.0.0.1", 0)) as probe:
        preferred = probe.getsockname()[1]
    monkeypatch.setenv("MISTERSMITH_NATS_EMBEDDED_PORT", str(preferred))  # as 4222, but ours alone

    def serve_once() -> tuple[str, str]:
        with Served(data_dir) as served:
            url = served.ready["nats_url"]
            shown = call(capsys, "--data-dir", str(data_dir), "nats-url")
            assert shown.code == EXIT_OK and shown.out == f"{url}\n"
            assert (data_dir / "nats" / "port").read_text().strip() == url.rsplit(":", 1)[1]
        assert served.wait() == EXIT_OK
        return url, served.stderr()

    url, stderr = serve_once()
    assert url == f"nats://127.0.0.1:{preferred}"
    stopped = [line for line in stderr.splitlines() if "mistersmith.node  stopped: " in line]
    assert len(stopped) == 1, stderr
    assert all(step in stopped[0] for step in ("agents", "nats bridge", "embedded PostgreSQL", "embedded nats-server"))

    with socket.create_server(("127.0.0.1", preferred)):  # someone else takes it meanwhile
        fallback, _ = serve_once()
        assert fallback != url
        again, _ = serve_once()
        assert again == fallback  # the port this data directory's server used last


def test_the_banner_ends_with_what_to_try_next() -> None:
    from mistersmith.cli._serve import _ready_text
    from mistersmith.config import load_settings

    where = {"node_id": "node-1", "http_url": "http://127.0.0.1:8080", "nats_url": "nats://127.0.0.1:4222",
             "nats_credentials": "/d/nats/credentials/client.json", "data_dir": "/srv/my node"}
    default_dir = _ready_text(where, load_settings({}, {}, None), ["echo"]).splitlines()
    tail = default_dir[default_dir.index("Stop with Ctrl-C (or SIGTERM).") + 1:]
    assert tail[1:5] == ["Try, from another terminal in this directory:", "  mistersmith spawn echo --id a1",
                         "  mistersmith send a1 echo '{\"hi\": 1}'", "  mistersmith tree"]
    assert "README.md" in tail[-1] and "A 30-second tour" in tail[-1]
    elsewhere = _ready_text(where, load_settings({"node.data_dir": "/srv/my node"}, {}, None), ["echo"])
    assert "  mistersmith spawn echo --id a1 --data-dir '/srv/my node'" in elsewhere.splitlines()
