"""Sweeps under faults, as a user meets them: Ctrl-C (one line, exit 130, the rows
saved, the same command resumes), ``kill -9`` of the sweep (its worker processes end
with it), every point failing (exit 1), and Dask addresses where no scheduler answers
(one line within seconds). Real subprocesses: these are about processes and signals."""
from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import tiny_hardware, tiny_model
from sweep_helpers import alive, children, descendants, rows_in, start_slow, wait_for

from wsesim.cli import main
from wsesim.errors import SpecError

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads /proc for worker processes")


def sweep_file(tmp_path: Path, wafers=(1, 2), bits=(16, 8, 4, 3.5), **base_over) -> Path:
    base = {"name": "toy", "model": tiny_model(), "hardware": tiny_hardware(8, 8),
            "wafers": 1, "quantization": {"weights": "int4-g128"},
            "workload": {"batch_size": 1, "prompt_tokens": 16, "output_tokens": 8},
            "mapping": {"strategy": "pipeline"}}
    base.update(base_over)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "slow", "base": base, "performance": False,
                                    "grid": {"wafers": list(wafers),
                                             "quantization.weights.bits": list(bits)}}))
    return path


@pytest.mark.parametrize("started_by", ["fork", "forkserver"])
def test_kill_9_of_the_sweep_ends_its_workers(tmp_path, started_by):
    """Workers forked by the sweep, or by a fork server (the sweep has another thread):
    either way none outlives a SIGKILL of the sweep by more than a few seconds."""
    proc = start_slow(tmp_path, 60, str(sweep_file(tmp_path)), "--out",
                      str(tmp_path / "out"), "--workers", "2",
                      thread=started_by == "forkserver")
    below: list[int] = []
    try:
        wait_for(lambda: len(rows_in(tmp_path / "out")) == 0 and
                 len(descendants(proc.pid)) >= 2 + (started_by == "forkserver"), 60,
                 "the worker processes")
        time.sleep(0.5)   # the workers have taken their first (slow) points
        below = descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while any(alive(w) for w in below) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [w for w in below if alive(w)], "processes outlived their sweep"
    finally:
        for w in [proc.pid, *below]:
            if alive(w):
                os.kill(w, signal.SIGKILL)
        proc.communicate(timeout=10)


def test_ctrl_c_saves_says_so_in_one_line_and_the_same_command_resumes(tmp_path):
    path, out = sweep_file(tmp_path), tmp_path / "out"
    args = [str(path), "--out", str(out), "--workers", "2"]
    proc = start_slow(tmp_path, 0.4, *args)
    workers: list[int] = []
    try:
        wait_for(lambda: len(rows_in(out)) >= 2, 60, "two rows saved")
        workers = children(proc.pid)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and stderr.count("\n") == 1, stderr
    saved = len(rows_in(out))
    assert 2 <= saved < 8
    assert f"{saved} of 8 points are saved in {out}" in stderr
    assert "run the same command again to resume" in stderr
    deadline = time.monotonic() + 5
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [w for w in workers if alive(w)]
    # the same command again: only the missing points run
    again = subprocess.run([sys.executable, "-m", "wsesim", "sweep", *args],
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert f"8 points; {8 - saved} run" in again.stdout
    assert f"{saved} skipped" in again.stdout
    points = [r["point"] for r in rows_in(out)]
    assert len(points) == len(set(points)) == 8


def test_every_point_failing_exits_1_with_rows_and_summary(tmp_path, capsys):
    path = sweep_file(tmp_path, wafers=(9, 10))   # more wafers than the 4 units
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--workers", "1"]) == 1
    captured = capsys.readouterr()
    assert "8 points; 8 run" in captured.out and "8 failed" in captured.out
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"error: {path}: (top level): every one of the 8 ")
    assert len(rows_in(out)) == 8 and (out / "results.csv").is_file()
    # some failures are results: exit 0
    mixed = sweep_file(tmp_path, wafers=(1, 9))
    assert main(["sweep", str(mixed), "--out", str(tmp_path / "o2"), "--workers", "1"]) == 0
    assert "4 failed" in capsys.readouterr().out


# ------------------------------------------------------------------------------ Dask
class _Silent:
    """A TCP server that accepts connections and never says a word."""
    greeting = b""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.greeting:
                conn.sendall(self.greeting)

    def close(self) -> None:
        for c in self.conns:
            c.close()
        self.sock.close()


class _Talker(_Silent):
    """A TCP server that greets every connection with text (no Dask handshake)."""
    greeting = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"


class _Http:
    def __init__(self) -> None:
        self.server = http.server.HTTPServer(("127.0.0.1", 0),
                                             http.server.BaseHTTPRequestHandler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("kind", ["closed", "silent", "talker"])
def test_dask_address_where_no_scheduler_answers_is_one_line(tmp_path, kind):
    pytest.importorskip("distributed")
    server = {"silent": _Silent, "talker": _Talker}.get(kind)
    srv = server() if server else None
    port = srv.port if srv else _free_port()
    out = tmp_path / "out"
    try:
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "wsesim", "sweep",
                               str(sweep_file(tmp_path)), "--out", str(out), "--executor",
                               f"dask://127.0.0.1:{port}"],
                              capture_output=True, text=True, timeout=60)
        took = time.monotonic() - t0
    finally:
        if srv:
            srv.close()
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "--executor: " in proc.stderr and f"127.0.0.1:{port}" in proc.stderr
    assert took < 20
    assert not out.exists()   # refused before the folder is touched


@pytest.mark.parametrize("server", [_Silent, _Http, _Talker])
def test_the_scheduler_probe_is_bounded(server):
    """What the command does above, with a 1 s timeout: an HTTP server waits for a
    request (silent); a server that talks first is not a scheduler."""
    from wsesim.sweeps.executors import probe_dask_scheduler
    srv = server()
    try:
        t0 = time.monotonic()
        with pytest.raises(SpecError, match="--executor: (nothing at|something at) "
                           f"127.0.0.1:{srv.port}"):
            probe_dask_scheduler("127.0.0.1", srv.port, "s.yaml", timeout_s=1)
        assert time.monotonic() - t0 < 3
    finally:
        srv.close()


@pytest.mark.parametrize("address", ["dask://localhost:notaport", "dask://", "dask://:1",
                                     "dask://host:0", "dask://host:65536",
                                     "tcp://host:1", "dask://a b:1"])
def test_malformed_dask_addresses(tmp_path, capsys, address):
    assert main(["sweep", str(sweep_file(tmp_path)), "--executor", address]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: sweep: arguments: argument --executor: expected "
                          "dask://HOST:PORT")
