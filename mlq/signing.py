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
#: The header that carries a signature: of a callback's URL (sent by workers), and
#: of an uploaded pickle (sent by whoever uploads it).
SIGNATURE_HEADER = "X-MLQ-Signature"
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


def seal_signed(payload: bytes, signature: str | None, secret: str | bytes | None) -> bytes:
    """Wrap a pickle that its uploader signed (`signature`: hex, optionally "sha256=hex").

    With a secret, the signature must be valid for it (SignatureError otherwise);
    without one it is kept unchecked, for workers that do hold the secret to check.
    """
    given = parse_signature(signature)
    if given is None:
        raise SignatureError("unsigned upload: sign the pickle with the shared secret "
                             "(X-MLQ-Signature: sha256=<hex HMAC-SHA256>)")
    if secret and not hmac.compare_digest(given, mac(secret, payload)):
        raise SignatureError("the upload's signature does not match the shared secret")
    return _SIGNED + given + payload


def parse_signature(signature: str | None) -> bytes | None:
    """The MAC in "sha256=<hex>" or "<hex>"; None when absent or not that shape."""
    if not signature:
        return None
    text = signature.strip()
    if text.lower().startswith("sha256="):
        text = text[len("sha256="):]
    if len(text) != 2 * _MAC_SIZE:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def signature_header(secret: str | bytes, payload: bytes) -> str:
    """The SIGNATURE_HEADER value for `payload`: "sha256=<hex HMAC>"."""
    return "sha256=" + mac(secret, payload).hex()


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
