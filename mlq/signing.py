"""HMAC-SHA256 signatures for stored code and result links.

A stored function is ``b"S" + mac + pickle`` when signed, ``b"U" + pickle``
when no secret was set. With a secret, only the first form with a valid mac
is ever unpickled.
"""

from __future__ import annotations

import hashlib
import hmac

from .errors import SignatureError

_SIGNED, _UNSIGNED = b"S", b"U"
_MAC_SIZE = hashlib.sha256().digest_size


def _secret_bytes(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def mac(secret: str | bytes, data: bytes) -> bytes:
    return hmac.new(_secret_bytes(secret), data, hashlib.sha256).digest()


def seal(payload: bytes, secret: str | bytes | None) -> bytes:
    """Wrap a pickle for storage, signed when a secret is set."""
    if not secret:
        return _UNSIGNED + payload
    return _SIGNED + mac(secret, payload) + payload


def unseal(stored: bytes, secret: str | bytes | None) -> bytes:
    """The pickle inside `stored`; SignatureError when a secret is set and it is not signed with it."""
    kind = stored[:1]
    if kind == _SIGNED:
        signature, payload = stored[1:1 + _MAC_SIZE], stored[1 + _MAC_SIZE:]
        if secret and not hmac.compare_digest(signature, mac(secret, payload)):
            raise SignatureError("signed with another secret")
        return payload
    if kind == _UNSIGNED and not secret:
        return stored[1:]
    raise SignatureError("not signed")


def sign_text(secret: str | bytes, text: str) -> str:
    """Hex HMAC of a text (signed result links)."""
    return mac(secret, text.encode()).hex()


def verify_text(secret: str | bytes, text: str, signature: str) -> bool:
    return hmac.compare_digest(sign_text(secret, text), signature)
