"""The pipeline: a stack of layers, encoding in order and decoding by the file's word.

Saving runs the configured layers in order, skipping a compression layer that is not
the outermost one when the file's type does not want it or its first frame will not
shrink. Opening ignores the write configuration: it reads the outermost magic, then
each header says what lies inside, until the plaintext, all bounded by the
``ReadPolicy``.
"""

from __future__ import annotations

import io

from layered_storage.exceptions import FormatError, NotLayeredError, PolicyError
from layered_storage.format import lse1, lsz1
from layered_storage.keys import Keyring, load_keyring
from layered_storage.layers.base import (
    PAYLOAD_LSE1,
    PAYLOAD_LSZ1,
    PAYLOAD_RAW,
    FileContext,
    Layer,
    ReadPolicy,
)
from layered_storage.layers.compression import DecompressingReader
from layered_storage.layers.encryption import AeadLayer, DecryptingReader
from layered_storage.streams import (
    WHOLE_READ,
    BlockReader,
    ByteStream,
    MemoryStream,
    PrefixedStream,
    ProducerStream,
    WholeStream,
    fill_from,
    read_exactly,
    read_tail,
)

_SNIFF_SIZE = 12


class Pipeline:
    """An ordered stack of layers plus the policy that bounds what it reads."""

    def __init__(self, layers: list[Layer], policy: ReadPolicy) -> None:
        self.layers = layers
        self.policy = policy
        self._read_keyring: Keyring | None = None
        self._encryption = encryption_layer(layers)

    @property
    def encryption(self) -> AeadLayer | None:
        """Return the encryption layer of the stack, if any."""
        return self._encryption

    def keyring(self) -> Keyring:
        """Return the keyring that decrypts: the stack's, else the global one."""
        layer = self.encryption
        if layer is not None:
            return layer.keyring
        if self._read_keyring is None:
            self._read_keyring = load_keyring(None)
        return self._read_keyring

    def encode(self, source: ByteStream, context: FileContext) -> ProducerStream:
        """Return a reader of the stored bytes for the plaintext ``source``."""
        if not self.layers:
            raise ValueError("A pipeline needs at least one layer.")
        last = len(self.layers) - 1
        active = [
            layer
            for index, layer in enumerate(self.layers)
            if index == last or layer.applies_to(context)
        ]
        stream: ByteStream = source
        # A layer that another follows may also be skipped for the file's first
        # bytes (zstd, for data that will not shrink under encryption): they are
        # read once, then handed on in front of the rest.
        peek = max((layer.head_size for layer in active[:-1]), default=0)
        if peek:
            head = read_exactly(source, peek)
            active = [
                layer
                for layer in active[:-1]
                if layer.applies_to_head(head[: layer.head_size])
            ] + active[-1:]
            stream = PrefixedStream(head, source)
        payload = PAYLOAD_RAW
        for index, layer in enumerate(active):
            stream = layer.encode(
                stream, context, payload=payload, outermost=index == len(active) - 1
            )
            payload = layer.payload
        assert isinstance(stream, ProducerStream), "internal error: layer output shape"
        return stream

    def decode(self, stored: ByteStream, context: FileContext) -> BlockReader:
        """Return a seekable reader of the plaintext stored in ``stored``.

        ``stored`` must be seekable; the reader owns it and closes it.

        Raises:
            NotLayeredError: no layered header and legacy plaintext not allowed.
            PolicyError: an unencrypted file where encryption is required.
            FormatError, DecryptionError, UnknownKeyError: see the layers.
        """
        name = context.name
        end = stored.seek(0, io.SEEK_END)
        if isinstance(stored, WholeStream) or end <= WHOLE_READ:
            if not isinstance(stored, WholeStream):  # else the backend read it whole
                stored = WholeStream(stored, end)
            tail = stored.data[-lse1.TRAILER_SIZE :]
        else:
            # An LSE1 object is recognised by its trailer, so that opening one reads
            # only its end: one ranged request on S3 for header, size and seek table.
            tail, _ = read_tail(stored, lse1.TRAILER_SIZE)
        trailed = lse1.ends_with_trailer(tail)
        head = b""
        if not trailed:
            stored.seek(0)
            head = read_exactly(stored, _SNIFF_SIZE)
        stored.seek(0)
        if trailed or head.startswith(lse1.MAGIC):  # no trailer: the reader says why
            payload = PAYLOAD_LSE1
        elif lsz1.is_lsz1(head):
            payload = PAYLOAD_LSZ1
        elif self.policy.legacy_plaintext:
            return PlainReader(stored)
        else:
            raise NotLayeredError(
                f"{name!r} has no layered header: it was stored by another storage "
                "or is not a layered file. To read such plaintext files during a "
                "migration, set OPTIONS['allow_plaintext'] = True."
            )
        stream: ByteStream = stored
        seen: set[int] = set()
        while payload != PAYLOAD_RAW:
            if payload in seen:  # each format once: no nesting games
                raise FormatError(f"{name!r} nests the same layer twice.")
            seen.add(payload)
            reader: DecryptingReader | DecompressingReader
            if payload == PAYLOAD_LSE1:
                reader = DecryptingReader(
                    stream, keyring=self.keyring(), context=context, policy=self.policy
                )
            else:
                reader = DecompressingReader(
                    stream,
                    file_name=name,
                    policy=self.policy,
                    enclosed=PAYLOAD_LSE1 in seen,
                )
            stream, payload = reader, reader.payload
            if (
                payload == PAYLOAD_LSZ1
                and isinstance(reader, DecryptingReader)
                and reader.in_memory
            ):
                # A small object, read whole: its payload (at most WHOLE_READ) is
                # decrypted at once, every segment verified, and the container
                # inside is parsed from memory, not through reads of this reader.
                stream = DecryptedStream(reader)
        if self.policy.require_encryption and PAYLOAD_LSE1 not in seen:
            stream.close()
            raise PolicyError(
                f"{name!r} is not encrypted, and this storage requires encryption. To "
                "read such files during a migration, set OPTIONS['allow_unencrypted'] "
                "= True."
            )
        assert isinstance(stream, BlockReader), "internal error: decoder shape"
        return stream


def encryption_layer(layers: list[Layer]) -> AeadLayer | None:
    """Return the encryption layer among ``layers``, if any."""
    return next((layer for layer in layers if isinstance(layer, AeadLayer)), None)


class DecryptedStream(MemoryStream):
    """The whole plaintext of a small LSE1 object read whole, for the layer inside.

    ``_source`` is the reader that decrypted it, as in a chain of decoders, and
    closing this stream closes it.
    """

    def __init__(self, source: DecryptingReader) -> None:
        super().__init__(source.readall())
        self._source = source

    def close(self) -> None:
        if not self.closed:
            super().close()
            self._source.close()


class PlainReader(BlockReader):
    """Pass legacy plaintext through unchanged (only when the policy allows it)."""

    block_size = 1024 * 1024

    def __init__(self, source: ByteStream) -> None:
        super().__init__(source)
        self._size = source.seek(0, io.SEEK_END)
        source.seek(0)

    @property
    def size(self) -> int:
        return self._size

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._source.tell() != self._position:
            self._source.seek(self._position)
        # Fill the buffer (an inner file, S3's above all, may return less per call).
        count = fill_from(self._source, buffer)
        self._position += count
        return count

    def _block(self, index: int) -> memoryview:
        self._source.seek(index * self.block_size)
        return memoryview(read_exactly(self._source, self.block_size))
