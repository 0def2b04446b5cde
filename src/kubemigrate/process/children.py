"""Child processes: starting them, streaming their output, keeping the tail of their stderr,
and stopping them on every way out.

Every program kubemigrate runs starts here, through `sh`: kubectl (lookups, port-forward, exec,
apply, rollout status), pg_dump, pg_restore, squawk, initdb, pg_ctl and a child Alembic. Four
shapes cover them:

- `run`: a short program; waits, returns its exit code, output and stderr;
- `stream`: a program whose output is data (pg_dump), copied to a sink in large chunks, with
  standard input fed from an iterator (a restore's file);
- `pipe`: one program's output, changed on the way, fed to another (pg_restore's SQL to psql);
- `start_relayed`: a program whose output is the user's (a child Alembic), passed through as it
  comes, told when to go on its standard input;
- `start`: a program that keeps running (port-forward), its lines handed to callbacks; `stop`
  ends it.

A child gets only the environment it is given (`env`, else this process's), so a password
reaches the one child that needs it.

An error raised where a child's output is handed on reaches the thread that waits for the
child (`kubemigrate.process.output`). Ctrl-C or SIGTERM while a task waits for a child, or any
other error, stops that child before the exception goes on; a child started with
`die_with_parent` also gets SIGTERM from the kernel should this process be killed outright.
`stopped_on_failure` does the same for children started side by side from worker threads.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from kubemigrate.process.output import (
    STOP_TIMEOUT,
    Finished,
    Output,
    Relay,
    RelayedTail,
    Tail,
)

if TYPE_CHECKING:
    import sh

CHUNK = 1 << 20
PR_SET_PDEATHSIG = 1
ANY_EXIT = list(range(256))  # the caller judges the exit code, sh does not

_live: dict[int, sh.RunningCommand] = {}
_numbers = itertools.count()
_lock = threading.Lock()


def plain_environ(secrets: Iterable[str]) -> dict[str, str]:
    """This process's environment without libpq's variables and without the secret settings
    (DATABASE_URL, KUBEMIGRATE_DB_PASSWORD) a user may have exported: a child that needs a
    password is given it explicitly. The caller names the secret variables (`secrets`)."""
    hidden = set(secrets)
    return {k: v for k, v in os.environ.items() if not k.startswith("PG") and k not in hidden}


def run(
    program: sh.Command,
    *args: str,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    timeout: float | None = None,
    preexec: Callable[[], None] | None = None,
    new_session: bool = False,
    input: bytes | None = None,
) -> Finished:
    """Run a short program to its end (`input` on its standard input); its exit code, output
    and stderr's tail."""
    errors = Tail()
    process = _spawn(
        program,
        args,
        _in=input,
        _env=env,
        _cwd=cwd,
        _timeout=timeout,
        _err=errors,
        _preexec_fn=preexec or die_with_parent,
        _new_session=new_session,
    )
    code = _wait(process)
    data = bytes(process.stdout) if code is not None else b""
    return Finished(code, data.decode(errors="replace"), errors, data=data)


def stream(
    program: sh.Command,
    *args: str,
    sink: Callable[[bytes], None] | None = None,
    stdin: Iterable[bytes] | None = None,
    env: dict[str, str] | None = None,
) -> Finished:
    """Run a program whose output is data: copy it to `sink` in large chunks, feed it `stdin`."""
    errors = Tail()
    relay = Relay()
    output = Output(sink, relay)
    process = relay.attach(_start_data(program, args, output, errors, env, stdin))
    code = _wait(process)
    relay.check()
    return Finished(code, errors=errors, bytes=output.count)


def _start_data(
    program: sh.Command,
    args: tuple[str, ...],
    output: Output,
    errors: Tail,
    env: dict[str, str] | None,
    stdin: Iterable[bytes] | None = None,
) -> sh.RunningCommand:
    """Start a program whose output is data, written to `output` in large chunks."""
    return _spawn(
        program,
        args,
        _in=stdin,
        _out=cast(IO[bytes], output),  # a raw binary file, to sh
        _out_bufsize=CHUNK,
        _no_out=True,
        _err=errors,
        _no_err=True,
        _env=env,
        _new_session=True,
        _preexec_fn=die_with_parent,
    )


