"""`postline all` as a small cluster on one machine: one OS process per role over one data dir.

Contract (docs/operations.md, "Embedded on one machine"):
- ``POSTLINE_WORKERS`` API processes (default: the number of cores) share the HTTP and SMTP
  submission ports (SO_REUSEPORT); ``POSTLINE_RELAY_PROCESSES`` relay processes (default:
  the cores, at most the embedded partitions), each delivering a fixed share of the
  partitions with its own delivery ledger (all alike); one background process for analytics,
  webhooks and housekeeping (services/housekeeping.py: releasing scheduled sends, forwarding
  retries, receiving bounces, the embedded log's retention), at nice 10 (owns the webhook outbox, and chDB, which
  it serves to the others as ClickHouse's HTTP interface on a loopback port with a random
  password; with ``POSTLINE_CLICKHOUSE_URL`` set they all use that server instead). Every
  partition of a consumer group therefore has exactly one consumer.
- ``POSTLINE_WORKERS=1`` keeps the single-process mode: every role on one event loop in this
  process (small machines, tests).
- This parent makes the default workspace, waits until the API answers ``/readyz``, prints
  the same banner as the single-process mode, and supervises: a child that exits is started
  again (backoff from 0.5 s doubling to 30 s while it keeps dying young); a child that fails
  before the installation was ever ready stops everything (a bad setting or a taken port is
  reported once, not retried for ever). SIGTERM/SIGINT stop every child with SIGTERM (each
  finishes and commits what it holds), SIGKILL after ``STOP_GRACE`` seconds. Children are in
  their own process group (a terminal's Ctrl-C reaches only this parent, which stops them in
  order) and get SIGTERM from the kernel if this parent dies, so none is orphaned.
"""
from __future__ import annotations

import asyncio
import ctypes
import functools
import logging
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, cast

import httpx

from shared.settings import Settings, load_settings

if TYPE_CHECKING:
    from shared.runtime import Runtime

log = logging.getLogger("postline.supervisor")
STOP_GRACE = 30.0
LOCK_WAIT = STOP_GRACE + 5  # an earlier instance's children drain for at most STOP_GRACE (then SIGKILL)
READY_TIMEOUT = 180.0
MAX_BACKOFF = 30.0
YOUNG = 10.0  # a child that dies younger than this (seconds) backs off longer each time
BACKGROUND_NICE = 10  # the analytics+webhooks+housekeeping process (see plan())
_PR_SET_PDEATHSIG = 1


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_count(settings: Settings) -> int:
    """POSTLINE_WORKERS, else the cores."""
    return settings.workers or cores()


def relay_count(settings: Settings) -> int:
    """POSTLINE_RELAY_PROCESSES, else the cores; never more than the partitions to share."""
    if settings.kafka_bootstrap:
        return 1  # over Kafka scale relays as separate deployments: the group shares partitions
    wanted = settings.relay_processes or cores()
    return max(1, min(wanted, settings.embedded_partitions))


@dataclass
class Child:
    """One supervised process: its role, its command line additions and its environment."""
    name: str
    role: str
    env: dict[str, str]
    args: list[str] = field(default_factory=list)
    pass_fds: tuple[int, ...] = ()
    nice: int = 0
    proc: subprocess.Popen | None = None
    started: float = 0.0
    failures: int = 0
    restart_at: float | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "services.supervisor", self.role, *self.args],
                                     env=self.env, pass_fds=self.pass_fds,
                                     preexec_fn=functools.partial(_child_setup, self.nice))
        self.started = time.monotonic()
        self.restart_at = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def process(self) -> subprocess.Popen:
        """The child's process; only asked of a child that was started."""
        if self.proc is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.proc


def _child_setup(nice: int) -> None:
    """In the child, before exec: own process group; SIGTERM when the parent dies; its nice value."""
    os.setpgid(0, 0)
    if nice:
        os.nice(nice)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: orphans are then stopped by the next start's port clash
        pass


def plan(settings: Settings, base_env: dict[str, str]) -> tuple[list[Child], socket.socket | None]:
    """The children of one installation, the environment each gets, and (embedded chDB) the
    loopback socket the analytics process serves the store on, made here once so a restarted
    analytics process serves on the same port and the others' URL stays right."""
    workers = worker_count(settings)
    env = {**base_env, "PYTHONUNBUFFERED": "1", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir(settings))}
    store_sock, owner_args = None, []
    if not settings.clickhouse_url:
        store_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        store_sock.bind(("127.0.0.1", 0))
        store_sock.listen(128)
        port = store_sock.getsockname()[1]
        # the password travels in the environment (readable by this user only), never in argv
        env["POSTLINE_CLICKHOUSE_URL"] = f"http://postline:{secrets.token_urlsafe(32)}@127.0.0.1:{port}"
        owner_args = ["--store-fd", str(store_sock.fileno())]
    relays = relay_count(settings)
    # Analytics, webhooks and housekeeping share one process (each needs a fraction of a core;
    # a Python process of its own costs ~60 MB) that runs behind the API and the relays when
    # the cores are all busy: its work can wait a moment (it catches up when the burst ends),
    # an answer to a send cannot. Housekeeping runs once per data dir: here, not in a relay.
    children = [Child("analytics", "analytics+webhooks+housekeeping", env, owner_args, nice=BACKGROUND_NICE,
                      pass_fds=(store_sock.fileno(),) if store_sock else ())]
    children += [Child("relay" if n == 0 else f"relay-{n}", "relay", env, ["--share", f"{n}/{relays}"])
                 for n in range(relays)]
    children += [Child(f"api-{n}", "api", env) for n in range(1, workers + 1)]
    return children, store_sock


