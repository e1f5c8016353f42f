"""End to end against Postfix (issue 21), and the API's intake alone.

``e2e``: ``postline all`` as a subprocess on embedded defaults (whatever its default process
layout is; ``POSTLINE_WORKERS`` is passed through when set); for each workload shape of
tests/bench/shapes.py a fresh production service with a verified domain (dual DKIM:
RSA-2048 + Ed25519), MESSAGES sends (a tenth for the 1 MB and ten-recipient shapes) from
CLIENTS concurrent keep-alive HTTP clients, delivered by smarthost to an SMTP sink in
another process on loopback. The clock stops when the sink has counted every delivery.
Then, when Debian's ``postfix`` is installed (``make bench-deps``), Postfix relays the same
messages, submitted over SMTP by CLIENTS connections, into the same sink in the same run:
run from a config directory of its own (``postfix -c``, its own queue: the system's Postfix is
left exactly as it was) listening on loopback only with ``relayhost=[127.0.0.1]:PORT``, and
stopped afterwards. Every shape's two rates and their ratio are printed. When Debian's
``opendkim`` is installed too, the same messages go through that Postfix once more with
OpenDKIM as its signing milter (``postfix_opendkim``): how Postfix signs DKIM in practice, the
fairer bar for a sender that signs (plain Postfix signs nothing).

``intake``: the same ``postline all`` with its relay processes paused (nothing is delivered
and the log only grows): accepted sends/s with p50/p99 at saturation (CLIENTS connections
sending back to back), then p50/p99 with the sends due at TARGET_RATE per second (open loop:
latency counts from when a send was due, so a backlog shows).

CPU seconds of each system's process tree are reported per message: on this shared
machine they move far less than wall-clock rates. The load generators are small asyncio
clients (httpx or smtplib threads would spend more CPU than the servers on 2 cores)."""
from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.bench.memory import children_by_role, per_role, rss_mb
from tests.support.broker import free_port, wait_port
from tests.support.dns_server import DnsServer
from tests.support.postline import Api, PostlineProcess, production_service
from tests.support.processes import stop_process
from tests.bench.shapes import BY_NAME, SHAPES, Shape

MESSAGES, CLIENTS, WARMUP = 3000, 64, 200
TARGET_RATE = 1500  # issue 21: intake at this rate with p99 ≤ 50 ms
POSTFIX = "/usr/sbin/postfix"
OPENDKIM = "/usr/sbin/opendkim"
TICKS = os.sysconf("SC_CLK_TCK")


def bodies_of(shape: Shape, domain: str, start: int, n: int) -> list[bytes]:
    return [json.dumps(shape.request(start + i, domain)).encode() for i in range(n)]


def count_of(shape: Shape, n: int) -> int:
    """Sends of ``shape`` in a run of ``n`` messages (the 1 MB and ten-recipient shapes send a tenth)."""
    return max(10, int(n * shape.scale))


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants (reaped children included)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
    return total / TICKS


class RssSampler:
    """VmRSS of a process tree (tests/bench/memory.py's ``rss_mb``) every 2 s while a block runs."""

    def __init__(self, pid: int):
        self.pid, self.samples, self._stop = pid, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.samples.append(rss_mb(self.pid))
            if self._stop.wait(2):
                return

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(rss_mb(self.pid))


class Sink:
    """The SMTP sink process (tests/bench/sink.py) and the count of messages it accepted."""

    def __init__(self, kind: str):
        self.port = free_port()
        self.count_file = Path(tempfile.mkdtemp(prefix="postline-bench-sink-")) / "count"
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.bench.sink", str(self.port), kind,
                                      str(self.count_file)], stdout=subprocess.PIPE)
        wait_port(self.port)

    def count(self) -> int:
        try:
            return int(self.count_file.read_text() or 0)
        except FileNotFoundError:
            return 0

    def wait_for(self, n: int, timeout: float = 600) -> float:
        """Block until the sink has ``n`` messages; the time it got there (perf_counter)."""
        deadline = time.monotonic() + timeout
        while self.count() < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the sink got {self.count()} of {n} messages")
            time.sleep(0.02)
        return time.perf_counter()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.count_file.parent, ignore_errors=True)


