"""SPDY/3.1, the framing kubectl uses for `port-forward` and `exec` after an HTTP upgrade.

Frames (all integers big-endian):
- control: 1 bit set, 15 bits version (3), 16 bits type, 8 bits flags, 24 bits length, payload;
- data: 1 bit clear, 31 bits stream id, 8 bits flags (FIN = 1), 24 bits length, payload.

Header blocks (SYN_STREAM, SYN_REPLY, HEADERS) are a count of name/value pairs, each a 32-bit
length and bytes, compressed with zlib using a dictionary fixed by the SPDY/3 specification.
There is ONE compression context per direction for the whole connection, flushed with
Z_SYNC_FLUSH after each block: every incoming block must be decompressed, in order, or the
context goes out of step.

`Session` serves one upgraded connection: the client opens streams (SYN_STREAM), each is
answered with a SYN_REPLY and handed to a callback; data flows both ways; either side
half-closes with FIN. kubectl's spdystream does no flow control, so WINDOW_UPDATE is ignored;
incoming data is queued per stream with a bound, and a full queue stops the reading of the
socket (backpressure).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS = 1, 2, 3, 4
PING, GOAWAY, HEADERS, WINDOW_UPDATE = 6, 7, 8, 9
FLAG_FIN = 0x01
MAX_DATA = 1 << 16  # what we put in one DATA frame
QUEUE_LIMIT = 64  # frames buffered per stream before reading pauses


_WORDS = """
options head post put delete trace accept accept-charset accept-encoding accept-language
accept-ranges age allow authorization cache-control connection content-base content-encoding
content-language content-length content-location content-md5 content-range content-type date
etag expect expires from host if-match if-modified-since if-none-match if-range
if-unmodified-since last-modified location max-forwards pragma proxy-authenticate
proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade
user-agent vary via warning www-authenticate method get status
version HTTP/1.1 url public set-cookie keep-alive origin
""".split()
_WORDS.insert(_WORDS.index("status") + 1, "200 OK")  # the one entry with a space
_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417"
    "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
    "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
    "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct "
    "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,"
    "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,"
    "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)


def _dictionary() -> bytes:
    """The SPDY/3 header dictionary: length-prefixed words, then a run of common values."""
    prefixed = b"".join(struct.pack(">I", len(word)) + word.encode() for word in _WORDS)
    return prefixed + _TAIL.encode()


DICTIONARY = _dictionary()


# -- codec ---------------------------------------------------------------------------------------


def encode_headers(headers: dict[str, str]) -> bytes:
    """An uncompressed header block."""
    out = [struct.pack(">I", len(headers))]
    for name, value in headers.items():
        raw_name, raw_value = name.lower().encode(), value.encode()
        out += [
            struct.pack(">I", len(raw_name)),
            raw_name,
            struct.pack(">I", len(raw_value)),
            raw_value,
        ]
    return b"".join(out)


def decode_headers(block: bytes) -> dict[str, str]:
    """Parse an uncompressed header block (multiple values are NUL-separated; we keep them)."""
    (count,) = struct.unpack_from(">I", block, 0)
    offset, headers = 4, {}
    for _ in range(count):
        (size,) = struct.unpack_from(">I", block, offset)
        name = block[offset + 4 : offset + 4 + size].decode()
        offset += 4 + size
        (size,) = struct.unpack_from(">I", block, offset)
        value = block[offset + 4 : offset + 4 + size].decode()
        offset += 4 + size
        headers[name] = value
    return headers


class HeaderCodec:
    """The two zlib contexts of a connection (one per direction)."""

    def __init__(self) -> None:
        self.compressor = zlib.compressobj(zdict=DICTIONARY)
        self.decompressor = zlib.decompressobj(zdict=DICTIONARY)

    def pack(self, headers: dict[str, str]) -> bytes:
        data = self.compressor.compress(encode_headers(headers))
        return data + self.compressor.flush(zlib.Z_SYNC_FLUSH)

    def unpack(self, data: bytes) -> dict[str, str]:
        return decode_headers(self.decompressor.decompress(data))


def control_frame(kind: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload


def data_frame(stream_id: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">II", stream_id & 0x7FFFFFFF, (flags << 24) | len(payload)) + payload


@dataclass
class Frame:
    control: bool
    kind: int  # control type, or 0 for data
    flags: int
    stream_id: int
    payload: bytes


async def read_frame(reader: asyncio.StreamReader) -> Frame | None:
    """The next frame, or None at end of stream."""
    try:
        head = await reader.readexactly(8)
    except asyncio.IncompleteReadError:
        return None
    first, second = struct.unpack(">II", head)
    flags, length = second >> 24, second & 0xFFFFFF
    try:
        payload = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        return None
    if first & 0x80000000:
        kind = first & 0xFFFF
        stream_id = struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF if len(payload) >= 4 else 0
        return Frame(True, kind, flags, stream_id, payload)
    return Frame(False, 0, flags, first & 0x7FFFFFFF, payload)


# -- session -------------------------------------------------------------------------------------


@dataclass
class Stream:
    """One client-opened stream: its headers, an inbox, and ways to write and close."""

    session: Session
    id: int
    headers: dict[str, str]
    inbox: asyncio.Queue[bytes | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    remote_closed: bool = False
    local_closed: bool = False
    reset: bool = False

    async def read(self) -> bytes:
        """The next chunk from the client; b'' once it half-closed or reset the stream."""
        if self.remote_closed and self.inbox.empty():
            return b""
        chunk = await self.inbox.get()
        if chunk is None:
            self.remote_closed = True
            return b""
        return chunk

    async def write(self, data: bytes) -> None:
        for start in range(0, len(data), MAX_DATA):
            if self.local_closed or self.reset:
                return
            await self.session.send(data_frame(self.id, 0, data[start : start + MAX_DATA]))

    async def close(self) -> None:
        """Half-close our side (FIN)."""
        if not self.local_closed and not self.reset:
            self.local_closed = True
            await self.session.send(data_frame(self.id, FLAG_FIN, b""))


class Session:
    """A SPDY/3.1 server session on an upgraded connection."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_stream: Callable[[Stream], Awaitable[None]],
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.on_stream = on_stream
        self.codec = HeaderCodec()
        self.streams: dict[int, Stream] = {}
        self.lock = asyncio.Lock()
        self.closed = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    async def send(self, frame: bytes) -> None:
        if self.closed.is_set():
            return
        async with self.lock:
            try:
                self.writer.write(frame)
                await self.writer.drain()
            except (ConnectionError, RuntimeError):
                self.closed.set()

    async def run(self) -> None:
        """Read frames until the client goes away; then end every stream and handler."""
        try:
            while (frame := await read_frame(self.reader)) is not None:
                await self._dispatch(frame)
        except (ConnectionError, struct.error, zlib.error):
            pass
        finally:
            self.closed.set()
            for stream in self.streams.values():
                stream.reset = True
                with contextlib.suppress(asyncio.QueueFull):
                    stream.inbox.put_nowait(None)
            for task in list(self.tasks):
                task.cancel()
            if self.tasks:
                await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _dispatch(self, frame: Frame) -> None:
        if not frame.control:
            stream = self.streams.get(frame.stream_id)
            if stream is None:
                return
            if frame.payload:
                await stream.inbox.put(frame.payload)
            if frame.flags & FLAG_FIN:
                await stream.inbox.put(None)
            return
        if frame.kind == SYN_STREAM:
            headers = self.codec.unpack(frame.payload[10:])
            stream = Stream(self, frame.stream_id, headers)
            self.streams[stream.id] = stream
            reply = struct.pack(">I", stream.id) + self.codec.pack({})
            await self.send(control_frame(SYN_REPLY, 0, reply))
            if frame.flags & FLAG_FIN:
                await stream.inbox.put(None)
            task = asyncio.ensure_future(self.on_stream(stream))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        elif frame.kind in (SYN_REPLY, HEADERS):
            self.codec.unpack(frame.payload[4:])  # keep the context in step
        elif frame.kind == RST_STREAM:
            stream = self.streams.get(frame.stream_id)
            if stream is not None:
                stream.reset = True
                with contextlib.suppress(asyncio.QueueFull):
                    stream.inbox.put_nowait(None)
        elif frame.kind == PING:
            await self.send(control_frame(PING, 0, frame.payload))
        elif frame.kind == GOAWAY:
            raise ConnectionError("client sent GOAWAY")
