"""SPDY/3.1 framing and sessions, without kubectl: a small client built from the same codec talks
to a `Session` over a socket pair."""

import asyncio
import socket
import struct
import zlib

from tests.kubeapi.spdy import (
    DICTIONARY,
    FLAG_FIN,
    PING,
    SYN_REPLY,
    SYN_STREAM,
    HeaderCodec,
    Session,
    Stream,
    control_frame,
    data_frame,
    decode_headers,
    encode_headers,
    read_frame,
)


def test_dictionary_is_the_specified_one() -> None:
    # SPDY/3 section 2.6.10.1: 1423 bytes; kubectl's zlib header names its Adler-32.
    assert len(DICTIONARY) == 1423
    assert zlib.adler32(DICTIONARY) == 0xE3C6A7C2
    assert DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert DICTIONARY.endswith(b",enq=0.")


def test_header_block_round_trip() -> None:
    headers = {"streamtype": "data", "port": "5432", "requestid": "0"}
    assert decode_headers(encode_headers(headers)) == headers


def test_one_compression_context_per_direction() -> None:
    client, server = HeaderCodec(), HeaderCodec()
    blocks = [{"streamtype": "error", "requestid": str(i)} for i in range(5)]
    packed = [client.pack(b) for b in blocks]
    # Later blocks refer back to earlier ones: they only decode in order, in one context.
    assert len(packed[-1]) < len(packed[0])
    assert [
        server.decompressor and client and HeaderCodec.unpack(server, p) for p in packed
    ] == blocks


def test_frame_layout() -> None:
    frame = control_frame(SYN_REPLY, FLAG_FIN, b"\x00\x00\x00\x05")
    assert frame[:2] == b"\x80\x03" and frame[2:4] == b"\x00\x02"
    assert frame[4] == FLAG_FIN and frame[5:8] == b"\x00\x00\x04"
    data = data_frame(7, 0, b"abc")
    assert struct.unpack(">II", data[:8]) == (7, 3)


async def _client(sock: socket.socket) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(sock=sock)


def test_session_streams_echo_and_ping() -> None:
    async def scenario() -> None:
        left, right = socket.socketpair()
        server_reader, server_writer = await asyncio.open_connection(sock=left)
        reader, writer = await _client(right)

        async def echo(stream: Stream) -> None:
            while chunk := await stream.read():
                await stream.write(chunk.upper())
            await stream.close()

        session = Session(server_reader, server_writer, echo)
        runner = asyncio.ensure_future(session.run())
        codec = HeaderCodec()
        for stream_id in (1, 3):
            payload = struct.pack(">IIH", stream_id, 0, 0) + codec.pack({"streamtype": "data"})
            writer.write(control_frame(SYN_STREAM, 0, payload))
        writer.write(data_frame(1, 0, b"hello "))
        writer.write(data_frame(3, FLAG_FIN, b"other"))
        writer.write(data_frame(1, FLAG_FIN, b"world"))
        writer.write(control_frame(PING, 0, struct.pack(">I", 1)))
        await writer.drain()

        received: dict[int, bytes] = {1: b"", 3: b""}
        finished: set[int] = set()
        replies, pings = 0, 0
        while len(finished) < 2 or pings < 1:
            frame = await asyncio.wait_for(read_frame(reader), 5)
            assert frame is not None
            if frame.control and frame.kind == SYN_REPLY:
                codec.unpack(frame.payload[4:])
                replies += 1
            elif frame.control and frame.kind == PING:
                pings += 1
            elif not frame.control:
                received[frame.stream_id] += frame.payload
                if frame.flags & FLAG_FIN:
                    finished.add(frame.stream_id)
        assert replies == 2
        assert received == {1: b"HELLO WORLD", 3: b"OTHER"}
        writer.close()
        await asyncio.wait_for(runner, 5)

    asyncio.run(scenario())
