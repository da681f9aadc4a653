"""Local model servers never outlive the process that started them, however it ends.

A real process tree: a parent Python process starts two local servers through ``client_for`` (lazily, from
the first request, as ``t2s eval`` and ``t2s serve`` do), then is stopped with SIGTERM, SIGINT or SIGKILL.
The servers are the tests' stand-in for ``python -m llama_cpp.server`` (same command shape, run under the
same parent watcher); one slow test does the same with the real llama.cpp server and model.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_local_llm import STANDIN

PARENT = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from t2s import local_llm
    from t2s.local_llm import LocalServer, client_for, model_path
    from t2s.settings import Settings

    tmp, standin = Path(sys.argv[1]), sys.argv[2]
    settings = Settings(models_dir=tmp / "models", cache_dir=tmp / "cache", llm_provider="local",
                        llm_base_url=None, local_llm_port=0, local_llm_servers=2)
    if standin != "real":
        local_llm.MODEL_SIZE = 4
        local_llm.llama_cpp_installed = lambda: True
        LocalServer.command = lambda self: [sys.executable, standin, str(self.port), self.alias]
        model_path(settings).parent.mkdir(parents=True, exist_ok=True)
        model_path(settings).write_bytes(b"GGUF")
    else:
        settings = settings.model_copy(update={"models_dir": Path(sys.argv[3])})
    with client_for(settings, cache=False) as client:
        client.complete([{"role": "user", "content": "q"}])  # starts the servers, as a first request does
        print(json.dumps(client.local_server.pids), flush=True)
        time.sleep(600)
""")


def running(pid: int) -> bool:
    """Alive and not a zombie (a killed orphan may wait for a PID 1 that does not reap)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def start_parent(tmp_path: Path, standin: str, *extra: str) -> tuple[subprocess.Popen[str], list[int]]:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path), standin, *extra], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = parent.stdout.readline()  # type: ignore[union-attr]
    if not line:
        parent.kill()
        raise AssertionError(f"the parent did not start its servers: {parent.stderr.read()[-2000:]}")  # type: ignore[union-attr]
    pids = json.loads(line)
    assert len(pids) == 2 and all(running(p) for p in pids)
    return parent, pids


def gone_within(pids: list[int], seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not any(running(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name)
def test_the_servers_stop_when_their_parent_is_stopped(tmp_path: Path, sig: signal.Signals) -> None:
    (tmp_path / "standin.py").write_text(STANDIN)
    parent, pids = start_parent(tmp_path, str(tmp_path / "standin.py"))
    try:
        parent.send_signal(sig)
        parent.wait(15)
        assert gone_within(pids, 5.0), f"servers {pids} outlived their parent ({sig.name})"
    finally:
        parent.kill()
        for pid in pids:
            if running(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_the_real_llama_cpp_server_stops_when_its_parent_is_killed(tmp_path: Path) -> None:
    from t2s.local_llm import llama_cpp_installed, model_path
    from t2s.settings import Settings

    models = Settings().models_dir
    if not llama_cpp_installed() or not model_path(Settings(models_dir=models)).is_file():
        pytest.skip("llama-cpp-python or the local model is not installed")
    parent, pids = start_parent(tmp_path, "real", str(models))
    try:
        parent.send_signal(signal.SIGTERM)
        parent.wait(15)
        assert gone_within(pids, 5.0)
    finally:
        parent.kill()
        for pid in pids:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
