"""The keys behind stored secrets: COPLANE_SECRET_KEY parsed into Fernet keys, and new keys.

Kept apart from the vault (which needs the store) so that `Settings` can check the keys at
start-up without importing anything above it.
"""

from __future__ import annotations

from cryptography.fernet import Fernet

from coplane.security.mask import masker


def generate_key() -> str:
    """A new random key for COPLANE_SECRET_KEY."""
    return Fernet.generate_key().decode()


def parse_keys(keys: str | None) -> list[Fernet]:
    """The keys of a COPLANE_SECRET_KEY value, first the one that encrypts; ValueError for
    one that is not a key (without showing it)."""
    parts = [k.strip() for k in (keys or "").split(",") if k.strip()]
    masker.add(*parts)
    fernets = []
    for i, part in enumerate(parts, 1):
        try:
            fernets.append(Fernet(part))
        except ValueError:
            raise ValueError(
                f"key {i} of {len(parts)} is not a Fernet key (32 url-safe base64-encoded "
                "bytes); `coplane secrets generate-key` makes one"
            ) from None
    return fernets
