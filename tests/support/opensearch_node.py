"""Build and start a real OpenSearch 2.19 node on loopback for the tests (stdlib only).

The node is the small Maven project in ``tests/opensearch_node``: one Java class that runs an
``org.opensearch.node.Node`` with the netty4, painless and analysis-common modules as classpath
plugins. This module builds it when its sources changed (into a cache outside the work tree, keyed
by a digest of ``pom.xml`` and ``src/``; Maven's ``~/.m2`` keeps the jars), starts one JVM per
node with a fixed heap (``-Xms``/``-Xmx``, 512m by default) in a temp folder, and reads its stdout
until the ``OPENSEARCH_READY <url>`` line. Every failure raises :class:`OpenSearchNodeError` with
the reason and the path of the log that shows it; nothing here waits without a bound.

    with OpenSearchNode.start(settings={"thread_pool.write.queue_size": "2"}) as node:
        requests go to node.url

Environment: ``java`` (17+) and, for the first build, ``mvn`` on PATH (Debian:
``apt-get install openjdk-17-jdk-headless maven``); ``CDC_OPENSEARCH_NODE_CACHE`` moves the build
cache (default ``~/.cache/cdc-opensearch-node``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent / "opensearch_node"
MAIN_CLASS = "dev.cdc.testnode.OpenSearchTestNode"
READY_PREFIX = "OPENSEARCH_READY "
BUILT_STAMP = "BUILT"

_INSTALL_HINT = {
    "java": "install a JDK 17 (Debian: `apt-get install openjdk-17-jdk-headless`)",
    "mvn": "install Maven (Debian: `apt-get install maven`)",
}


class OpenSearchNodeError(RuntimeError):
    """The test node could not be built, started or reached; the message says why and where to look."""


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no output)"
    return "\n".join(text.splitlines()[-lines:]) or "(no output)"


def _stdout(lines: list[str]) -> str:
    return "\nstdout:\n" + "\n".join(lines[-40:]) if lines else ""


def _require(tool: str, env: Mapping[str, str]) -> str:
    found = shutil.which(tool, path=env.get("PATH", ""))
    if found is None:
        raise OpenSearchNodeError(f"`{tool}` is not on PATH ({env.get('PATH', '')!r}): {_INSTALL_HINT[tool]}")
    return found


def source_digest() -> str:
    """A digest of everything the build reads: a change to any of them means a new build."""
    digest = hashlib.sha256()
    files = [PROJECT_DIR / "pom.xml", *sorted(p for p in (PROJECT_DIR / "src").rglob("*") if p.is_file())]
    for path in files:
        digest.update(str(path.relative_to(PROJECT_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def cache_root(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    default = Path(env.get("XDG_CACHE_HOME") or Path(env.get("HOME") or Path.home()) / ".cache") / "cdc-opensearch-node"
    return Path(env.get("CDC_OPENSEARCH_NODE_CACHE") or default)


def ensure_built(*, timeout: float = 600, env: Mapping[str, str] | None = None, log_dir: Path | None = None) -> Path:
    """The build folder (``classes/`` and ``lib/``), running ``mvn package`` first if it is missing."""
    env = dict(os.environ if env is None else env)
    build = cache_root(env) / source_digest()
    if (build / BUILT_STAMP).exists():
        return build
    mvn = _require("mvn", env)
    _require("java", env)  # mvn runs on it
    build.parent.mkdir(parents=True, exist_ok=True)
    own_log_dir = log_dir is None
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="opensearch-node-build-"))
    log = log_dir / "maven.log"
    deadline = time.monotonic() + timeout
    with open(build.parent / "build.lock", "w") as lock:
        while True:  # another test process may be building the same sources
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise OpenSearchNodeError(f"waited {timeout:.0f} s for another build of {build}") from None
                time.sleep(0.5)
        if (build / BUILT_STAMP).exists():
            return build
        command = [
            mvn,
            "-B",
            "-ntp",
            "-Dstyle.color=never",
            "-f",
            str(PROJECT_DIR / "pom.xml"),
            f"-Dosnode.build.dir={build}",
            "package",
        ]
        with open(log, "wb") as out:
            try:
                process = subprocess.run(
                    command,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    timeout=max(1.0, deadline - time.monotonic()),
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise OpenSearchNodeError(
                    f"Maven build of {PROJECT_DIR} did not finish within {timeout:.0f} s; log {log}:\n{_tail(log, 30)}"
                ) from None
        if process.returncode != 0:
            raise OpenSearchNodeError(
                f"Maven build of {PROJECT_DIR} failed (exit {process.returncode}); log {log}:\n{_tail(log, 30)}"
            )
        (build / BUILT_STAMP).write_text(" ".join(command) + "\n")
        for stale in build.parent.iterdir():  # builds of older sources: ~50 MB each
            if stale.is_dir() and stale != build:
                shutil.rmtree(stale, ignore_errors=True)
    if own_log_dir:
        shutil.rmtree(log_dir, ignore_errors=True)
    return build


def cluster_health(url: str, status: str = "yellow", timeout: float = 30, index: str | None = None) -> dict:
    """Wait until the cluster (or ``index``) reaches ``status``; its health document, or an error."""
    path = f"/_cluster/health/{index}" if index else "/_cluster/health"
    query = f"wait_for_status={status}&timeout={max(1, int(timeout))}s"
    try:
        with urllib.request.urlopen(f"{url}{path}?{query}", timeout=timeout + 10) as response:
            health = json.load(response)
    except urllib.error.HTTPError as error:  # 408 when the wait timed out
        health = json.load(error)
    except OSError as error:
        raise OpenSearchNodeError(f"cluster health from {url} failed: {error}") from error
    if health.get("timed_out"):
        raise OpenSearchNodeError(f"{index or 'cluster'} not {status} within {timeout} s: {health}")
    return health


class OpenSearchNode:
    """One running node: ``url`` is its HTTP endpoint, ``workdir`` holds its data and ``node.log``."""

    def __init__(self, process: subprocess.Popen, url: str, workdir: Path) -> None:
        self.process = process
        self.url = url
        self.workdir = workdir
        self.log = workdir / "node.log"

    @classmethod
    def start(
        cls,
        timeout: float = 180,
        settings: Mapping[str, str] | None = None,
        heap: str = "512m",
        *,
        env: Mapping[str, str] | None = None,
        build_timeout: float = 600,
        jvm_options: Sequence[str] = (),
    ) -> OpenSearchNode:
        """Build if needed, start the JVM and return once it printed its READY line (cluster ≥ yellow).

        ``timeout`` bounds the JVM's start, ``build_timeout`` a Maven build (needed only when the
        sources changed or the cache is new). ``settings`` become ``-E key=value`` node settings; ``env`` replaces os.environ for the
        build and the JVM (PATH decides which ``java`` and ``mvn`` run); ``jvm_options`` are added
        after the defaults (a later ``-X`` option wins).
        """
        env = dict(os.environ if env is None else env)
        java = _require("java", env)
        workdir = Path(tempfile.mkdtemp(prefix="opensearch-node-"))
        try:
            build = ensure_built(timeout=build_timeout, env=env, log_dir=workdir)
        except OpenSearchNodeError:
            with contextlib.suppress(OSError):
                workdir.rmdir()  # only when empty: a Maven log stays for the error message
            raise
        command = [
            java,
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-Xss1m",
            "-XX:TieredStopAtLevel=1",  # C1 only: half the CPU to READY; pass -XX:TieredStopAtLevel=4 to undo
            "-Djava.awt.headless=true",
            "-Dfile.encoding=UTF-8",
            "-Dlog4j2.disable.jmx=true",
            "-Dio.netty.allocator.numDirectArenas=0",
            f"-XX:ErrorFile={workdir}/hs_err_pid%p.log",
            *jvm_options,
            "-cp",
            f"{build}/classes:{build}/lib/*",
            MAIN_CLASS,
            "--home",
            str(workdir / "home"),
            "--exit-on-stdin-eof",
        ]
        for key, value in (settings or {}).items():
            command += ["-E", f"{key}={value}"]
        log = workdir / "node.log"
        with open(log, "wb") as stderr:
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
                cwd=workdir,
                start_new_session=True,  # a Ctrl-C of pytest must not kill it before the fixture stops it
            )
        lines: queue.Queue[str | None] = queue.Queue()

        def read_stdout() -> None:
            with process.stdout:  # closed here, at the JVM's end, not under a running read
                for raw in process.stdout:
                    lines.put(raw.decode(errors="replace").rstrip("\n"))
            lines.put(None)

        threading.Thread(target=read_stdout, name="opensearch-node-stdout", daemon=True).start()
        node = cls(process, "", workdir)
        other: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                node.stop(timeout=10, cleanup=False)
                raise OpenSearchNodeError(
                    f"OpenSearch node not ready within {timeout:.0f} s; log {log}:\n{_tail(log, 40)}{_stdout(other)}"
                )
            try:
                line = lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if line is None:  # stdout closed: the JVM is gone
                try:
                    code = process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    node.stop(timeout=10, cleanup=False)
                    code = process.returncode
                raise OpenSearchNodeError(
                    f"OpenSearch node exited early (exit {code}); log {log}:\n{_tail(log, 40)}{_stdout(other)}"
                )
            if line.startswith(READY_PREFIX):
                node.url = line[len(READY_PREFIX) :].strip()
                return node
            other.append(line)  # the JVM itself prints some start-up errors to stdout

    def health(self, status: str = "yellow", timeout: float = 30, index: str | None = None) -> dict:
        return cluster_health(self.url, status, timeout, index)

    def rss_kib(self) -> int:
        """Resident memory of the JVM (Linux), for reports."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self, timeout: float = 30, *, cleanup: bool = True) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL; the JVM's exit code (0 on a clean stop)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        if cleanup and self.process.returncode == 0:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return self.process.returncode

    def __enter__(self) -> OpenSearchNode:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
