"""A throw-away PKI for TLS tests, made with the openssl CLI: a CA, a server and a client
certificate it signs, and a second CA with a "rogue" client certificate nobody trusts."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca: Path
    server_cert: Path      # for 127.0.0.1 and localhost
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path         # a CA the server does not trust
    rogue_cert: Path       # a client certificate signed by it
    rogue_key: Path


def make_pki(d: Path) -> Pki:
    """Write the files into *d* (which exists) and name them."""
    _ca(d, "ca")
    _signed(d, "ca", "server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    _signed(d, "ca", "client", "extendedKeyUsage=clientAuth\n")
    _ca(d, "other-ca")
    _signed(d, "other-ca", "rogue", "extendedKeyUsage=clientAuth\n")
    return Pki(d, d / "ca.pem", d / "server-cert.pem", d / "server-key.pem", d / "client-cert.pem",
               d / "client-key.pem", d / "other-ca.pem", d / "rogue-cert.pem", d / "rogue-key.pem")


def _openssl(d: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)


def _ca(d: Path, name: str) -> None:
    _openssl(d, "req", "-x509", *_KEY, "-keyout", f"{name}-key.pem", "-out", f"{name}.pem", "-days", "2",
             "-subj", f"/CN={name}")


def _signed(d: Path, ca: str, name: str, ext: str) -> None:
    (d / f"{name}.ext").write_text(ext)
    _openssl(d, "req", *_KEY, "-keyout", f"{name}-key.pem", "-out", f"{name}.csr", "-subj", f"/CN={name}")
    _openssl(d, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}-key.pem",
             "-CAcreateserial", "-out", f"{name}-cert.pem", "-days", "2", "-extfile", f"{name}.ext")
