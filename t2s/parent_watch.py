"""Run a Python program that stops when the process that started it dies.

``python -m t2s.parent_watch PID -m MODULE ARGS…`` (or ``… PID SCRIPT ARGS…``, ``… PID -c CODE ARGS…``) runs
the program in this same process, as ``python -m MODULE ARGS…`` would, with a watcher thread beside it:
once ``PID`` is no longer this process's parent (it exited, or was killed with SIGKILL and this process
was re-parented), the program gets SIGTERM and, if it has not exited two seconds later, is ended.

:class:`t2s.local_llm.LocalServer` starts the llama.cpp servers (1.8 GB each) this way, so a ``t2s eval``
or ``t2s serve`` that dies without running its clean-up leaves none behind. ``prctl(PR_SET_PDEATHSIG)``
would not do: it fires when the *thread* that started the child exits, and the servers are started lazily
from request and worker threads that come and go.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading
import time

POLL_S = 0.25
GRACE_S = 2.0


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(GRACE_S)
    os._exit(1)


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit("usage: python -m t2s.parent_watch PARENT_PID (-m MODULE | -c CODE | SCRIPT) [ARGS...]")
    parent, program = int(argv[0]), argv[1:]
    if os.getppid() != parent:  # the parent died while this process was starting
        sys.exit(1)
    threading.Thread(target=_watch, args=(parent,), name="parent-watch", daemon=True).start()
    if program[0] == "-m":
        sys.argv = [program[1], *program[2:]]
        runpy.run_module(program[1], run_name="__main__", alter_sys=True)
    elif program[0] == "-c":
        sys.argv = ["-c", *program[2:]]
        exec(compile(program[1], "<string>", "exec"), {"__name__": "__main__"})
    else:
        sys.argv = program
        runpy.run_path(program[0], run_name="__main__")


def watched(command: list[str]) -> list[str]:
    """``command`` (a Python command line) run under this watcher, with the calling process as the parent."""
    if not command or command[0] != sys.executable:
        return command
    return [sys.executable, "-m", "t2s.parent_watch", str(os.getpid()), *command[1:]]


if __name__ == "__main__":
    main(sys.argv[1:])