def pipe(
    producer: tuple[sh.Command, list[str], dict[str, str]],
    consumer: tuple[sh.Command, list[str], dict[str, str]],
    *,
    change: Callable[[bytes], bytes],
    first: bytes = b"",
    last: bytes = b"",
) -> tuple[Finished, Finished]:
    """Feed `producer`'s output, passed through `change` chunk by chunk, to `consumer`'s
    standard input, between `first` and `last`; each is (program, arguments, environment).
    How each ended.

    `last` is written only when the producer succeeded; otherwise, and on Ctrl-C, SIGTERM or
    any error (`change` raising one included), the consumer is stopped before its input ends,
    so that it never sees an input that merely looks complete. A consumer that fails first
    stops the producer: nothing hangs on a pipe nobody reads.
    """
    feed: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
    if first:
        feed.put(first)
    program, args, env = consumer
    consumer_errors, producer_errors = Tail(), Tail()
    reader = _spawn(
        program,
        tuple(args),
        _in=iter(feed.get, None),
        _out=lambda _: None,
        _err=consumer_errors,
        _env=env,
        _new_session=True,
        _preexec_fn=die_with_parent,
    )
    writers: list[sh.RunningCommand] = []

    def sink(chunk: bytes) -> None:  # in sh's output thread: it must not raise
        data = change(chunk)
        while reader.is_alive():
            with suppress(queue.Full):
                feed.put(data, timeout=0.1)
                return
        for writer in writers:  # the consumer failed: stop the producer too
            with suppress(OSError):
                writer.terminate()

    relay = Relay()
    output = Output(sink, relay)
    program, args, env = producer
    try:
        writer = relay.attach(_start_data(program, tuple(args), output, producer_errors, env))
        writers.append(writer)
        produced = Finished(_wait(writer), errors=producer_errors, bytes=output.count)
        relay.check()
        if not produced.ok:
            stop(reader)
        _end(feed, reader, last if produced.ok else b"")
    except BaseException:
        stop(reader)
        _end(feed, reader, b"")
        raise
    return produced, Finished(_wait(reader), errors=consumer_errors)


def _end(feed: queue.Queue[bytes | None], reader: sh.RunningCommand, last: bytes) -> None:
    """Put `last` (if any) and the end of input on `feed`: waiting while `reader` reads it,
    discarding what is left once it has gone."""
    for item in [last, None] if last else [None]:
        while True:
            try:
                feed.put(item, timeout=0.1)
                break
            except queue.Full:
                if not reader.is_alive():
                    with suppress(queue.Empty):
                        feed.get_nowait()