def metrics_dir(settings: Settings) -> Path:
    """Where the children's Prometheus values meet (services/ops.py reads them all)."""
    return Path(settings.data_dir) / "metrics"


def _fresh_metrics_dir(settings: Settings) -> None:
    """Empty it at start: counters begin at 0 with each start, as in one process."""
    path = metrics_dir(settings)
    path.mkdir(mode=0o700, exist_ok=True)
    for old in path.glob("*.db"):
        old.unlink()


async def _prepare(settings: Settings) -> tuple[str | None, Runtime]:
    """What the single-process mode does before serving: the data dir, the master key, the
    default workspace (its token is printed once). Returns ``(token, runtime)``; the
    runtime is closed again (its dev inbox path is what the banner shows)."""
    from shared.runtime import Runtime

    settings.master_key  # create the data dir's key file once, before several processes want it
    if settings.submission_port and not settings.tls_cert:  # and the local CA (services/api/submission/local_ca.py)
        from services.api.submission import local_ca

        try:
            local_ca.ensure(settings)
        except OSError as exc:
            raise SystemExit(f"postline: SMTP submission certificate: {exc}") from None
    rt = Runtime(settings)
    await rt.start(with_store=False)
    try:
        token = await rt.ensure_default_workspace()
    finally:
        await rt.close()
    return token, rt


def _check_port(host: str, port: int, what: str) -> None:
    """Fail at once, with one clear line, when another program holds a port the API processes
    need — including another `postline all` of this user, whose SO_REUSEPORT listeners would
    otherwise silently share it (so: is anyone answering there already?)."""
    if not port:
        return
    from services.roles import shared_listener

    local = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    try:
        socket.create_connection((local, port), timeout=0.5).close()
        raise SystemExit(f"postline: cannot listen on {host}:{port} ({what}): something is listening there")
    except OSError:
        pass
    try:
        shared_listener(host, port).close()
    except OSError as exc:
        raise SystemExit(f"postline: cannot listen on {host}:{port} ({what}): {exc.strerror}") from None


