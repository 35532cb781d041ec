"""Bearer-token authentication for the HTTP API (every endpoint but /healthz checks it).

The token is read where the service is started (from a secret file or an environment variable)
and only its SHA-256 digest travels to the Serve replicas, so the secret never lands in Ray's
deployment metadata or logs. Requests are checked by comparing digests in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from videomar.errors import UserError
from videomar.platform.specs.serve import AuthSection
from videomar.platform.tokens import read_token_file

class AuthError(UserError):
    """The configured token cannot be read (the message names the file or variable)."""


def read_token(auth: AuthSection) -> str | None:
    """The configured token, or None when none is configured. An empty token is an error."""
    if auth.token_file:
        return read_token_file(Path(auth.token_file).expanduser(), "auth.token_file:", AuthError)
    if auth.token_env and auth.token_env in os.environ:
        token = os.environ[auth.token_env].strip()
        if not token:
            raise AuthError(f"auth.token_env: ${auth.token_env} is set but empty")
        return token
    return None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenCheck:
    """Checks ``Authorization: Bearer ...`` against a token digest; None accepts everyone."""

    token_digest: str | None

    @classmethod
    def from_config(cls, auth: AuthSection) -> "TokenCheck":
        token = read_token(auth)
        return cls(digest(token) if token else None)

    @property
    def enabled(self) -> bool:
        return self.token_digest is not None

    def allows(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value carries the token (always, with no token)."""
        if self.token_digest is None:
            return True
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            return False
        return hmac.compare_digest(digest(given.strip()), self.token_digest)
