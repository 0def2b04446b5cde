"""What runs on a SPDY session: the kubelet's side of `kubectl port-forward` and `kubectl exec`.

Port-forward (protocol `portforward.k8s.io`): for each local connection kubectl opens an
`error` stream (and half-closes it at once) and a `data` stream, both with the headers `port`
and `requestid`. We connect to what plays the container port and copy bytes both ways. When
the target closes, the data stream gets a FIN; the error stream always gets a FIN too, since
kubectl waits for it. Text written on the error stream makes kubectl drop the whole tunnel, as
a kubelet does for a refused port.

Exec (protocols `v4.channel.k8s.io` down to `channel.k8s.io`): kubectl opens `error`,
`stdout`, `stderr` and, with `-i`, `stdin` streams. Once all expected streams exist the command
runs as a local process (no shell, no TTY, binary streams), with the container's environment.
The exit status goes on the error stream: a `Status` object (v4) or plain text (older).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from tests.kubeapi.spdy import Session, Stream

Connect = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
EXEC_PROTOCOLS = ["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"]
CHUNK = 1 << 16


# -- port-forward --------------------------------------------------------------------------------


async def serve_portforward(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connect: Connect, describe: str
) -> None:
    """Serve kubectl's port-forward streams until it disconnects."""
    pairs: dict[str, dict[str, Stream]] = {}

    async def on_stream(stream: Stream) -> None:
        request = stream.headers.get("requestid", "")
        pair = pairs.setdefault(request, {})
        pair[stream.headers.get("streamtype", "")] = stream
        if stream.headers.get("streamtype") == "data":
            error = pair.get("error")
            await _forward(stream, error, connect, describe)

    session = Session(reader, writer, on_stream)
    await session.run()


async def _forward(data: Stream, error: Stream | None, connect: Connect, describe: str) -> None:
    port = int(data.headers.get("port", "0"))
    try:
        target_reader, target_writer = await connect(port)
    except OSError as exc:
        if error is not None:
            await error.write(
                f"an error occurred forwarding {port} -> {port}: error forwarding port {port} "
                f"to pod {describe}: failed to connect to localhost:{port}: {exc}".encode()
            )
            await error.close()
        await data.close()
        return

    async def upstream() -> None:  # kubectl -> target
        while chunk := await data.read():
            target_writer.write(chunk)
            await target_writer.drain()
        with contextlib.suppress(OSError):
            if target_writer.can_write_eof():
                target_writer.write_eof()

    async def downstream() -> None:  # target -> kubectl
        while chunk := await target_reader.read(CHUNK):
            await data.write(chunk)
        await data.close()

    up, down = asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())
    try:
        await down
        up.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await up
    except (OSError, asyncio.CancelledError):
        up.cancel()
        down.cancel()
    finally:
        target_writer.close()
        with contextlib.suppress(OSError):
            await target_writer.wait_closed()
        if error is not None:
            await error.close()


# -- exec ----------------------------------------------------------------------------------------


async def serve_exec(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    protocol: str,
    command: list[str],
    env: dict[str, str],
    stdin: bool,
    stdout: bool,
    stderr: bool,
) -> None:
    """Run `command` once kubectl opened its streams; report its exit status."""
    expected = {"error"} | {
        name for name, on in (("stdin", stdin), ("stdout", stdout), ("stderr", stderr)) if on
    }
    streams: dict[str, Stream] = {}
    ready = asyncio.Event()

    async def on_stream(stream: Stream) -> None:
        streams[stream.headers.get("streamtype", "")] = stream
        if expected <= streams.keys():
            ready.set()

    session = Session(reader, writer, on_stream)
    runner = asyncio.ensure_future(session.run())
    try:
        waiter = asyncio.ensure_future(ready.wait())
        await asyncio.wait({waiter, runner}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if ready.is_set():
            await _run(streams, protocol, command, env, runner)
    finally:
        writer.close()
        await runner


async def _run(
    streams: dict[str, Stream],
    protocol: str,
    command: list[str],
    env: dict[str, str],
    session: asyncio.Future[None],
) -> None:
    try:
        proc = await asyncio.create_subprocess_exec(
            *command,
            env=env,
            stdin=asyncio.subprocess.PIPE if "stdin" in streams else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        # What a container runtime prints (on the process's output) before exit code 126.
        message = (
            f"OCI runtime exec failed: exec failed: unable to start container process: "
            f'exec: "{command[0]}": {exc.strerror}: unknown\r\n'
        )
        output = streams.get("stdout") or streams.get("stderr")
        if output is not None:
            await output.write(message.encode())
        await _report(streams, protocol, 126, message.strip())
        return

    async def feed() -> None:
        assert proc.stdin is not None
        try:
            while chunk := await streams["stdin"].read():
                proc.stdin.write(chunk)
                await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with contextlib.suppress(OSError):
                proc.stdin.close()

    async def pump(source: asyncio.StreamReader | None, name: str) -> None:
        assert source is not None
        target = streams.get(name)
        while chunk := await source.read(CHUNK):
            if target is not None:
                await target.write(chunk)
        if target is not None:
            await target.close()

    pumps = [
        asyncio.ensure_future(pump(proc.stdout, "stdout")),
        asyncio.ensure_future(pump(proc.stderr, "stderr")),
    ]
    feeder = asyncio.ensure_future(feed()) if "stdin" in streams else None
    work: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(proc.wait(), *pumps))
    try:
        await asyncio.wait({work, session}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not work.done():  # kubectl went away: nothing may outlive the session
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            work.cancel()
        if feeder is not None:
            feeder.cancel()
    if session.done():
        return
    code = proc.returncode or 0
    await _report(
        streams,
        protocol,
        code,
        f"command terminated with non-zero exit code: error executing command "
        f"{command}, exit code {code}",
    )


async def _report(streams: dict[str, Stream], protocol: str, code: int, message: str) -> None:
    error = streams["error"]
    for name in ("stdout", "stderr"):
        if name in streams:
            await streams[name].close()
    if protocol == "v4.channel.k8s.io":
        status: dict[str, object] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
        }
        if code:
            status.update(
                {
                    "status": "Failure",
                    "message": message,
                    "reason": "NonZeroExitCode",
                    "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
                }
            )
        await error.write(json.dumps(status).encode())
    elif code:
        await error.write(message.encode())
    await error.close()
