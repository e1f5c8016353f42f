"""What every Postline process does before its event loop starts, in this order.

Both entry points call it: ``postline ROLE`` (services/cli.py) and each child of the
supervised `postline all` (services/supervisor.py). The children once skipped it, so their
relay processes ran with glibc's default malloc behaviour and grew to ~500 MB each under
1 MB sends (``make bench --only memory``)."""
from __future__ import annotations

import gc

from shared import backoff_log, malloc_tuning
from shared.logging import setup_logging
from shared.settings import Settings, load_settings


def start_process(settings: Settings | None = None) -> Settings:
    """malloc settings (before any thread allocates), JSON logs, the dependency log interval
    and uvloop when installed; returns the settings it used (loaded when not given)."""
    malloc_tuning.tune()
    settings = settings or load_settings()
    setup_logging(settings.log_level)
    backoff_log.configure(settings.dependency_log_interval)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return settings


def started() -> None:
    """Call once the process has built what it keeps for life (modules, the app, schemas,
    the control state read at start): ``gc.freeze()`` moves those objects out of the
    collector's generations, so a full collection no longer walks them. Measured under
    `make bench --only intake`: full collections of 40–330 ms in the API workers were the
    p99 latency before."""
    gc.freeze()