# --- HTTP load: keep-alive connections posting bodies ---------------------------------

async def _http_connection(port: int, key: str, next_job, latencies: list[float], codes: dict[int, int]) -> None:
    """Post the bodies ``next_job()`` hands out, ``(body, due)``, until it returns None. A
    request with a ``due`` time is sent then (not before) and its latency counts from then,
    so time spent waiting for a free connection counts too (no coordinated omission)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"POST /emails HTTP/1.1\r\nHost: bench\r\nApi-Key: {key}\r\nContent-Type: application/json\r\n"
    try:
        while (job := next_job()) is not None:
            body, due = job
            if due is not None and due > time.perf_counter():
                await asyncio.sleep(due - time.perf_counter())
            start = due if due is not None else time.perf_counter()
            writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
            reply = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in reply.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append((time.perf_counter() - start) * 1000)
            code = int(reply[9:12])
            codes[code] = codes.get(code, 0) + 1
    finally:
        writer.close()


def post_all(port: int, key: str, bodies: list[bytes], clients: int = CLIENTS, rate: float | None = None) -> dict:
    """POST every body over ``clients`` connections; rate and latency of the API's answers.
    Without ``rate`` each connection sends its share back to back (the API's saturation);
    with it the requests are due at ``rate`` per second, taken by whichever connection is free."""
    latencies: list[float] = []
    codes: dict[int, int] = {}

    async def main() -> None:
        if rate is None:  # each connection its own share, back to back
            feeds = [((b, None) for b in bodies[i::clients]) for i in range(clients)]
        else:  # one schedule that every connection takes from
            t0 = time.perf_counter() + 0.05
            feeds = [((b, t0 + i / rate) for i, b in enumerate(bodies))] * clients
        await asyncio.gather(*(_http_connection(port, key, functools.partial(next, feed, None), latencies, codes)
                               for feed in feeds))
    start = time.perf_counter()
    asyncio.run(main())
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {"requests": len(latencies), "status_codes": codes, "seconds": round(elapsed, 2),
            "req_per_s": round(len(latencies) / elapsed, 1),
            "latency_ms": {"p50": round(statistics.median(latencies), 1),
                           "p99": round(latencies[int(len(latencies) * 0.99)], 1)}}


def start_postline(tmp: Path, dns: DnsServer, role: str, sink: Sink | None) -> PostlineProcess:
    env = {"POSTLINE_DNS_SERVER": dns.address,
           "POSTLINE_RATE_PER_MINUTE": "10000000", "POSTLINE_RATE_PER_DAY": "100000000"}
    if sink is not None:
        env |= {"POSTLINE_DELIVERY": "smarthost", "POSTLINE_SMARTHOST": f"127.0.0.1:{sink.port}"}
    return PostlineProcess(tmp / role, role=role, env=env).start()  # inherits POSTLINE_WORKERS if set


def run_postline(proc: PostlineProcess, dns: DnsServer, sink: Sink, shape: Shape, n: int,
                 profile: str | None = None) -> dict:
    """``n`` sends of ``shape`` from CLIENTS connections to a fresh production service of the
    running ``proc``; the clock stops when the sink has every delivery."""
    domain = f"{shape.name.replace('_', '-')}.test"
    _, key = production_service(Api(proc.url), dns, domain=domain, name=shape.name)
    if shape.warm_up:
        base = sink.count()
        post_all(proc.port, key, bodies_of(shape, domain, -WARMUP, WARMUP))  # pools, parsed keys, caches
        sink.wait_for(base + WARMUP * shape.recipients)
    bodies = bodies_of(shape, domain, 0, n)
    base, cpu0, roles0 = sink.count(), tree_cpu_s(proc.proc.pid), per_role(proc.proc.pid, tree_cpu_s)
    with Profile(profile, f"e2e-{shape.name}", proc.proc.pid), RssSampler(proc.proc.pid) as rss:
        start = time.perf_counter()
        intake = post_all(proc.port, key, bodies)
        end = sink.wait_for(base + n * shape.recipients)
    del bodies
    cpu = tree_cpu_s(proc.proc.pid) - cpu0
    roles = {role: round((s - roles0.get(role, 0)) * 1000 / n, 2)
             for role, s in per_role(proc.proc.pid, tree_cpu_s).items()}
    return {"sends": n, "deliveries": n * shape.recipients, "seconds": round(end - start, 2),
            "msg_per_s": round(n * shape.recipients / (end - start), 1), "api": intake,
            "cpu_ms_per_send": round(cpu * 1000 / n, 2), "cpu_ms_per_send_by_role": roles,
            "rss_mb": {"max": max(rss.samples), "at_end": rss.samples[-1]}}


# --- Postfix --------------------------------------------------------------------------

class PostfixInstance:
    """Debian's Postfix run from a config directory of its own (``postfix -c DIR``) with its own
    queue and data directories, all under ``root``: the system's /etc/postfix, its spool and its
    port-25 listener are never touched, so ``postfix start`` works for the next user as before.
    Loopback only, relay everything from 127.0.0.1 to the sink, no local delivery, no TLS."""

    def __init__(self, root: Path, smtpd_port: int, sink_port: int):
        self.root, self.port = root, smtpd_port
        self.conf, self.spool, self.data = root / "conf", root / "spool", root / "data"
        self.log = root / "postfix.log"
        self.sink_port = sink_port

    def postconf(self, *args: str) -> str:
        return subprocess.run(["postconf", "-c", str(self.conf), *args], check=True, capture_output=True, text=True).stdout

    def configure(self) -> "PostfixInstance":
        for d in (self.conf, self.spool, self.data):
            d.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # Postfix's daemons run as the postfix user and must reach the spool
        shutil.chown(self.data, user="postfix")  # master.lock and caches: written as the postfix user
        shutil.copy(Path("/etc/postfix/master.cf.proto")
                    if Path("/etc/postfix/master.cf.proto").exists() else Path("/etc/postfix/master.cf"), self.conf / "master.cf")
        (self.conf / "main.cf").write_text("# written by Postline's make bench (tests/bench/e2e.py)\n")
        settings = {"queue_directory": str(self.spool), "data_directory": str(self.data),
                    "inet_interfaces": "loopback-only", "inet_protocols": "ipv4", "mynetworks": "127.0.0.0/8",
                    "relayhost": f"[127.0.0.1]:{self.sink_port}", "mydestination": "",
                    "local_transport": "error:no local mail", "alias_maps": "", "alias_database": "",
                    "smtpd_tls_security_level": "none", "smtp_tls_security_level": "none",
                    "compatibility_level": "3.6", "maillog_file": str(self.log),
                    "maillog_file_prefixes": "/var,/dev/stdout,/tmp",
                    "smtpd_recipient_restrictions": "permit_mynetworks,reject",
                    "smtpd_relay_restrictions": "permit_mynetworks,reject",
                    "default_process_limit": "200", "smtpd_client_connection_count_limit": "0",
                    "smtpd_client_connection_rate_limit": "0", "smtpd_client_message_rate_limit": "0",
                    "anvil_rate_time_unit": "60s", "myhostname": "postfix.bench.test", "biff": "no"}
        self.postconf("-e", *(f"{k}={v}" for k, v in settings.items()))
        # The SMTP listener on a free loopback port instead of 25, outside the chroot (no copied files needed).
        for line in self.postconf("-M").splitlines():
            fields = line.split()
            if fields[1:2] == ["inet"]:
                self.postconf("-MX", f"{fields[0]}/inet")
        self.postconf("-M", f"127.0.0.1:{self.port}/inet=127.0.0.1:{self.port} inet n - n - - smtpd")
        self.postconf("-F", "*/*/chroot=n")
        subprocess.run([POSTFIX, "-c", str(self.conf), "check"], check=True)
        return self

    def start(self) -> None:
        subprocess.run([POSTFIX, "-c", str(self.conf), "start"], check=True, capture_output=True)
        wait_port(self.port)

    def stop(self) -> None:
        subprocess.run([POSTFIX, "-c", str(self.conf), "stop"], capture_output=True)

    def master_pid(self) -> int:
        return int((self.spool / "pid" / "master.pid").read_text().split()[0])


class OpenDkim:
    """Debian's OpenDKIM run from files of its own under ``root`` (``opendkim -x``; the system's
    /etc/opendkim.conf is never read) as the signing milter of a PostfixInstance: every
    sender's domain signed with one RSA-2048 key, ``relaxed/simple``, as Postline signs.
    OpenDKIM 2.11 signs with one algorithm per process (``SignatureAlgorithm``; an Ed25519
    key beside the RSA one fails the message), so the Ed25519 signature Postline adds
    (~0.04 ms of its CPU) has no counterpart here."""

    def __init__(self, root: Path, port: int):
        self.root, self.port = root, port
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.root.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (self.root / "bench.private").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
        (self.root / "KeyTable").write_text(f"bench %:bench:{self.root / 'bench.private'}\n")  # %: the sender's domain
        (self.root / "SigningTable").write_text("*@*.test bench\n")
        (self.root / "opendkim.conf").write_text("\n".join([
            "Mode s", f"Socket inet:{self.port}@127.0.0.1", f"KeyTable file:{self.root / 'KeyTable'}",
            f"SigningTable refile:{self.root / 'SigningTable'}", "Canonicalization relaxed/simple",
            "Syslog no", "RequireSafeKeys no", "Background no", f"PidFile {self.root / 'opendkim.pid'}", ""]))
        self.proc = subprocess.Popen([OPENDKIM, "-f", "-x", str(self.root / "opendkim.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def milter(self) -> str:
        return f"inet:127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc:
            stop_process(self.proc, 30)


def submit_all(port: int, messages: list[tuple[bytes, list[bytes], bytes]], clients: int = CLIENTS) -> dict:
    """Submit (sender, rcpts, raw) over ``clients`` SMTP connections (pipelined, one transaction each)."""
    from services.relay.senders.smtp_client import connect, dot_stuffed

    codes: dict[int, int] = {}

    async def connection(share: list[tuple[bytes, list[bytes], bytes]]) -> None:
        conn = await connect("127.0.0.1", port, timeout=120)
        try:
            for sender, rcpts, raw in share:
                for code, _ in await conn.transaction(sender, rcpts, dot_stuffed(raw)):
                    codes[code] = codes.get(code, 0) + 1
        finally:
            await conn.quit()

    async def main() -> None:
        await asyncio.gather(*(connection(messages[i::clients]) for i in range(clients)))
    start = time.perf_counter()
    asyncio.run(main())
    return {"status_codes": codes, "seconds": round(time.perf_counter() - start, 2)}


def run_postfix(instance: PostfixInstance, sink: Sink, shape: Shape, n: int, signer: OpenDkim | None = None) -> dict:
    """The same ``n`` messages of ``shape``, submitted to the running Postfix ``instance`` over
    CLIENTS SMTP connections; the clock stops when the sink has every delivery. The CPU of its
    milter ``signer``, when it has one, counts with Postfix's."""
    domain = f"{shape.name.replace('_', '-')}.test"
    if shape.warm_up:
        base = sink.count()
        submit_all(instance.port, [shape.mime(-i - 1, domain) for i in range(WARMUP)])
        sink.wait_for(base + WARMUP * shape.recipients)
    messages = [shape.mime(i, domain) for i in range(n)]
    pids = [instance.master_pid()] + ([signer.proc.pid] if signer and signer.proc else [])
    base, cpu0 = sink.count(), [tree_cpu_s(p) for p in pids]
    start = time.perf_counter()
    submission = submit_all(instance.port, messages)
    end = sink.wait_for(base + n * shape.recipients)
    cpu = [tree_cpu_s(p) - c0 for p, c0 in zip(pids, cpu0)]
    out = {"sends": n, "deliveries": n * shape.recipients, "seconds": round(end - start, 2),
           "msg_per_s": round(n * shape.recipients / (end - start), 1), "submission": submission,
           "cpu_ms_per_send": round(sum(cpu) * 1000 / n, 2)}
    if len(cpu) > 1:
        out["cpu_ms_per_send_opendkim"] = round(cpu[1] * 1000 / n, 2)
    return out


