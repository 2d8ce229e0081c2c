"""Start and stop the embedded emulators on loopback: moto server (DynamoDB + Streams) and
osmem-server (OpenSearch). Used by the test fixtures and by ``make demo``."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from osmem_server import OsmemServer

from tests.support.processes import stop_process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class MotoServer:
    """A moto server process; ``url`` is its endpoint for every AWS service."""

    process: subprocess.Popen
    url: str

    @classmethod
    def start(cls, timeout: float = 30.0, tls: tuple[Path, Path, Path] | None = None) -> MotoServer:
        """``tls``: (certificate, key, the CA that signed it): serve https with that certificate."""
        port = free_port()
        tls_options = ["-c", str(tls[0]), "-k", str(tls[1])] if tls else []
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port), *tls_options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C of the demo must not kill it before the worker stops
        )
        url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        context = ssl.create_default_context(cafile=str(tls[2])) if tls else None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"moto server exited with {process.returncode} during start-up")
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1, context=context).close()
                return cls(process, url)
            except OSError:
                time.sleep(0.1)
        process.kill()
        raise RuntimeError(f"moto server did not answer on {url} within {timeout} s")

    def reset(self) -> None:
        """Forget every table and stream (moto's reset API)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    def stop(self) -> None:
        stop_process(self.process)


def start_osmem() -> OsmemServer:
    return OsmemServer.start(japanese=False)


def aws_env(moto_url: str) -> dict[str, str]:
    """The standard AWS variables that point an SDK (ours included) at moto."""
    return {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }


def emulator_client(service: str, url: str) -> Any:
    """A boto3 client of ``service`` for an emulator at ``url``, with the credentials ``aws_env`` gives."""
    env = aws_env(url)
    return boto3.client(
        service,
        endpoint_url=url,
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