def start_relayed(
    program: sh.Command,
    *args: str,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    stdin: queue.Queue[bytes | None] | None = None,
) -> tuple[sh.RunningCommand, Tail]:
    """Start a program whose output is the user's (a child Alembic's progress lines, or its
    SQL): its output and stderr pass through to this process's as they come; its standard
    input is fed from `stdin` (None in the queue ends it). In its own session: a Ctrl-C meant
    for the task reaches the task, which then stops it in order. `finished` waits for it, and
    raises a failure to pass its output on (a closed or full standard output)."""
    relay = Relay()
    errors = RelayedTail(relay)

    def on_out(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    def on_err(text: str) -> None:
        errors(text)
        sys.stderr.write(text)
        sys.stderr.flush()

    process = _spawn(
        program,
        args,
        _in=stdin,
        _out=relay.guard(on_out),
        _err=relay.guard(on_err),
        _env=env,
        _cwd=cwd,
        _new_session=True,
        _preexec_fn=die_with_parent,
    )
    return relay.attach(process), errors


def finished(process: sh.RunningCommand, errors: Tail) -> Finished:
    """Wait for a child `start_relayed` started (stopping it on Ctrl-C, SIGTERM or any error);
    a failure to pass its output on is a `KubemigrateError` (the child was stopped)."""
    from kubemigrate.errors import KubemigrateError, reason

    code = _wait(process)
    if isinstance(errors, RelayedTail):
        try:
            errors.relay.check()
        except OSError as exc:
            raise KubemigrateError(
                f"cannot pass on the output of {Path(str(process.cmd[0])).name}: "
                f"{reason(exc)}; it was stopped"
            ) from None
    return Finished(code, errors=errors)


def start(
    program: sh.Command,
    *args: str,
    on_out: Callable[[str], None],
    on_err: Callable[[str], None],
    on_exit: Callable[[], None],
) -> sh.RunningCommand:
    """Start a program that keeps running, in its own session (a Ctrl-C meant for the task
    reaches the task alone, which then stops it in order); `stop` ends it. Should `on_out` or
    `on_err` raise, the program is stopped (and `on_exit` called) instead of a thread's
    traceback being printed."""
    relay = Relay()
    process = _spawn(
        program,
        args,
        _out=relay.guard(on_out),
        _err=relay.guard(on_err),
        _done=lambda *_: on_exit(),
        _new_session=True,
        _preexec_fn=die_with_parent,
    )
    return relay.attach(process)


def stop(process: sh.RunningCommand, grace: float = STOP_TIMEOUT) -> None:
    """End a child: SIGTERM, then SIGKILL after `grace` seconds; waits for it."""
    if not process.is_alive():
        return
    with suppress(OSError):
        process.terminate()
    if not exited(process, grace):
        with suppress(OSError):
            process.kill()
        exited(process, grace)


def stop_all(processes: list[sh.RunningCommand], grace: float = STOP_TIMEOUT) -> None:
    """`stop` for several children: all are sent SIGTERM at once, then awaited."""
    alive = [process for process in processes if process.is_alive()]
    for process in alive:
        with suppress(OSError):
            process.terminate()
    for process in alive:
        stop(process, grace)


def exited(process: sh.RunningCommand, within: float) -> bool:
    """Whether the child has exited, waiting up to `within` seconds (none: it is only asked;
    sh's own wait would sleep a tenth of a second even then)."""
    import sh

    if within <= 0 and process.is_alive():
        return False
    try:
        process.wait(timeout=within)
    except sh.TimeoutException:
        return False
    except (sh.ErrorReturnCode, sh.SignalException):
        pass
    return True


@contextmanager
def stopped_on_failure() -> Iterator[None]:
    """Children started inside the block, from any thread, are stopped if the block fails
    (an error, Ctrl-C, SIGTERM), so lookups run side by side end with it."""
    first = next(_numbers)
    try:
        yield
    except BaseException:
        with _lock:
            started = [p for number, p in _live.items() if number > first]
        for process in started:
            stop(process)
        raise


def die_with_parent() -> None:
    """In the child: ask the kernel to send SIGTERM when the parent dies (Linux only).

    The kernel watches the *thread* that forked the child: a child started from a thread that
    ends would be killed at once, so long-lived children start from the main thread."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


# -- internals ------------------------------------------------------------------------------------


def _spawn(program: sh.Command, args: tuple[str, ...], **options: Any) -> sh.RunningCommand:
    process = program(
        *args,
        _bg=True,
        _bg_exc=False,
        _tty_out=False,
        _ok_code=ANY_EXIT,
        _decode_errors="replace",
        **options,
    )
    number = next(_numbers)
    with _lock:
        _live[number] = process
        for known in [n for n, p in _live.items() if not p.is_alive()]:
            del _live[known]
    return process


def _wait(process: sh.RunningCommand) -> int | None:
    """Wait for a child; its exit code (negative: killed by a signal; None: timed out). Any
    exception while waiting (Ctrl-C, SIGTERM) stops it first."""
    import sh

    try:
        process.wait()
    except sh.TimeoutException:
        return None
    except sh.SignalException as exc:
        return int(exc.exit_code)
    except BaseException:
        stop(process)
        raise
    return int(process.exit_code or 0)
