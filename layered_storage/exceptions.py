"""The exception tree: every deliberate error of layered_storage.

Catch ``LayeredStorageError`` for all of them. Messages name the file, the key *id*
and the segment or frame involved, never key bytes or plaintext.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured


class LayeredStorageError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigurationError(LayeredStorageError, ImproperlyConfigured):
    """The storage, its layers or the keyring are configured wrongly.

    ``check_id`` is the system check that reports this mistake (see checks.py).
    """

    def __init__(self, message: str, check_id: str = "layered_storage.E008") -> None:
        super().__init__(message)
        self.check_id = check_id


class FormatError(LayeredStorageError):
    """The stored bytes are not a file this version can read."""


class NotLayeredError(FormatError):
    """The stored bytes carry no layered header (a plaintext or foreign file)."""


class UnsupportedFormatError(FormatError):
    """A header this version does not support: unknown version, algorithm or flag."""


class PolicyError(FormatError):
    """A well-formed file that the reader's policy refuses, e.g. an unencrypted one."""


class ContainerError(FormatError):
    """The compressed container (LSZ1) is malformed."""


class DecompressionLimitError(ContainerError):
    """A compressed frame would expand past the limits the reader enforces."""


class DecryptionError(LayeredStorageError):
    """Authentication failed: the bytes changed, or another key or name wrote them."""


class HeaderAuthenticationError(DecryptionError):
    """The key commitment over the header, key and file name does not verify."""


class SegmentAuthenticationError(DecryptionError):
    """One encrypted segment failed authentication."""

    def __init__(self, message: str, segment: int) -> None:
        super().__init__(message)
        self.segment = segment


class TruncatedFileError(DecryptionError):
    """The stored file ends before its final segment."""


class FileTooLargeError(LayeredStorageError):
    """Content over the storage's ``max_file_size`` was given to save."""


class ObjectChangedError(LayeredStorageError):
    """The stored object was replaced in the inner storage while it was being read."""


class UnknownKeyError(LayeredStorageError):
    """The file was written with a key whose id is not in the keyring."""

    def __init__(self, message: str, key_id: str) -> None:
        super().__init__(message)
        self.key_id = key_id