def run_postfix_signing(instance: PostfixInstance, signer: OpenDkim, sink: Sink, shapes: list[Shape], n: int,
                        results: dict) -> None:
    """Every shape again through ``instance`` with ``signer`` as its milter, into each shape's
    result. A message the milter fails on is refused (``tempfail``), not relayed; OpenDKIM
    itself passes unsigned what its SigningTable does not match, which matches every sender
    domain the bench uses (``*.test``)."""
    signer.start()
    instance.postconf("-e", f"smtpd_milters={signer.milter()}", "milter_default_action=tempfail")
    subprocess.run([POSTFIX, "-c", str(instance.conf), "reload"], check=True, capture_output=True)
    time.sleep(1)  # the reload replaces the running smtpd processes
    for shape in shapes:
        one = results[shape.name]
        one["postfix_opendkim"] = run_postfix(instance, sink, shape, count_of(shape, n), signer)
        one["ratio_postline_to_postfix_opendkim"] = round(
            one["postline"]["msg_per_s"] / one["postfix_opendkim"]["msg_per_s"], 2)


def postfix_version() -> str:
    return subprocess.run(["postconf", "-d", "-h", "mail_version"], capture_output=True, text=True).stdout.strip()


def system_postfix_files() -> dict[str, str]:
    """SHA-256 of every file under /etc/postfix: the bench reports whether it left them as it found them."""
    import hashlib

    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path("/etc/postfix").rglob("*")) if p.is_file()}


