"""Who may connect to the carrier simulator: security policies, users, pinned client certs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager
from cryptography import x509

POLICIES = {
    "None": ua.SecurityPolicyType.NoSecurity,
    "Basic256Sha256_Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
    "Basic256Sha256_SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
}
"""SimConfig.security names -> asyncua security policies."""


class FixedUsers(UserManager):
    """Username/password check against a fixed table (anonymous refused)."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = dict(users)

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        """Return a user for a correct username/password, else None (access denied)."""
        if username is not None and self._users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


class PinnedCertificates:
    """Server-side client certificate check: the DER must be one of the trusted files."""

    def __init__(self, trusted: tuple[Path, ...]) -> None:
        self._trusted = {_der(p) for p in trusted}

    async def __call__(self, cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        from cryptography.hazmat.primitives.serialization import Encoding

        if cert.public_bytes(Encoding.DER) not in self._trusted:
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)


def _der(path: Path) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    data = path.read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
    return data
