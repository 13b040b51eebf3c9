"""Join codes, teacher secrets, student tokens and nicknames.

A join code is read off a projector and typed on a phone, so its alphabet leaves out the characters that look
alike (0/O, 1/I/L). Eight of the 31 left make 31**8 ≈ 8.5e11 codes: with at most a few dozen classes open and a
handful of wrong guesses allowed per minute per address, guessing one is hopeless. Secrets and tokens are kept
only as SHA-256 digests, so a copy of the store lets nobody act as a teacher or a student.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import unicodedata

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 8
NICKNAME_MAX_CHARS = 24
_CODE = re.compile(f"[{ALPHABET}]{{{CODE_LENGTH}}}")
_SEPARATORS = re.compile(r"[\s\-_.·]+")


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def normal_code(text: str) -> str | None:
    """The code as stored (upper case, no separators), or None when the text cannot be one."""
    code = _SEPARATORS.sub("", text or "").upper()
    return code if _CODE.fullmatch(code) else None


def shown_code(code: str) -> str:
    """Two groups of four, easier to read aloud and to type: K7M2 QX9P."""
    return f"{code[:4]} {code[4:]}"


def new_secret() -> str:
    """A teacher's secret or a student's token: 192 random bits, URL- and cookie-safe."""
    return secrets.token_urlsafe(24)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def secret_matches(given: str | None, stored_digest: str) -> bool:
    """Constant-time comparison of the digests: the time taken says nothing about how much of a guess was right."""
    return bool(given) and hmac.compare_digest(digest(given), stored_digest)


class BadNickname(ValueError):
    """A refused nickname: the catalogue `key` of the reason (class.err.nickname_*) and its `values`."""

    def __init__(self, key: str, **values):
        super().__init__(key)
        self.key, self.values = key, values


def clean_nickname(text: str | None) -> str:
    """The nickname as shown: NFC, spaces collapsed, at most NICKNAME_MAX_CHARS. Control and format characters are
    refused (a right-to-left override would make a nickname look like another); "" is anonymous."""
    name = " ".join(unicodedata.normalize("NFC", text or "").split())
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in name):
        raise BadNickname("class.err.nickname_hidden")
    if len(name) > NICKNAME_MAX_CHARS:
        raise BadNickname("class.err.nickname_long", length=len(name), limit=NICKNAME_MAX_CHARS)
    return name
