"""The layer protocol, the layer registry and how ``OPTIONS["layers"]`` is parsed.

A layer turns a reader into a reader: ``encode`` wraps the plaintext side and
produces the stored side, ``decode`` does the reverse. Pulling keeps memory near one
frame or segment per layer on both paths. A layer never closes the stream it was
handed. Each layer writes its own self-describing header, so reading follows the
file, bounded by a ``ReadPolicy``, and never the current write configuration.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from django.utils.module_loading import import_string

from layered_storage.exceptions import ConfigurationError

if TYPE_CHECKING:
    from layered_storage.streams import ByteStream, ProducerStream

#: What a layer's input is, as the outer layer's header records it (LSE1
#: ``payload_type``, LSZ1 descriptor byte 15). The values never overlap.
PAYLOAD_RAW = 0x00
PAYLOAD_LSZ1 = 0x01
PAYLOAD_LSE1 = 0x02

LayerSpec = str | Sequence[Any]
"""A registered name or dotted path, or a pair ``(name_or_path, {options})``."""


@dataclass(frozen=True)
class FileContext:
    """What a layer may know about the file it transforms."""

    name: str
    namespace: str = ""
    content_type: str | None = None
    #: Namespaces other storages use: when a file fails to authenticate, the
    #: reader tries them to say whether the namespace changed.
    other_namespaces: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReadPolicy:
    """What a reader accepts; the header describes, the policy decides."""

    require_encryption: bool = True
    legacy_plaintext: bool = False
    require_name_binding: bool = True
    max_segment_log2: int = 22
    max_frame_log2: int = 23
    max_file_size: int | None = None


class Layer(ABC):
    """One transformation in a stack."""

    #: The name ``OPTIONS["layers"]`` uses for this layer.
    name: ClassVar[str]
    #: ``"compression"`` or ``"encryption"``.
    kind: ClassVar[str]
    #: The payload type an outer layer records for this layer's output.
    payload: ClassVar[int]

    #: How many leading plaintext bytes ``applies_to_head`` looks at (0: none).
    head_size: int = 0

    def applies_to(self, context: FileContext) -> bool:
        """Return whether this layer transforms the file (False: skip it)."""
        return True

    def applies_to_head(self, head: bytes) -> bool:
        """Return whether a file that begins with ``head`` is worth this layer.

        Asked only of a layer that another layer follows, with ``head_size`` bytes
        (fewer: the whole file), before anything is produced.
        """
        return True

    @abstractmethod
    def encode(
        self, source: ByteStream, context: FileContext, *, payload: int, outermost: bool
    ) -> ProducerStream:
        """Return a reader of the stored form of ``source``.

        ``payload`` says what ``source`` holds (``PAYLOAD_RAW`` or an inner layer's
        output); ``outermost`` whether this layer's output is what gets stored. The
        reader is non-seekable and fills every read exactly.
        """


REGISTRY: dict[str, str] = {
    "zstd": "layered_storage.layers.compression.ZstdLayer",
    "aes-gcm": "layered_storage.layers.encryption.AesGcmLayer",
    "chacha20-poly1305": "layered_storage.layers.encryption.ChaCha20Poly1305Layer",
}


def resolve_layer_class(reference: str) -> type[Layer]:
    """Return the layer class a registered name or dotted path names.

    Raises:
        ConfigurationError: neither a registered name nor an importable Layer class.
    """
    path = REGISTRY.get(reference, reference)
    try:
        found = import_string(path)
    except ImportError:
        raise ConfigurationError(
            f"Unknown layer {reference!r}: use one of {sorted(REGISTRY)} or the "
            "dotted path of a Layer subclass.",
            check_id="layered_storage.E003",
        ) from None
    if not (isinstance(found, type) and issubclass(found, Layer)):
        raise ConfigurationError(
            f"{reference!r} is not a Layer subclass.", check_id="layered_storage.E003"
        )
    return found


def build_layer(spec: LayerSpec) -> Layer:
    """Return the layer one ``OPTIONS["layers"]`` entry describes.

    Raises:
        ConfigurationError: an unknown layer, or unknown or invalid options.
    """
    if isinstance(spec, str):
        reference, options = spec, {}
    elif (
        isinstance(spec, Sequence)
        and len(spec) == 2
        and isinstance(spec[0], str)
        and isinstance(spec[1], Mapping)
    ):
        reference, options = spec[0], dict(spec[1])
    else:
        raise ConfigurationError(
            f"A layer is a name or a pair (name, {{options}}), got {spec!r}.",
            check_id="layered_storage.E003",
        )
    layer_class = resolve_layer_class(reference)
    allowed = [
        name
        for name, parameter in inspect.signature(layer_class).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigurationError(
            f"Layer {reference!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are {allowed or 'none'}.",
            check_id="layered_storage.E004",
        )
    return layer_class(**options)


def build_layers(specs: Sequence[LayerSpec]) -> list[Layer]:
    """Return the layers of a stack, in save order.

    Raises:
        ConfigurationError: see ``build_layer``; also an empty or repeated stack.
    """
    if isinstance(specs, str) or not isinstance(specs, Sequence):
        raise ConfigurationError(
            f"'layers' must be a list such as ['zstd', 'aes-gcm'], got {specs!r}.",
            check_id="layered_storage.E004",
        )
    layers = [build_layer(spec) for spec in specs]
    kinds = [layer.kind for layer in layers]
    for kind in set(kinds):
        if kinds.count(kind) > 1:
            raise ConfigurationError(
                f"The stack {[layer.name for layer in layers]} has more than one "
                f"{kind} layer; use one of each at most.",
                check_id="layered_storage.E004",
            )
    return layers
