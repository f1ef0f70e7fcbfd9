"""A small, strict CDR reader and writer for the ROS 2 messages medgw maps.

Payloads start with the 4-byte encapsulation header. Plain CDR (XCDR1, what ROS 2 sends)
aligns primitives to their size; plain XCDR2 caps alignment at 4. Alignment is relative
to the end of the header. Every read is bounds-checked: garbage raises CdrError, never
an IndexError deep inside numpy.
"""

from __future__ import annotations

import struct

import numpy as np
import numpy.typing as npt

HEADER_SIZE = 4
CDR_LE = b"\x00\x01"
CDR_BE = b"\x00\x00"
CDR2_LE = b"\x00\x07"
CDR2_BE = b"\x00\x06"
_ENCAPSULATIONS = {CDR_LE: ("<", 8), CDR_BE: (">", 8), CDR2_LE: ("<", 4), CDR2_BE: (">", 4)}
MAX_STRING = 1 << 16


class CdrError(ValueError):
    """A payload is not valid CDR for the expected type (truncated, bad length, bad text)."""


class CdrReader:
    """Reads primitives from one CDR payload, tracking the byte offset of each value."""

    __slots__ = ("_f32", "_f64", "_i32", "_u32", "_u64", "data", "endian", "maxalign", "pos")

    def __init__(self, data: bytes) -> None:
        if len(data) < HEADER_SIZE:
            raise CdrError(f"payload of {len(data)} bytes has no encapsulation header")
        try:
            self.endian, self.maxalign = _ENCAPSULATIONS[bytes(data[:2])]
        except KeyError:
            raise CdrError(f"unsupported encapsulation {bytes(data[:2]).hex()}") from None
        self.data = data
        self.pos = HEADER_SIZE
        self._i32 = struct.Struct(self.endian + "i")
        self._u32 = struct.Struct(self.endian + "I")
        self._f64 = struct.Struct(self.endian + "d")
        self._f32 = struct.Struct(self.endian + "f")
        self._u64 = struct.Struct(self.endian + "Q")

    def align(self, size: int) -> None:
        """Skip padding so the next ``size``-byte primitive is aligned."""
        size = min(size, self.maxalign)
        rem = (self.pos - HEADER_SIZE) % size
        if rem:
            self.pos += size - rem

    def _take(self, n: int) -> int:
        start = self.pos
        if n < 0 or start + n > len(self.data):
            raise CdrError(f"truncated payload: need {n} bytes at offset {start}, "
                           f"have {len(self.data) - start}")
        self.pos = start + n
        return start

    def int32(self) -> int:
        """Read an int32."""
        self.align(4)
        return int(self._i32.unpack_from(self.data, self._take(4))[0])

    def uint32(self) -> int:
        """Read a uint32."""
        self.align(4)
        return int(self._u32.unpack_from(self.data, self._take(4))[0])

    def uint64(self) -> int:
        """Read a uint64."""
        self.align(8)
        return int(self._u64.unpack_from(self.data, self._take(8))[0])

    def float32(self) -> float:
        """Read a float32."""
        self.align(4)
        return float(self._f32.unpack_from(self.data, self._take(4))[0])

    def uint8(self) -> int:
        """Read a uint8 (or an octet)."""
        return int(self.data[self._take(1)])

    def uint8s(self) -> bytes:
        """Read a sequence of uint8."""
        n = self.sequence_length(1)
        start = self._take(n)
        return bytes(self.data[start:start + n])

    def float64(self) -> float:
        """Read a float64."""
        self.align(8)
        return float(self._f64.unpack_from(self.data, self._take(8))[0])

    def float64_at(self) -> tuple[float, int]:
        """Read a float64 and return it with its byte offset (for the vectorized path)."""
        self.align(8)
        offset = self._take(8)
        return float(self._f64.unpack_from(self.data, offset)[0]), offset

    def boolean(self) -> bool:
        """Read a bool (one byte that must be 0 or 1)."""
        value = self.data[self._take(1)]
        if value > 1:
            raise CdrError(f"bool byte {value} is neither 0 nor 1")
        return value == 1

    def string(self) -> str:
        """Read a NUL-terminated string with its uint32 length prefix."""
        n = self.uint32()
        if n == 0 or n > MAX_STRING:
            raise CdrError(f"string length {n} out of range")
        start = self._take(n)
        raw = bytes(self.data[start:start + n])
        if raw[-1] != 0:
            raise CdrError("string is not NUL-terminated")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as err:
            raise CdrError(f"string is not UTF-8: {err}") from None

    def sequence_length(self, element_size: int) -> int:
        """Read a sequence length and check the payload can hold that many elements."""
        n = self.uint32()
        if n * max(element_size, 1) > len(self.data) - self.pos:
            raise CdrError(f"sequence of {n} elements overruns the payload")
        return n

    def strings(self) -> list[str]:
        """Read a sequence of strings."""
        return [self.string() for _ in range(self.sequence_length(5))]

    def float64s(self) -> tuple[npt.NDArray[np.float64], int]:
        """Read a sequence of float64; return the values and the offset of the first one."""
        n = self.sequence_length(8)
        if n == 0:
            return np.empty(0, dtype=np.float64), self.pos
        self.align(8)
        start = self._take(8 * n)
        values = np.frombuffer(self.data, dtype=self.endian + "f8", count=n, offset=start)
        return values.astype(np.float64), start

    def stamp(self) -> tuple[int, int, int]:
        """Read a builtin_interfaces/Time; return (sec, nanosec, offset of sec)."""
        self.align(4)
        offset = self.pos
        return self.int32(), self.uint32(), offset


