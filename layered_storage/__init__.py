"""django-layered-storage: files compressed and encrypted at rest, streaming.

Public names: ``LayeredStorage``, the exceptions and ``__version__``.
"""

from layered_storage.exceptions import (
    ConfigurationError,
    ContainerError,
    DecompressionLimitError,
    DecryptionError,
    FormatError,
    HeaderAuthenticationError,
    LayeredStorageError,
    NotLayeredError,
    PolicyError,
    SegmentAuthenticationError,
    TruncatedFileError,
    UnknownKeyError,
    UnsupportedFormatError,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "ConfigurationError",
    "ContainerError",
    "DecompressionLimitError",
    "DecryptionError",
    "FormatError",
    "HeaderAuthenticationError",
    "LayeredStorage",
    "LayeredStorageError",
    "NotLayeredError",
    "PolicyError",
    "SegmentAuthenticationError",
    "TruncatedFileError",
    "UnknownKeyError",
    "UnsupportedFormatError",
    "__version__",
]


def __getattr__(name: str) -> object:
    # Imported lazily so that importing the package never touches Django's
    # storage machinery (settings may not be configured yet).
    if name == "LayeredStorage":
        from layered_storage.storage import LayeredStorage

        return LayeredStorage
    raise AttributeError(f"module 'layered_storage' has no attribute {name!r}")
