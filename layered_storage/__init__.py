"""django-layered-storage: files compressed and encrypted at rest, streaming.

Public names: ``LayeredStorage``, the exceptions and ``__version__``.
"""

from layered_storage.exceptions import (
    ConfigurationError,
    ContainerError,
    DecompressionLimitError,
    DecryptionError,
    FileTooLargeError,
    FormatError,
    HeaderAuthenticationError,
    LayeredStorageError,
    NotLayeredError,
    ObjectChangedError,
    PolicyError,
    SegmentAuthenticationError,
    TruncatedFileError,
    UnknownKeyError,
    UnsupportedFormatError,
)
from layered_storage.storage import LayeredStorage

__version__ = "0.1.0.dev0"

__all__ = [
    "ConfigurationError",
    "ContainerError",
    "DecompressionLimitError",
    "DecryptionError",
    "FileTooLargeError",
    "FormatError",
    "HeaderAuthenticationError",
    "LayeredStorage",
    "LayeredStorageError",
    "NotLayeredError",
    "ObjectChangedError",
    "PolicyError",
    "SegmentAuthenticationError",
    "TruncatedFileError",
    "UnknownKeyError",
    "UnsupportedFormatError",
    "__version__",
]
