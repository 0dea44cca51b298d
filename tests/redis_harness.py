"""A throw-away Redis on 127.0.0.1 (no persistence) and Celery workers as real processes, for tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot_harness import config_values, time_budget, write_config

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def redis_server():
    """Start redis-server on a free loopback port; yield its URL; stop it. The port is free when chosen,
    not reserved: tests run in parallel (pytest -n), so the server that answers must be ours (its
    process id), else another port is tried."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (CI installs Debian's redis-server)")
    for _ in range(5):
        port = free_port()
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            if _answers_as(proc, port):
                yield f"redis://127.0.0.1:{port}/0"
                return
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    raise RuntimeError("redis-server did not start on any of 5 free ports")


def _answers_as(proc: subprocess.Popen, port: int) -> bool:
    """Whether the redis-server on ``port`` is ``proc`` (False: it exited, e.g. the port was taken)."""
    deadline = time.monotonic() + 10
    while proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"INFO server\r\n")
                reply = b""
                while b"process_id:" not in reply or not reply.endswith(b"\r\n\r\n"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    reply += chunk
                if f"process_id:{proc.pid}\r\n".encode() in reply:
                    return True
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("redis-server did not start")
        time.sleep(0.05)
    return False


def celery_config(tmp_path: Path, weights_file: Path, redis_url: str, *, steps: int = 200, **caps) -> Path:
    """A bot config for Celery tests whose jobs run at most ``steps`` steps at 64 px: the job timeout
    is sized from the measured step time (never this machine's speed), and re-delivery is as fast as
    that allows (visibility just above the timeout, a sweep every second). An explicit job_timeout wins."""
    timeout = caps.pop("job_timeout", None) or time_budget(steps, weights_file)
    values = config_values(
        tmp_path, weights_file,
        bot={"status_interval": 0.3},
        caps={"job_timeout": timeout, "max_jobs_per_user": 3, **caps},
        executor={"kind": "celery", "redis_url": redis_url, "visibility_timeout": int(timeout) + 2, "restore_interval": 1},
    )
    return write_config(tmp_path / "celery.toml", values)


class Worker:
    """`nst-worker` in its own process group, so a test can kill the whole worker at once."""

    def __init__(self, config: Path, name: str, log_path: Path):
        self.name = name
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot.executor.celery_worker", "--config", str(config), "--device", "cpu", "--name", name],
            cwd=ROOT, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            if "model loaded" in text and " ready." in text:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited:\n{text[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"worker {self.name} not ready:\n{self.log_path.read_text(errors='replace')[-3000:]}")

    def pool_process(self) -> int:
        """The pid of the pool process that runs jobs: the worker's forked child (same command line;
        other children, like multiprocessing's resource tracker, have their own)."""
        own = Path(f"/proc/{self.proc.pid}/cmdline").read_bytes()
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        forked = [int(pid) for pid in children if Path(f"/proc/{pid}/cmdline").read_bytes() == own]
        assert len(forked) == 1, f"expected one pool process, found {forked}"
        return forked[0]

    def kill(self) -> None:
        """SIGKILL the whole worker: main process and pool."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # Celery's warm shutdown
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # a pool process left behind
