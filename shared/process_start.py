"""What every Postline process does before its event loop starts, in this order.

Both entry points call it: ``postline ROLE`` (services/cli.py) and each child of the
supervised `postline all` (services/supervisor.py). The children once skipped it, so their
relay processes ran with glibc's default malloc behaviour and grew to ~500 MB each under
1 MB sends (``make bench --only memory``)."""
from __future__ import annotations

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
