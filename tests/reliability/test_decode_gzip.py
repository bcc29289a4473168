"""Multi-member gzip bodies (RFC 1952 §2.2: a gzip file is a series of members), as Go's
and Python's gzip writers may produce them: every member is inflated, under the one
inflated-size cap; bytes after the last member that are not a member are refused with
``DecodeError`` (400), never silently dropped (issue 9, defect 4)."""

from __future__ import annotations

import gzip
import io
import zlib

import pytest

from phospho_otel.errors import DecodeError, PayloadTooLarge
from phospho_otel.receiver.decode import gunzip, parse_protobuf
from tests.support.otlp import make_request, task_span


def members(*parts: bytes) -> bytes:
    """One gzip member per part, written by Python's ``gzip.GzipFile`` appending to the
    same stream (what ``gzip.open(path, "ab")`` does)."""
    out = io.BytesIO()
    for part in parts:
        with gzip.GzipFile(fileobj=out, mode="ab") as writer:
            writer.write(part)
    return out.getvalue()


class TestMultiMember:
    """Every member of a multi-member body is read."""

    def test_python_gzip_writer_members(self) -> None:
        """Three members written by Python's gzip inflate to the concatenation."""
        body = members(b"first,", b"second,", b"third")
        assert body.count(b"\x1f\x8b\x08") == 3
        assert gunzip(body, 1000) == b"first,second,third"

    def test_protobuf_request_split_across_members(self) -> None:
        """An export request split at any byte over two members parses whole: no span
        of the second member is lost."""
        request = make_request([task_span(f"t{i}") for i in range(3)])
        raw = request.SerializeToString()
        half = len(raw) // 2
        decoded = parse_protobuf(gunzip(members(raw[:half], raw[half:]), 1 << 20))
        assert decoded == request

    def test_empty_members(self) -> None:
        """Empty members (valid gzip) add nothing."""
        assert gunzip(members(b"", b"x", b""), 10) == b"x"

    def test_cap_counts_all_members(self) -> None:
        """The inflated-size cap bounds the sum of the members, not each one."""
        body = members(b"a" * 600, b"b" * 600)
        assert gunzip(body, 1200) == b"a" * 600 + b"b" * 600
        with pytest.raises(PayloadTooLarge):
            gunzip(body, 1199)

    def test_many_small_bombs(self) -> None:
        """Members each under the cap but together over it are refused, early."""
        bomb = gzip.compress(bytes(1 << 20), 9)
        with pytest.raises(PayloadTooLarge):
            gunzip(bomb * 100, 10 << 20)


class TestTrailingGarbage:
    """Bytes after the last member are refused with DecodeError."""

    @pytest.mark.parametrize(
        "tail",
        [b"garbage", b"\x00" * 8, b"\x1f", b"\x1f\x8b", b"\n"],
        ids=["text", "zero-padding", "half-magic", "magic-only", "newline"],
    )
    def test_member_then_garbage(self, tail: bytes) -> None:
        """A valid member followed by ``tail`` is a 400 naming the trailing bytes."""
        with pytest.raises(DecodeError, match=r"trailing|truncated"):
            gunzip(gzip.compress(b"payload") + tail, 1000)

    def test_hand_made_member_then_garbage(self) -> None:
        """A member made by hand with zlib (raw deflate + RFC 1952 header and trailer)
        followed by garbage is refused; the same member alone inflates."""
        deflater = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        data = b"hand made"
        member = (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
                  + deflater.compress(data) + deflater.flush()
                  + zlib.crc32(data).to_bytes(4, "little") + len(data).to_bytes(4, "little"))
        assert gunzip(member, 100) == data
        with pytest.raises(DecodeError, match="trailing"):
            gunzip(member + b"\xde\xad\xbe\xef", 100)

    def test_truncated_second_member(self) -> None:
        """A second member cut short is a truncated body, not a silently shorter one."""
        body = members(b"one", b"two" * 100)
        with pytest.raises(DecodeError, match="truncated"):
            gunzip(body[:-10], 1000)

    def test_corrupt_second_member(self) -> None:
        """A second member with a bad checksum is malformed."""
        body = bytearray(members(b"one", b"two"))
        body[-5] ^= 0xFF  # the second member's CRC-32
        with pytest.raises(DecodeError, match="malformed gzip"):
            gunzip(bytes(body), 1000)
