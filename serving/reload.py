"""``POST /admin/reload`` on every process: the call reaches one worker, the store tells the others.

The receiving process reloads at once (API keys file, experiment file, registry aliases) and advances the
store's ``reload`` counter (:meth:`serving.store.Store.bump`); every process polls that counter every
``T2S_SERVE_RELOAD_POLL_S`` and reloads when it moved. So with several uvicorn workers, or several
replicas on one store, a reload — and with it a revoked API key — takes effect everywhere within seconds.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from anyio import to_thread

log = logging.getLogger("t2s.serving")
COUNTER = "reload"


def reload_process(app_state: Any) -> list[str]:
    """Reload this process: the API keys file, then the experiment and its variants. Returns the errors
    (the process keeps what it had for the parts that failed; a broken keys file refuses API keys)."""
    errors = []
    keys_error = app_state.auth.reload_keys(force=True)
    if keys_error:
        errors.append(f"API keys: {keys_error}")
    errors += app_state.service.load()
    return errors


async def follow(app_state: Any, interval_s: float) -> None:
    """Poll the store's reload counter for as long as the app runs; reload when another process asked."""
    store = app_state.service.store
    while True:
        await asyncio.sleep(interval_s)
        try:
            current = await to_thread.run_sync(store.generation, COUNTER)
            if current != app_state.reload_seen:
                app_state.reload_seen = current
                errors = await to_thread.run_sync(reload_process, app_state)
                log.info("reloaded after POST /admin/reload on another process (generation %d)%s", current,
                         f"; errors: {errors}" if errors else "")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the store is briefly unreachable: try again at the next poll
            log.error("reload poll failed: %s: %s", type(exc).__name__, exc)


async def reload_everywhere(app_state: Any) -> list[str]:
    """What ``POST /admin/reload`` does: advance the counter (so the others follow), then reload here."""
    app_state.reload_seen = await to_thread.run_sync(app_state.service.store.bump, COUNTER)
    return await to_thread.run_sync(reload_process, app_state)
