"""Unit tests of the one module that starts children: exit codes, output, the stderr tail, and
children stopped on every way out (no cluster or database needed)."""

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from kubemigrate.process import children, output, programs

SH = programs.command("sh")


def test_run_returns_code_output_and_the_telling_stderr_line() -> None:
    done = children.run(SH, "-c", "echo out; echo 'warning: x' >&2; echo 'error: bad' >&2; exit 3")
    assert done.code == 3 and not done.ok
    assert done.output == "out\n"
    assert done.errors.summary() == "error: bad"
    assert done.describe("the thing") == "the thing failed (exit code 3): error: bad"


def test_run_times_out() -> None:
    done = children.run(SH, "-c", "exec sleep 30", timeout=0.2)
    assert done.code is None
    assert done.describe("sleep") == "sleep did not finish in time"


def test_the_child_gets_only_the_environment_it_is_given() -> None:
    done = children.run(SH, "-c", 'echo "${SECRET-unset}"', env={"PATH": "/usr/bin:/bin"})
    assert done.output == "unset\n"
    given = children.run(SH, "-c", 'echo "$SECRET"', env={"SECRET": "s3", "PATH": "/bin"})
    assert given.output == "s3\n"


def test_stream_copies_binary_output_and_feeds_stdin() -> None:
    received: list[bytes] = []
    data = bytes(range(256)) * 4096  # 1 MiB with every byte value, newlines included
    done = children.stream(
        SH, "-c", "cat", sink=received.append, stdin=iter([data[:10], data[10:]])
    )
    assert done.ok and done.bytes == len(data)
    assert b"".join(received) == data


def test_the_tail_keeps_the_last_lines() -> None:
    tail = output.Tail(keep=3)
    for number in range(10):
        tail(f"line {number}\n")
    tail("   \n")
    assert tail.lines == ["line 7", "line 8", "line 9"]
    assert output.Tail().summary() == "no message"


def test_children_started_side_by_side_stop_when_the_block_fails() -> None:
    started = time.monotonic()
    with (
        pytest.raises(RuntimeError),
        ThreadPoolExecutor(max_workers=1) as pool,
        children.stopped_on_failure(),
    ):
        waiting = pool.submit(children.run, SH, "-c", "exec sleep 30")
        time.sleep(0.3)  # the sleep is running in the worker thread
        raise RuntimeError("a lookup failed")
    assert waiting.result().code not in (0, None)  # stopped, not finished
    assert time.monotonic() - started < 10


def test_an_interrupt_while_waiting_stops_the_child() -> None:
    def interrupt_soon() -> None:
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C

    threading.Thread(target=interrupt_soon).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        children.run(SH, "-c", "exec sleep 30")
    assert time.monotonic() - started < 10