async def _lock_data_dir(settings: Settings, stop: asyncio.Event, wait: float = LOCK_WAIT) -> int:
    """One `postline all` per data dir (two would run two relays: two members of one consumer
    group). Returns the lock's fd; the children inherit it, so the lock is held until this
    process and every child of it have exited. The lock file names the parent holding it:
    while that parent lives, exits at once with an error; when it is gone (killed) but its
    children still drain what they hold, waits for them — one line says so — up to ``wait``
    seconds, then exits with an error."""
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(Path(settings.data_dir) / "postline-all.lock", os.O_RDWR | os.O_CREAT, 0o600)
    deadline, said = time.monotonic() + wait, False
    while not _try_lock(fd):
        holder = _lock_holder(fd)
        if holder is not None or time.monotonic() >= deadline or stop.is_set():
            os.close(fd)
            raise SystemExit(f"postline: another `postline all` is running over {settings.data_dir}"
                             + (f" (pid {holder})" if holder else f" (still after waiting {wait:.0f} s)" if said else ""))
        if not said:
            print(f"postline: waiting up to {wait:.0f} s for the processes of a previous `postline all` over "
                  f"{settings.data_dir} to finish", file=sys.stderr, flush=True)
            said = True
        await _sleep_unless(stop, 0.2)
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def _try_lock(fd: int) -> bool:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _lock_holder(fd: int) -> int | None:
    """The pid of the live `postline all` parent that wrote the lock file, or None (it is
    gone, or wrote no pid: an older version)."""
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    if not text.isdigit():
        return None
    try:
        os.kill(int(text), 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        return int(text)
    try:  # a killed parent not yet reaped by its own parent is a zombie: gone too
        state = Path(f"/proc/{text}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return int(text)
    return None if state == "Z" else int(text)


def _local_url(settings: Settings) -> str:
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(settings.http_host, settings.http_host)
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.http_port}"


class Supervisor:
    def __init__(self, children: list[Child], on_exit: Callable[[int], None] = lambda pid: None) -> None:
        """``on_exit(pid)``: called once for each child that exited, before it is started again."""
        self.children = children
        self.ever_ready = False
        self.on_exit = on_exit

    def start_all(self) -> None:
        for child in self.children:
            child.start()

    def died_young(self) -> Child | None:
        return next((c for c in self.children if not c.alive()), None)

    async def until_ready(self, settings: Settings, stop: asyncio.Event) -> bool:
        """Wait until the API answers ``/readyz`` (control replayed, analytics reachable).
        False when stopped first, or when a child exits first (its error is on the terminal)."""
        deadline = time.monotonic() + READY_TIMEOUT
        # plain HTTP to this machine: verify=False only skips building a TLS context (~65 ms of CPU at start)
        async with httpx.AsyncClient(trust_env=False, timeout=10, verify=False) as http:
            while not stop.is_set() and time.monotonic() < deadline:
                dead = self.died_young()
                if dead is not None:
                    log.error("%s exited with code %s while starting; stopping", dead.name, dead.process.returncode)
                    return False
                try:
                    if (await http.get(_local_url(settings) + "/readyz")).status_code == 200:
                        self.ever_ready = True
                        return True
                except httpx.HTTPError:
                    pass
                await _sleep_unless(stop, 0.1)
        if not stop.is_set():
            log.error("not ready after %.0f s; stopping", READY_TIMEOUT)
        return False

    async def watch(self, stop: asyncio.Event) -> None:
        """Start again every child that exits, until ``stop``."""
        while not stop.is_set():
            now = time.monotonic()
            for child in self.children:
                if child.alive():
                    continue
                if child.restart_at is None:
                    young = now - child.started < YOUNG
                    child.failures = child.failures + 1 if young else 1
                    delay = min(MAX_BACKOFF, 0.5 * math.pow(2, child.failures - 1))
                    child.restart_at = now + delay
                    log.error("%s (pid %s) exited with code %s; starting it again in %.1f s",
                              child.name, child.process.pid, child.process.returncode, delay)
                    self.on_exit(child.process.pid)
                elif now >= child.restart_at:
                    child.start()
                    log.info("%s started again (pid %s)", child.name, child.process.pid)
            await _sleep_unless(stop, 0.2)

    async def stop_all(self) -> None:
        """SIGTERM to every child, then wait; SIGKILL what is left after ``STOP_GRACE`` s."""
        running = [c for c in self.children if c.alive()]
        for child in running:
            child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while any(c.alive() for c in running) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for child in running:
            if child.alive():
                log.error("%s did not stop within %.0f s; killing it", child.name, STOP_GRACE)
                child.process.kill()
            child.process.wait()


def _forget_metrics(settings: Settings, pid: int) -> None:
    """A dead child's live gauges no longer count (its counters do: they are totals)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, str(metrics_dir(settings)))


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(asyncio.shield(stop.wait()), seconds)
    except asyncio.TimeoutError:
        pass


async def run_all(stop: asyncio.Event, settings: Settings | None = None) -> None:
    """`postline all`: the single-process mode when ``POSTLINE_WORKERS=1``, else the supervised
    processes described in the module docstring, until ``stop``."""
    from services.roles import announce, run_roles

    settings = settings or load_settings()
    if worker_count(settings) <= 1:
        return await run_roles("all", stop, settings)
    lock_fd = await _lock_data_dir(settings, stop)
    _check_port(settings.http_host, settings.http_port, "HTTP")
    _check_port(settings.http_host, settings.submission_port, "SMTP submission")
    token, rt = await _prepare(settings)
    _fresh_metrics_dir(settings)
    children, store_sock = plan(settings, dict(os.environ))
    for child in children:  # the children hold the data dir's lock too, until the last one has stopped
        child.pass_fds += (lock_fd,)
    sup = Supervisor(children, on_exit=lambda pid: _forget_metrics(settings, pid))
    ready = False
    try:
        sup.start_all()
        ready = await sup.until_ready(settings, stop)
        if ready:
            log.info("%d processes: %s", len(children), ", ".join(f"{c.name} (pid {c.process.pid})" for c in children))
            announce(settings, token, rt)
            await sup.watch(stop)
    finally:
        await sup.stop_all()
        if store_sock is not None:
            store_sock.close()
        os.close(lock_fd)
    if not ready and not stop.is_set():
        raise SystemExit(1)


async def _child(role: str, settings: Settings, serve_store: tuple[socket.socket, str] | None,
                 share: tuple[int, int]) -> None:
    from services.roles import run_roles

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run_roles(role, stop, settings, supervised=True, serve_store=serve_store, relay_share=share)


def child_main(argv: list[str]) -> None:
    """``python -m services.supervisor ROLE [--store-fd FD | --share I/N]``: one child of `postline all`."""
    from shared.process_start import start_process

    role, serve_store, share = argv[0], None, (0, 1)
    settings = start_process()
    if argv[1:2] == ["--store-fd"]:  # the analytics owner: chDB here, served to the others
        # plan() gave this child the store's URL (POSTLINE_CLICKHOUSE_URL) with the fd
        serve_store = (socket.socket(fileno=int(argv[2])), cast(str, settings.clickhouse_url))
        settings = settings.model_copy(update={"clickhouse_url": None})
    if argv[1:2] == ["--share"]:  # one of the relay processes: index/count
        index, count = argv[2].split("/")
        share = (int(index), int(count))
    asyncio.run(_child(role, settings, serve_store, share))


if __name__ == "__main__":
    child_main(sys.argv[1:])
