"""TLS for the hub: the certificate fingerprint boards may pin."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ..errors import BadInput


def certificate_der(cert_path: Path) -> bytes:
    """The PEM certificate at `cert_path` in DER form (what boards pin), or a clear BadInput."""
    try:
        cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    except OSError as exc:
        raise BadInput(f"{cert_path}: cannot read the TLS certificate: {exc.strerror}") from None
    except ValueError as exc:
        raise BadInput(f"{cert_path}: not a PEM certificate: {exc}") from None
    return cert.public_bytes(Encoding.DER)


def fingerprint(cert_path: Path) -> str:
    """Lowercase hex sha256 of the certificate's DER bytes (what a pinning client hashes)."""
    return hashlib.sha256(certificate_der(cert_path)).hexdigest()