class CdrWriter:
    """Builds one little-endian plain-CDR (XCDR1) payload, as ROS 2 publishers do."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray(b"\x00\x01\x00\x00")

    def align(self, size: int) -> None:
        """Pad with zeros so the next ``size``-byte primitive is aligned."""
        rem = (len(self.buf) - HEADER_SIZE) % size
        if rem:
            self.buf.extend(b"\x00" * (size - rem))

    def int32(self, value: int) -> None:
        """Write an int32."""
        self.align(4)
        self.buf.extend(struct.pack("<i", value))

    def uint32(self, value: int) -> None:
        """Write a uint32."""
        self.align(4)
        self.buf.extend(struct.pack("<I", value))

    def float64(self, value: float) -> None:
        """Write a float64."""
        self.align(8)
        self.buf.extend(struct.pack("<d", value))

    def uint64(self, value: int) -> None:
        """Write a uint64."""
        self.align(8)
        self.buf.extend(struct.pack("<Q", value))

    def float32(self, value: float) -> None:
        """Write a float32."""
        self.align(4)
        self.buf.extend(struct.pack("<f", value))

    def uint8(self, value: int) -> None:
        """Write a uint8."""
        self.buf.append(value & 0xFF)

    def uint8s(self, values: bytes) -> None:
        """Write a sequence of uint8."""
        self.uint32(len(values))
        self.buf.extend(values)

    def boolean(self, value: bool) -> None:
        """Write a bool."""
        self.buf.append(1 if value else 0)

    def string(self, value: str) -> None:
        """Write a string (length includes the NUL terminator)."""
        raw = value.encode("utf-8") + b"\x00"
        self.uint32(len(raw))
        self.buf.extend(raw)

    def strings(self, values: list[str] | tuple[str, ...]) -> None:
        """Write a sequence of strings."""
        self.uint32(len(values))
        for value in values:
            self.string(value)

    def float64s(self, values: npt.ArrayLike) -> None:
        """Write a sequence of float64."""
        arr = np.ascontiguousarray(values, dtype="<f8").reshape(-1)
        self.uint32(arr.shape[0])
        if arr.shape[0]:
            self.align(8)
            self.buf.extend(arr.tobytes())

    def stamp(self, stamp_ns: int) -> None:
        """Write a builtin_interfaces/Time from integer nanoseconds since the epoch."""
        sec, nanosec = divmod(stamp_ns, 1_000_000_000)
        self.int32(sec)
        self.uint32(nanosec)

    def header(self, stamp_ns: int, frame_id: str) -> None:
        """Write a std_msgs/Header."""
        self.stamp(stamp_ns)
        self.string(frame_id)

    def payload(self) -> bytes:
        """Return the payload, padded to a multiple of 4 bytes like Cyclone DDS writers do."""
        pad = (-len(self.buf)) % 4
        return bytes(self.buf) + b"\x00" * pad