def run(n: int = MESSAGES, sink_kind: str = "aiosmtpd", profile: str | None = None,
        shapes: list[Shape] = SHAPES) -> dict:
    """Every shape through Postline (one ``postline all``, a fresh service per shape), then the
    same messages through Postfix into the same sink, in the same run; each shape's ratio of
    deliveries per second (Postline / Postfix)."""
    tmp = Path(tempfile.mkdtemp(prefix="postline-bench-e2e-"))
    dns = DnsServer().start()
    sink = Sink(sink_kind)
    result: dict = {"sink": sink_kind, "clients": CLIENTS, "messages": n,
                    "workers": os.environ.get("POSTLINE_WORKERS", "default"), "shapes": {}}
    try:
        proc = start_postline(tmp, dns, "all", sink)
        try:
            for shape in shapes:
                result["shapes"][shape.name] = {"postline": run_postline(proc, dns, sink, shape, count_of(shape, n), profile)}
        finally:
            proc.stop()
        if not Path(POSTFIX).exists():
            result["postfix"] = "not installed (make bench-deps installs Debian's postfix)"
            return result
        before = system_postfix_files()
        instance = PostfixInstance(Path(tempfile.mkdtemp(prefix="postline-bench-postfix-")), free_port(), sink.port)
        instance.configure().start()
        signer = OpenDkim(instance.root / "opendkim", free_port()) if Path(OPENDKIM).exists() else None
        try:
            for shape in shapes:
                one = result["shapes"][shape.name]
                one["postfix"] = run_postfix(instance, sink, shape, count_of(shape, n))
                one["ratio_postline_to_postfix"] = round(one["postline"]["msg_per_s"] / one["postfix"]["msg_per_s"], 2)
            if signer:
                run_postfix_signing(instance, signer, sink, shapes, n, result["shapes"])
        finally:
            try:
                instance.stop()
            finally:
                if signer:
                    signer.stop()
                shutil.rmtree(instance.root, ignore_errors=True)  # the signing key with it
        result["postfix"] = {"version": postfix_version(), "signing": "none (Postfix has no DKIM without a milter)",
                             "opendkim": "RSA-2048 milter" if signer else "not installed (make bench-deps installs it)",
                             "system_config_unchanged": system_postfix_files() == before}
        result["ratios"] = {name: one["ratio_postline_to_postfix"] for name, one in result["shapes"].items()}
        if signer:
            result["ratios_to_postfix_opendkim"] = {name: one["ratio_postline_to_postfix_opendkim"]
                                                    for name, one in result["shapes"].items()}
        return result
    finally:
        sink.stop()
        dns.stop()
        shutil.rmtree(tmp, ignore_errors=True)


