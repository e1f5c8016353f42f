"""glibc malloc settings applied at start-up (shared/malloc_tuning.py)."""
import os
import subprocess
import sys

PROBE = "from shared import malloc_tuning as m; print(m.tune())"


def run(env_extra: dict) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env_extra
    return subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True).stdout


def test_glibc_takes_the_settings():
    assert run({}).strip() == "True"


def test_an_operators_own_setting_is_left_alone(monkeypatch):
    from shared import malloc_tuning

    seen = []

    class FakeLibc:
        def __init__(self, *_):
            self.mallopt = lambda param, value: seen.append(param) or 1

    monkeypatch.setattr(malloc_tuning.ctypes, "CDLL", FakeLibc)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    assert malloc_tuning.tune()
    assert malloc_tuning.M_ARENA_MAX not in seen and malloc_tuning.M_MMAP_THRESHOLD in seen
