"""Webhook authentication (pure: no I/O, no clock, no logging).

* Tradecloud signs nothing; it authenticates with the credentials we gave it,
  ``Authorization: Basic`` or a static ``Bearer`` token (api-facts §1.2). Both
  are compared with ``hmac.compare_digest`` so the time taken does not reveal
  how much of a guess was right; Basic compares user *and* password every time.
* Apicbase sends ``X-APIC-WEBHOOK-SIGNATURE``: lowercase hex HMAC-SHA256 of the
  payload keyed with our client secret (api-facts §5.6). We check the raw body
  first; if that fails, the ``json.dumps(json.loads(body))`` form that
  Apicbase's own sample code signs (same content, other formatting: pretty
  printed or raw UTF-8). Several secrets may be configured so one can be
  rotated without refusing orders in between.

Failures raise ``AuthenticationRequired`` (401: no or wrong credentials) or
``SignatureMismatch`` (403: a signature that does not match). Messages never
contain the credentials or the expected signature.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import string
from base64 import b64decode
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, NoReturn

from shared.errors import PermanentError

REALM: Final = "orderbridge"
_HEX: Final = frozenset(string.hexdigits)

SignatureForm = Literal["raw", "reserialized", "unchecked"]


class AuthenticationRequired(PermanentError):
    """Missing or wrong credentials (401); ``challenge`` goes into ``WWW-Authenticate``."""

    def __init__(self, message: str, *, challenge: str) -> None:
        super().__init__(message)
        self.challenge = challenge


class SignatureMismatch(PermanentError):
    """A webhook signature that does not match the body (403)."""


@dataclass(frozen=True, slots=True)
class TradecloudAuth:
    """Checks Tradecloud's ``Authorization`` header against what we gave Tradecloud.

    With neither Basic credentials nor a token, ``allow_anonymous`` decides:
    True only in the insecure development mode; otherwise every call is refused.
    """

    username: bytes | None = None
    password: bytes | None = None
    token: bytes | None = None
    allow_anonymous: bool = False

    @property
    def configured(self) -> bool:
        return self.username is not None or self.token is not None

    @property
    def challenge(self) -> str:
        schemes = []
        if self.username is not None or not self.configured:
            schemes.append(f'Basic realm="{REALM}", charset="UTF-8"')
        if self.token is not None:
            schemes.append(f'Bearer realm="{REALM}"')
        return ", ".join(schemes)

    def check(self, authorization: str | None) -> None:
        """Return when the header carries valid credentials; raise ``AuthenticationRequired``."""
        if not self.configured:
            if self.allow_anonymous:
                return
            self._refuse("Tradecloud webhooks are not configured on this server")
        if not authorization:
            self._refuse("missing Authorization header")
        scheme, _, credentials = authorization.strip().partition(" ")
        scheme = scheme.lower()
        credentials = credentials.strip()
        if scheme == "bearer" and self.token is not None:
            # aiohttp hands non-UTF-8 header bytes over as lone surrogates; give them back as bytes.
            if hmac.compare_digest(credentials.encode("utf-8", "surrogateescape"), self.token):
                return
            self._refuse("wrong bearer token")
        if scheme == "basic" and self.username is not None and self.password is not None:
            user, password = _basic(credentials)
            # Both comparisons always run: no early exit on a wrong user name.
            user_ok = hmac.compare_digest(user, self.username)
            password_ok = hmac.compare_digest(password, self.password)
            if user_ok & password_ok:
                return
            self._refuse("wrong user name or password")
        accepted = " or ".join(
            name
            for name, enabled in (("Basic", self.username), ("Bearer", self.token))
            if enabled is not None
        )
        self._refuse(f"unsupported authorization scheme: use {accepted}")

    def _refuse(self, message: str) -> NoReturn:
        raise AuthenticationRequired(message, challenge=self.challenge)


def _basic(credentials: str) -> tuple[bytes, bytes]:
    try:
        decoded = b64decode(credentials.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return b"", b""
    user, sep, password = decoded.partition(b":")
    return (user, password) if sep else (b"", b"")


RESERIALIZED_MAX_BYTES: Final = 1024 * 1024
"""The re-serialized form is only tried for bodies up to this size that are JSON objects.

Apicbase signs ``json.dumps(json.loads(body))``; a purchase order is a few
kilobytes (about 1 KB a line). Without a bound, a 15 MiB body with a bogus but
well-formed signature cost about 1 s of CPU before any credential was proven
(HMAC, parse, re-serialize, HMAC again): an unauthenticated amplification.
"""


@dataclass(frozen=True, slots=True)
class ApicbaseSignature:
    """Checks ``X-APIC-WEBHOOK-SIGNATURE`` against each configured secret."""

    secrets: tuple[bytes, ...] = ()
    allow_anonymous: bool = False

    @classmethod
    def of(cls, secrets: Sequence[bytes], *, allow_anonymous: bool = False) -> ApicbaseSignature:
        return cls(tuple(secrets), allow_anonymous)

    @property
    def configured(self) -> bool:
        return bool(self.secrets)

    def precheck(self, signature: str | None) -> None:
        """Refuse (401) before the body is read when no signature can match."""
        if not self.secrets:
            if self.allow_anonymous:
                return
            raise AuthenticationRequired(
                "Apicbase webhooks are not configured on this server", challenge=REALM
            )
        if not signature:
            raise AuthenticationRequired("missing X-APIC-WEBHOOK-SIGNATURE header", challenge=REALM)

    def check(self, body: bytes, signature: str | None) -> SignatureForm:
        """Which form of the body the signature covers; raise when none does."""
        self.precheck(signature)
        if not self.secrets or signature is None:  # anonymous development mode
            return "unchecked"
        given = signature.strip().lower()
        if len(given) != 64 or not _HEX.issuperset(given):
            raise SignatureMismatch("X-APIC-WEBHOOK-SIGNATURE must be 64 hex digits (HMAC-SHA256)")
        if self._matches(body, given):
            return "raw"
        if _could_be_reserialized(body):
            canonical = reserialized(body)
            if canonical is not None and canonical != body and self._matches(canonical, given):
                return "reserialized"
        raise SignatureMismatch(
            "X-APIC-WEBHOOK-SIGNATURE does not match the body (HMAC-SHA256 with the shared secret)"
        )

    def _matches(self, message: bytes, given: str) -> bool:
        wanted = given.encode()
        found = False
        for secret in self.secrets:
            digest = hmac.new(secret, message, hashlib.sha256).hexdigest().encode()
            found |= hmac.compare_digest(digest, wanted)
        return found


def _could_be_reserialized(body: bytes) -> bool:
    """A body small enough to be an Apicbase order, and a JSON object (cheap checks only)."""
    return len(body) <= RESERIALIZED_MAX_BYTES and body.lstrip()[:1] == b"{"


def reserialized(body: bytes) -> bytes | None:
    """``json.dumps(json.loads(body))`` with Python's defaults, as Apicbase signs it.

    Floats go through ``float`` on purpose: that is what the signer's own
    ``json.loads`` did. None when the body is not JSON (the caller answers 403,
    not 400: an unsigned body is not worth parsing for a better message).
    """
    try:
        return json.dumps(json.loads(body)).encode()
    except (ValueError, RecursionError):
        return None


def sign(secret: bytes, body: bytes) -> str:
    """The signature Apicbase would send for ``body`` (tests, the simulator, the bench)."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()
