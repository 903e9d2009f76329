"""``loopml serve`` as users run it: worker processes, kept-alive connections, TLS, errors."""

from __future__ import annotations

import datetime
import http.client
import os
import signal
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest

from loopml.serve.config import ServeConfig
from loopml.workspace import Workspace

from ._server import free_port, running
from .conftest import ROWS

LOOPML = str(Path(sys.executable).with_name("loopml"))


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1, as PEM files."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls_serves_https_with_the_given_certificate(shared_ws: Workspace, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    config = ServeConfig("m@champion", workspace=str(shared_ws.settings.root))
    with running(config, ssl_certfile=str(cert), ssl_keyfile=str(key)) as (url, _):
        assert url.startswith("https://")
        trusted = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=url, verify=trusted) as client:
            answer = client.post("/predict", json={"records": ROWS})
            assert answer.status_code == 200 and answer.json()["version"] == 1
        with pytest.raises(httpx.ConnectError), httpx.Client(base_url=url) as client:
            client.get("/health")  # not trusted without the certificate
        with pytest.raises(httpx.HTTPError), httpx.Client() as client:
            client.get(url.replace("https://", "http://") + "/health")


def test_tls_needs_both_files(
    shared_ws: Workspace,
    loopml_cli: Callable[..., subprocess.CompletedProcess[str]],
    tmp_path: Path,
) -> None:
    cert, _ = self_signed(tmp_path)
    ws = str(shared_ws.settings.root)
    done = loopml_cli("serve", "m@champion", "-w", ws, "--ssl-certfile", cert)
    assert done.returncode == 2 and "--ssl-keyfile" in done.stderr
    missing = loopml_cli("serve", "nope@champion", "-w", ws)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.startswith("error: ") and "nope" in missing.stderr
    canary = loopml_cli("serve", "m", "-w", ws, "--canary", "two:10")
    assert canary.returncode == 2 and "VERSION:PERCENT" in canary.stderr


@pytest.mark.slow
def test_workers_answer_kept_alive_connections_without_stalls(shared_ws: Workspace) -> None:
    """Two worker processes over kept-alive connections: no ~40 ms Nagle stalls per
    request (uvicorn #3149; asyncio's loop shows it, uvloop sets TCP_NODELAY itself), and
    /metrics (from whichever worker answers) adds up every
    worker's requests."""
    port = free_port()
    process = subprocess.Popen(
        [
            LOOPML,
            "serve",
            "m@champion",
            "-w",
            str(shared_ws.settings.root),
            "--port",
            str(port),
            "--workers",
            "2",
            "--log-level",
            "warning",
            "--loop",
            "asyncio",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        up_in_a_row = 0
        while up_in_a_row < 6:  # both workers answer (the model may still be loading)
            assert time.monotonic() < deadline and process.poll() is None
            try:
                up = httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
            except httpx.HTTPError:
                up = False
            up_in_a_row = up_in_a_row + 1 if up else 0
            time.sleep(0.05)
        body = orjson.dumps({"records": ROWS[:1]})
        timings = []
        statuses = set()
        # One connection, request after request: the case that stalls (with several
        # connections taking turns, the ACKs of one let the others' responses out).
        connection = http.client.HTTPConnection("127.0.0.1", port)
        for number in range(120):
            started = time.perf_counter()
            connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
            answer = connection.getresponse()
            answer.read()
            # 503 while a worker is still loading the model: the stall would show too.
            statuses.add(answer.status)
            if number >= 5:
                timings.append(time.perf_counter() - started)
        connection.close()
        assert statuses <= {200, 503}
        assert statistics.median(timings) < 0.02, sorted(timings)[:: len(timings) // 10]
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        answered = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("loopml_requests_total{")
        )
        assert answered == 120
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
