"""What a child process prints: the tail of its stderr, how it ended, and its output handed on
from `sh`'s output thread.

An error raised where a child's output is handed on (a full disk under a backup's sink, a closed
standard output under a relayed child) must not escape sh's output thread, where it would print
a thread's traceback and leave the child blocked on a pipe nobody reads: `Relay` keeps it, stops
the child (`halt`), and the thread that waits for the child raises it (`Relay.check`).
"""

from __future__ import annotations

import builtins
import io
import re
import signal
import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sh
    from _typeshed import ReadableBuffer

TAIL_LINES = 20
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL
ERROR_WORDS = re.compile(r"error|\bfatal\b|\bpanic\b", re.IGNORECASE)


class Tail:
    """The last lines of a child's stderr (an `sh` line callback)."""

    def __init__(self, keep: int = TAIL_LINES) -> None:
        self.keep = keep
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        text = line.strip()
        if text:
            self.lines = [*self.lines[-(self.keep - 1) :], text]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def summary(self) -> str:
        """The line that says what went wrong: the last one mentioning an error (or a FATAL or
        PANIC, as PostgreSQL's programs say), else the last."""
        useful = [line for line in self.lines if ERROR_WORDS.search(line)] or self.lines
        return useful[-1] if useful else "no message"


@dataclass
class Finished:
    """How a child ended: its exit code (None: killed at its timeout), output and stderr."""

    code: int | None
    output: str = ""
    errors: Tail = field(default_factory=Tail)
    bytes: int = 0  # `stream`: how much output went to the sink
    data: builtins.bytes = b""  # `run`: the output as the child wrote it

    @property
    def ok(self) -> bool:
        return self.code == 0

    def describe(self, what: str) -> str:
        """One line: `what` failed, with its exit code and the telling line of its stderr."""
        if self.code is None:
            return f"{what} did not finish in time"
        return f"{what} failed (exit code {self.code}): {self.errors.summary()}"


class Relay:
    """The first error raised where a child's output is handed on (in sh's output thread).

    It is kept for the thread that waits for the child (`check` raises it there) instead of
    escaping the output thread; the child is stopped at once, and what it still writes is read
    and dropped, so that it never blocks on a full pipe."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.process: sh.RunningCommand | None = None
        self._lock = threading.Lock()

    def attach(self, process: sh.RunningCommand) -> sh.RunningCommand:
        """The child whose output this relays (stopped at once if it failed already)."""
        with self._lock:
            self.process = process
            failed = self.error is not None
        if failed:
            halt(process)
        return process

    def fail(self, exc: BaseException) -> None:
        """Keep `exc` (the first one only) and stop the child."""
        with self._lock:
            first = self.error is None
            if first:
                self.error = exc
            process = self.process
        if first and process is not None:
            halt(process)

    def guard(self, callback: Callable[[str], None]) -> Callable[[str], bool]:
        """`callback` as an sh line callback that never raises: its error is kept (`fail`),
        and sh calls it no more (a callback returning True is done)."""

        def guarded(text: str) -> bool:
            if self.error is not None:
                return True
            try:
                callback(text)
            except BaseException as exc:  # in sh's output thread: it must not raise
                self.fail(exc)
                return True
            return False

        return guarded

    def check(self) -> None:
        """Raise the error kept, if any (in the thread that waited for the child)."""
        if self.error is not None:
            raise self.error


class RelayedTail(Tail):
    """The stderr tail of a child `start_relayed` started, with the relay of its output."""

    def __init__(self, relay: Relay) -> None:
        super().__init__()
        self.relay = relay


def halt(process: sh.RunningCommand) -> None:
    """Stop a child from a thread that must not wait for it: SIGTERM now, SIGKILL after
    STOP_TIMEOUT should it still run. Children whose output is relayed lead a session of their
    own: the signal goes to their whole process group (a shell's pipeline with them)."""

    def kill_if_alive() -> None:
        if process.is_alive():
            with suppress(OSError):
                process.kill_group()

    with suppress(OSError):
        process.signal_group(signal.SIGTERM)
    timer = threading.Timer(STOP_TIMEOUT, kill_if_alive)
    timer.daemon = True
    timer.start()


class Output(io.RawIOBase):
    """Where sh writes a child's output: as raw bytes (being a file), counted, to `sink`. An
    error the sink raises goes to `relay`; what comes after it is dropped."""

    def __init__(self, sink: Callable[[bytes], None] | None, relay: Relay) -> None:
        super().__init__()
        self.sink = sink
        self.relay = relay
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, chunk: ReadableBuffer) -> int:
        data = bytes(chunk)
        if self.relay.error is not None:
            return len(data)
        self.count += len(data)
        if self.sink is not None:
            try:
                self.sink(data)
            except BaseException as exc:  # in sh's output thread: it must not raise
                self.relay.fail(exc)
        return len(data)
