"""LSE1 key schedule primitives: HMAC and HKDF against their references."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from layered_storage.format import lse1


@given(key=st.binary(max_size=64), message=st.binary(max_size=300))
def test_hmac_with_hashed_pads_matches_the_standard_library(
    key: bytes, message: bytes
) -> None:
    expected = hmac.new(key, message, hashlib.sha256).digest()
    prf = lse1._HmacSha256(key)
    assert prf.digest(message) == expected
    assert prf.digest(message) == expected  # the padded states are not consumed


def test_hkdf_expand_matches_rfc_5869_test_case_1() -> None:
    prk = hmac.digest(bytes(range(13)), b"\x0b" * 22, "sha256")
    okm = lse1._hkdf_expand(lse1._HmacSha256(prk), bytes(range(0xF0, 0xFA)), 42)
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
        "34007208d5b887185865"
    )
