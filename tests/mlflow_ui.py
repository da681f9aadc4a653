"""An MLflow tracking server on a store, for what a reviewer sees in the UI (tests and the README's shots).

``mlflow server`` runs in its own process group on a free loopback port with one worker; :func:`serve`
waits for ``/health`` and :func:`stop` ends the whole group (uvicorn and its job consumers).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from t2s.local_llm import free_port


def serve(root: Path, uri: str) -> tuple[subprocess.Popen[bytes], str]:
    """(process, base URL) of ``mlflow server --backend-store-uri uri`` started in ``root``."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"], cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.3)
        if proc.poll() is not None:
            break
    stop(proc)
    raise AssertionError("mlflow server did not answer /health within 90 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # the server's own process group: uvicorn and its workers
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