class Profile:
    """``py-spy record`` of one process while a block runs (``--profile DIR``): the collapsed
    stacks go to DIR/NAME.txt (for flamegraph tools); ``top`` sums samples per function."""

    def __init__(self, out_dir: str | None, name: str, pid: int):
        self.path = Path(out_dir) / f"{name}.txt" if out_dir else None
        self.pid, self.proc = pid, None

    def __enter__(self) -> "Profile":
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            spy = Path(sys.executable).with_name("py-spy")
            self.proc = subprocess.Popen([str(spy), "record", "--pid", str(self.pid), "--rate", "250", "--threads", "--subprocesses",
                                          "--format", "raw", "--output", str(self.path), "--nonblocking"],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)  # py-spy attaches
        return self

    def __exit__(self, *exc) -> None:
        if self.proc:
            self.proc.send_signal(2)  # SIGINT: py-spy writes the file and exits
            self.proc.wait(30)

    def top(self, n: int = 25) -> dict:
        """The ``n`` functions with the most samples, inclusive (anywhere on the stack), as % of samples."""
        if not self.path or not self.path.exists():
            return {}
        inclusive: dict[str, int] = {}
        total = 0
        for line in self.path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            total += int(count)
            for frame in set(stack.split(";")):
                inclusive[frame] = inclusive.get(frame, 0) + int(count)
        best = sorted(inclusive.items(), key=lambda kv: -kv[1])[:n]
        return {frame: round(100 * c / total, 1) for frame, c in best}


