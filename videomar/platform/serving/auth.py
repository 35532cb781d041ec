"""Who may talk to the HTTP API: the bearer token, the bind address and the Host header.

The token is read where the service is started (from a secret file or an environment variable)
and only its SHA-256 digest travels to the Serve replicas, so the secret never lands in Ray's
deployment metadata or logs. Requests are checked by comparing digests in constant time.

Without a token the service binds loopback only (a non-loopback bind is refused) and says at
start-up that auth is off. Every endpoint but /healthz checks the Host header against the
configured names, so a web page that rebinds its own DNS name to 127.0.0.1 cannot read answers.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from videomar.errors import UserError
from videomar.platform.specs.serve import DEFAULT_TOKEN_ENV, AuthSection, HttpSection
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


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
WILDCARD_BINDS = ("0.0.0.0", "::", "")


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a DNS name: it may resolve anywhere
        return False


def host_name(header: str | None) -> str:
    """The name in a Host header, lower-cased, without its port (``[::1]:80`` -> ``::1``)."""
    value = (header or "").strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    return value.rpartition(":")[0] if value.count(":") == 1 else value


@dataclass(frozen=True)
class HostCheck:
    """The names a request's Host header may carry; None accepts any (a wildcard bind with no
    http.allowed_hosts: the token, required there, is the guard)."""

    names: frozenset[str] | None

    @classmethod
    def from_config(cls, http: HttpSection) -> "HostCheck":
        if http.allowed_hosts is not None:
            return cls(frozenset(h.lower() for h in http.allowed_hosts))
        if http.host in WILDCARD_BINDS:
            return cls(None)
        return cls(frozenset({http.host.lower(), *(LOOPBACK_NAMES if is_loopback(http.host) else ())}))

    def allows(self, header: str | None) -> bool:
        return self.names is None or host_name(header) in self.names


def exposure(http: HttpSection, token: TokenCheck) -> list[str]:
    """What to say at start-up about who can reach the service; AuthError for a non-loopback bind
    without a token (anyone on the network could generate and write to storage)."""
    if not token.enabled and not is_loopback(http.host):
        raise AuthError(
            f"http.host: {http.host!r} is not a loopback address and no token is configured; set "
            f"auth.token_file or the variable auth.token_env names (${DEFAULT_TOKEN_ENV}), or bind 127.0.0.1")
    notes = [] if token.enabled else [f"auth is off (no token configured): serving on {http.host} only"]
    if HostCheck.from_config(http).names is None:
        notes.append("the Host header is not checked (bound to all addresses); set http.allowed_hosts")
    return notes
