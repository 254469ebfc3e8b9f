"""Errors of the keys package.

    KeyStoreError                root: every failure keys reports to its caller
    ├── KeyFormatError           a key file or public key cannot be parsed (source, detail)
    ├── WrongPassphrase          a private key did not decrypt with the passphrase given
    ├── KeyStoreMissing          no keystore yet (run `genegate keys init`)
    ├── KeyStoreExists           `keys init` on a keystore that already has a lab key
    ├── RegistryTampered         the recipient registry's signature does not verify
    ├── UnknownRecipient         no recipient with that id
    ├── RecipientUnusable        the recipient is revoked or its key is expired or not yet valid
    └── KmsError                 AWS KMS refused or failed to wrap/unwrap a key

Messages name the operation, the object and the fix, never a key, passphrase or identifier.
"""

from __future__ import annotations


class KeyStoreError(Exception):
    """Root of the keys package's errors."""


class KeyFormatError(KeyStoreError):
    """A key file or public key text is not in a format genegate reads."""

    def __init__(self, source: str, detail: str) -> None:
        super().__init__(f"{source}: {detail}")
        self.source = source
        self.detail = detail


class WrongPassphrase(KeyStoreError):
    """The passphrase does not open the private key."""

    def __init__(self, source: str) -> None:
        super().__init__(
            f"{source}: the passphrase does not open this private key; check $GENEGATE_PASSPHRASE"
        )
        self.source = source


class KeyStoreMissing(KeyStoreError):
    """The keystore directory or its lab key does not exist."""


class KeyStoreExists(KeyStoreError):
    """The keystore already holds a lab key."""


class RegistryTampered(KeyStoreError):
    """The recipient registry was changed outside genegate."""


class UnknownRecipient(KeyStoreError):
    """No recipient has this id."""


class RecipientUnusable(KeyStoreError):
    """The recipient exists but cannot receive data today."""


class KmsError(KeyStoreError):
    """AWS KMS could not wrap or unwrap a key."""
