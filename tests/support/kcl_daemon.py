"""The real Java KCL MultiLangDaemon for tests: the launcher of deploy/kcl (KCL 3 + the DynamoDB
Streams Kinesis Adapter 2.x) built with Maven (its jars cached in ~/.m2; its own JUnit tests run by
the build), started as a process with a properties file whose ``executableName`` is
``python -m consumer kcl-processor``. The daemon passes its environment to the children, so the
``CDC_*`` variables are set on the daemon.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "deploy" / "kcl" / "build.sh"
SHIPPED_PROPERTIES = REPO / "deploy" / "kcl" / "streams-daemon.properties"
# KCL 3's leader assigns leases once it has each worker's metrics, reported every 30 s by default:
# a daemon given these starts reading within seconds of its lease sync (the reports cost more units)
QUICK_ASSIGNMENT = ("workerMetricsReporterFreqInMillis=1000", "inMemoryWorkerMetricsCaptureFrequencyMillis=1000")
MAIN_CLASS = "consumer.kcl.DynamoDBStreamsMultiLangDaemon"


def build_launcher(log_path: Path, timeout: float = 900) -> str:
    """Build deploy/kcl (and run its tests); the classpath to run it with. Test processes running in
    parallel take turns: one builds, the others wait for it (a Maven build is not safe to share)."""
    lock_path = BUILD.parent / "target" / ".build.lock"
    lock_path.parent.mkdir(exist_ok=True)
    with open(lock_path, "w") as lock, open(log_path, "wb") as log:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = subprocess.run([str(BUILD)], stdout=subprocess.PIPE, stderr=log, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"deploy/kcl/build.sh failed ({result.returncode}):\n{log_path.read_text()[-3000:]}")
    return result.stdout.decode().strip().splitlines()[-1]


def daemon_properties(
    path: Path, stream_arn: str, application: str, moto_url: str, worker_id: str, failover_millis: int = 10_000
) -> Path:
    """A properties file for the launcher against moto (the keys are documented in deploy/kcl)."""
    path.write_text(
        "\n".join(
            [
                f"executableName = {sys.executable} -m consumer kcl-processor",
                f"streamName = {stream_arn}",
                f"applicationName = {application}",
                "initialPositionInStream = TRIM_HORIZON",
                "regionName = us-east-1",
                "AWSCredentialsProvider = DefaultCredentialsProvider",
                f"dynamoDBEndpoint = {moto_url}",
                f"dynamoDBStreamsEndpoint = {moto_url}",
                "metricsLevel = NONE",
                "idleTimeBetweenReadsInMillis = 250",
                f"failoverTimeMillis = {failover_millis}",
                f"workerId = {worker_id}",
                "workerMetricsReporterFreqInMillis = 1000",
                "inMemoryWorkerMetricsCaptureFrequencyMillis = 1000",
                "shutdownGraceMillis = 5000",
                "",
            ]
        )
    )
    return path


class KclDaemon:
    """One daemon process (its children die with it: their stdin closes). Always ``stop()`` it."""

    def __init__(
        self, classpath: str, properties: Path, env: dict[str, str], log_path: Path, overrides: tuple[str, ...] = ()
    ) -> None:
        """``overrides``: ``key=value`` arguments after the properties file, as an ECS task's command passes them."""
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            ["java", "-Xmx256m", "-XX:+UseSerialGC", "-cp", classpath, MAIN_CLASS, str(properties), *overrides],
            env={"PATH": os.environ.get("PATH", ""), "JAVA_HOME": os.environ.get("JAVA_HOME", ""), **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # kill -9 of the group takes the children with it, as a container's end would
        )

    @classmethod
    def shipped(
        cls,
        classpath: str,
        children: dict[str, str],
        log_path: Path,
        stream_arn: str,
        application: str,
        dynamodb_url: str,
        streams_url: str,
        *overrides: str,
    ) -> KclDaemon:
        """The daemon on the shipped properties (deploy/kcl), pointed at the emulators by command-line
        overrides (worker ``kcl-1``, no CloudWatch metrics), as the benchmarks run it."""
        return cls(
            classpath,
            SHIPPED_PROPERTIES,
            children,
            log_path,
            (
                f"executableName={sys.executable} -m consumer kcl-processor",
                f"streamName={stream_arn}",
                f"applicationName={application}",
                "regionName=us-east-1",
                f"dynamoDBEndpoint={dynamodb_url}",
                f"dynamoDBStreamsEndpoint={streams_url}",
                "metricsLevel=NONE",
                "workerId=kcl-1",
                *overrides,
            ),
        )

    def kill(self) -> None:
        """kill -9 of the daemon and its children, as when a container is killed."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