def run_intake(n: int = MESSAGES, profile: str | None = None, shape: Shape = BY_NAME["receipt_5kb"]) -> dict:
    """The embedded default (`postline all`: API workers, relays, analytics+webhooks) with its
    relay processes paused (SIGSTOP once the warm-up is delivered, so none holds the log's
    write lock; SIGCONT after): every 200 is fsync'd and loaded by analytics, nothing is
    delivered during the run. The load generator shares the 2 cores."""
    tmp = Path(tempfile.mkdtemp(prefix="postline-bench-intake-"))
    dns, sink = DnsServer().start(), Sink("aiosmtpd")
    proc = start_postline(tmp, dns, "all", sink)
    try:
        domain = "acme.test"
        _, key = production_service(Api(proc.url), dns, domain=domain)
        post_all(proc.port, key, bodies_of(shape, domain, -WARMUP, WARMUP))
        sink.wait_for(WARMUP)
        time.sleep(1)  # the relays record the last deliveries, then idle
        relays = children_by_role(proc.proc.pid).get("relay", [])
        bodies, again = bodies_of(shape, domain, 0, n), bodies_of(shape, domain, n, n)
        for pid in relays:
            os.kill(pid, signal.SIGSTOP)
        try:
            cpu0 = tree_cpu_s(proc.proc.pid)
            with Profile(profile, f"intake-{shape.name}", proc.proc.pid):
                result = post_all(proc.port, key, bodies)
            result["cpu_ms_per_req"] = round((tree_cpu_s(proc.proc.pid) - cpu0) * 1000 / n, 2)
            result["at_target_rate"] = post_all(proc.port, key, again, rate=TARGET_RATE) | {"rate": TARGET_RATE}
        finally:
            for pid in relays:
                os.kill(pid, signal.SIGCONT)
        result |= {"shape": shape.name, "clients": CLIENTS, "relay_processes_paused": len(relays),
                   "workers": os.environ.get("POSTLINE_WORKERS", "default"),
                   "note": "`postline all` with its relays paused; the load generator shares the 2 cores"}
        return result
    finally:
        proc.stop()
        sink.stop()
        dns.stop()
        shutil.rmtree(tmp, ignore_errors=True)
