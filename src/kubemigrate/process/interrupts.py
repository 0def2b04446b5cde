"""How a task stops when asked to: Ctrl-C (SIGINT) and SIGTERM.

Both unwind the task like an exception: open transactions roll back, context managers close
the tunnel, and the task exits with 130 (SIGINT) or 143 (SIGTERM).

A statement running in PostgreSQL would otherwise ignore the signal: psycopg2's blocking calls
retry when a signal interrupts them. So connections use `wait`, a psycopg2 wait callback that
polls the socket itself; on an interrupt it asks the server to cancel the statement, waits for
the cancellation, and re-raises the interrupt. Its connect phase is bounded too, since libpq's
`connect_timeout` does not apply to connections driven this way.
"""

from __future__ import annotations

import select
import signal
import threading
import time
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered as an interrupt so that it unwinds exactly like Ctrl-C."""

    exit_code = 143


def install_signal_handlers() -> None:
    """Make SIGTERM raise `Terminated` in the main thread (once; only if nobody else chose)."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_terminated)


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


CONNECT_TIMEOUT = 10.0


def use_interruptible_waits(connect_timeout: float) -> None:
    """Drive every psycopg2 connection of this process through `wait`."""
    import psycopg2.extensions

    global CONNECT_TIMEOUT
    CONNECT_TIMEOUT = connect_timeout
    psycopg2.extensions.set_wait_callback(wait)


def wait(conn: Any) -> None:
    """psycopg2 wait callback: poll until done; cancel the statement on an interrupt."""
    import psycopg2
    import psycopg2.extensions as ext

    connecting = conn.status == ext.STATUS_SETUP
    deadline = time.monotonic() + CONNECT_TIMEOUT if connecting else None
    interrupt: KeyboardInterrupt | None = None
    while True:
        try:
            state = conn.poll()
            if state == ext.POLL_OK:
                break
            fd = conn.fileno()
            readers, writers = ([fd], []) if state == ext.POLL_READ else ([], [fd])
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            if select.select(readers, writers, [], timeout) == ([], [], []):
                raise psycopg2.OperationalError("timeout expired")
        except KeyboardInterrupt as exc:
            if connecting or interrupt is not None:
                raise
            interrupt = exc
            conn.cancel()
        except psycopg2.extensions.QueryCanceledError:
            if interrupt is None:
                raise
            break
    if interrupt is not None:
        raise interrupt
