"""The generic inner-backend adapter: what a storage is handed to save."""

from __future__ import annotations

import io
import random

from layered_storage.backends import EncodedFile
from layered_storage.format import lse1
from layered_storage.layers.base import FileContext, ReadPolicy
from layered_storage.layers.encryption import AesGcmLayer, EncryptingStream
from layered_storage.pipeline import Pipeline
from tests.utils import SEGMENT

CONTEXT = FileContext(name="scans/0042.pdf", namespace="media")
DATA = random.Random(9).randbytes(3 * 1024 * 1024 + 5)


def encoded() -> EncodedFile:
    pipeline = Pipeline([AesGcmLayer()], ReadPolicy())
    return EncodedFile(pipeline.encode(io.BytesIO(DATA), CONTEXT), CONTEXT.name)


def decoded(stored: bytes) -> bytes:
    pipeline = Pipeline([AesGcmLayer()], ReadPolicy())
    with pipeline.decode(io.BytesIO(stored), CONTEXT) as reader:
        return reader.read()


def test_chunks_are_the_pieces_the_layers_produce() -> None:
    pieces = list(encoded().chunks())
    assert isinstance(pieces[0], bytes)
    # Sealed batches are handed on whole, not cut into 1 MiB chunks: 3 MiB is a
    # one-segment batch, two full ones and the rest.
    batch = EncryptingStream.BATCH * (SEGMENT + lse1.TAG_SIZE)
    assert [len(piece) for piece in pieces].count(batch) == 2
    assert decoded(b"".join(pieces)) == DATA


def test_chunks_of_an_asked_size_are_cut_exactly() -> None:
    pieces = list(encoded().chunks(1000))
    assert {len(piece) for piece in pieces[:-1]} == {1000}
    assert decoded(b"".join(pieces)) == DATA
