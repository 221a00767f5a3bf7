"""Encrypt checkpoints at rest: AES-256-GCM over LangGraph's serializer.

The graph's state holds the conversation. The input is masked by the guard pipeline, but
the very first checkpoint of a turn is written before the guard runs, so every checkpoint
blob is encrypted. The key is derived (HKDF) from the PII vault key, so one secret protects
both and every process that shares the vault key can read the threads.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from langgraph.checkpoint.serde.base import CipherProtocol
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer

__all__ = ["AesGcmCipher", "encrypted_serde"]

_NAME = "aesgcm"


class AesGcmCipher(CipherProtocol):
    """AES-256-GCM with a random 96-bit nonce per message (nonce || ciphertext+tag)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the checkpoint key must be 32 bytes")
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
        """Encrypt and return the cipher name and nonce-prefixed ciphertext."""
        nonce = os.urandom(12)
        return _NAME, nonce + self._aead.encrypt(nonce, plaintext, None)

    def decrypt(self, ciphername: str, ciphertext: bytes) -> bytes:
        """Decrypt what :meth:`encrypt` produced; a wrong key fails loudly."""
        if ciphername != _NAME:
            raise ValueError(f"unknown checkpoint cipher {ciphername!r}")
        return self._aead.decrypt(ciphertext[:12], ciphertext[12:], None)


def encrypted_serde(vault_key: bytes) -> EncryptedSerializer:
    """Return LangGraph's serializer wrapped with a key derived from ``vault_key``."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"airlock/checkpoints/v1").derive(vault_key)
    return EncryptedSerializer(AesGcmCipher(key))
