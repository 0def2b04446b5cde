"""PostgreSQL's client programs (pg_dump, pg_restore) run locally or inside the database pod.

Credentials never appear in a command line:
- locally, the one child gets them in its environment (PGHOST, PGUSER, PGPASSWORD...);
- in the pod (`kubectl exec -i`), a tiny shell script reads the password from the first line
  of its standard input and exports it to pg_dump / pg_restore alone; user, database and port
  are plain arguments.

`stream` runs a local program and `exec_stream` a `kubectl exec` (through sh, as every kubectl
call is); both copy the program's output to a sink in large chunks and kill it on any way out.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, cast

from kubemigrate.embedded import program
from kubemigrate.errors import KubemigrateError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer
    from sqlalchemy import URL

    from kubemigrate.kube import Kubectl

CHUNK = 1 << 20
APPLICATION_NAME = "kubemigrate"
# In the pod: $1 program, $2 user, $3 database; the password is stdin's first line. Host and
# port are the container's own (its PGHOST/PGPORT, else the local socket and 5432).
POD_SCRIPT = (
    'IFS= read -r PGPASSWORD; export PGPASSWORD PGUSER="$2" PGDATABASE="$3" '
    'PGAPPNAME=kubemigrate; p="$1"; shift 3; exec "$p" "$@"'
)


class ClientError(KubemigrateError):
    """pg_dump or pg_restore failed."""


@dataclass(frozen=True)
class Client:
    """Where pg_dump / pg_restore run, and how they reach the database."""

    url: URL
    kubectl: Kubectl | None = None  # set: run in the pod
    pod: str | None = None
    container: str | None = None
    binaries: Path | None = None  # local: directory of the programs

    @property
    def where(self) -> str:
        if self.kubectl is not None:
            return f"in pod {self.pod} ({self.kubectl.where})"
        return f"locally ({self.binaries})"

    def command(self, name: str, *args: str) -> list[str]:
        """The command line that runs program `name` with `args` (no secret in it)."""
        if self.kubectl is None:
            assert self.binaries is not None
            return [str(self.binaries / name), *args]
        return [*self.kubectl.argv(), *self._exec_args(name, *args)]

    def run(
        self,
        name: str,
        *args: str,
        input_file: Path | None = None,
        sink: Callable[[bytes], None] | None = None,
    ) -> Transfer:
        """Run program `name` where this client runs programs, with `input_file` (locally as
        its last argument, in the pod on its standard input) and its output copied to `sink`."""
        what = f"{name} {self.where}"
        if self.kubectl is None:
            argv = self.command(name, *args, *([str(input_file)] if input_file else []))
            return stream(argv, self._local_env(), sink=sink, what=what)
        password = (self.url.password or "").encode()
        if b"\n" in password:
            raise ClientError(
                "the database password contains a newline, which cannot be "
                "passed to pg_dump in the pod"
            )
        return exec_stream(
            self.kubectl,
            self._exec_args(name, *args),
            stdin=_chunks(password + b"\n", input_file),
            sink=sink,
            what=what,
        )

    def _exec_args(self, name: str, *args: str) -> list[str]:
        """`kubectl exec` arguments running `name` in the pod through POD_SCRIPT."""
        container = ["-c", self.container] if self.container else []
        return [
            "exec",
            "-i",
            self.pod or "",
            *container,
            "--",
            "sh",
            "-c",
            POD_SCRIPT,
            "kubemigrate",
            name,
            self.url.username or "",
            self.url.database or "",
            "--no-password",
            *args,
        ]

    def _local_env(self) -> dict[str, str]:
        env = _plain_env()
        env.update(
            {
                "PGHOST": self.url.host or "",
                "PGPORT": str(self.url.port or 5432),
                "PGUSER": self.url.username or "",
                "PGDATABASE": self.url.database or "",
                "PGAPPNAME": APPLICATION_NAME,
                "PGCONNECT_TIMEOUT": "10",
            }
        )
        if self.url.password:
            env["PGPASSWORD"] = self.url.password
        return env


def _plain_env() -> dict[str, str]:
    """This process's environment without libpq variables a user may have exported."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def major_version(text: str) -> int:
    """16 from 'pg_dump (PostgreSQL) 16.2' or '160002'."""
    match = re.search(r"(\d+)\.(\d+)|(\d{5,6})", text)
    if not match:
        raise ValueError(text)
    if match.group(3):
        return int(match.group(3)) // 10000
    return int(match.group(1))


def local_binaries(server_major: int) -> tuple[Path, str]:
    """A directory holding pg_dump/pg_restore at least as new as the server; its description.

    The ones pgserver ships come first, then those on PATH.
    """
    candidates = [Path(program("pg_dump")).parent]
    on_path = shutil.which("pg_dump")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    seen = []
    for directory in candidates:
        try:
            version = subprocess.run(
                [str(directory / "pg_dump"), "--version"],
                check=True,
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
        seen.append(version)
        if major_version(version) >= server_major:
            return directory, f"{directory / 'pg_dump'} ({version})"
    raise ClientError(
        f"no local pg_dump at least as new as the server (PostgreSQL {server_major}); found: "
        f"{', '.join(seen) or 'none'}; install postgresql-client-{server_major}"
    )


@dataclass
class Transfer:
    """What a streamed run moved."""

    bytes: int = 0


def stream(
    argv: list[str],
    env: dict[str, str],
    *,
    sink: Callable[[bytes], None] | None = None,
    what: str,
) -> Transfer:
    """Run a local program, copy its output to `sink`; ClientError on a non-zero exit."""
    transfer = Transfer()
    with _child(argv, env) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        errors = _Drain(proc.stderr)
        while chunk := proc.stdout.read1(CHUNK):  # type: ignore[attr-defined]
            transfer.bytes += len(chunk)
            if sink is not None:
                sink(chunk)
        code = proc.wait()
        errors.join()
    if code != 0:
        raise ClientError(f"{what} failed (exit code {code}): {summary(errors.lines)}")
    return transfer


def exec_stream(
    kubectl: Kubectl,
    args: list[str],
    *,
    stdin: Iterator[bytes],
    sink: Callable[[bytes], None] | None = None,
    what: str,
) -> Transfer:
    """Run `kubectl ARGS` (an exec) through sh: feed it `stdin`, copy its output to `sink` in
    large chunks; ClientError on a non-zero exit. kubectl is killed on every other way out
    (Ctrl-C and SIGTERM included), and dies with this process should it be killed outright."""
    import sh

    from kubemigrate.tunnel import die_with_parent

    output = _Output(sink)
    errors: list[str] = []

    def error_line(line: str) -> None:
        if line.strip():
            errors[:] = [*errors[-19:], line.strip()]

    process = kubectl.command()(
        *args,
        _in=stdin,
        _out=cast(IO[bytes], output),  # a raw binary file, to sh
        _out_bufsize=CHUNK,
        _no_out=True,
        _err=error_line,
        _no_err=True,
        _env=_plain_env(),
        _bg=True,
        _bg_exc=False,
        _new_session=True,
        _preexec_fn=die_with_parent,
    )
    try:
        process.wait()
    except sh.ErrorReturnCode as exc:
        raise ClientError(f"{what} failed (exit code {exc.exit_code}): {summary(errors)}") from None
    except BaseException:
        if process.is_alive():
            process.kill()
            with suppress(Exception):
                process.wait()
        raise
    return output.transfer


class _Output(io.RawIOBase):
    """Where sh writes a child's output: as raw bytes (being a file), counted, to `sink`."""

    def __init__(self, sink: Callable[[bytes], None] | None) -> None:
        super().__init__()
        self.sink = sink
        self.transfer = Transfer()

    def writable(self) -> bool:
        return True

    def write(self, chunk: ReadableBuffer) -> int:
        data = bytes(chunk)
        self.transfer.bytes += len(data)
        if self.sink is not None:
            self.sink(data)
        return len(data)


def _chunks(prefix: bytes, path: Path | None) -> Iterator[bytes]:
    """Standard input for the pod: `prefix`, then the file in large chunks."""
    yield prefix
    if path is not None:
        with path.open("rb") as source:
            while chunk := source.read(CHUNK):
                yield chunk


def summary(lines: list[str]) -> str:
    """The line of a program's stderr that says what went wrong."""
    useful = [line for line in lines if "error" in line.lower()] or lines
    return useful[-1] if useful else "no message"


@contextmanager
def _child(argv: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    from kubemigrate.tunnel import die_with_parent

    proc = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                with suppress(OSError):
                    pipe.close()


class _Drain(threading.Thread):
    """Reads a child's stderr so it never blocks; keeps the last lines."""

    def __init__(self, pipe: IO[bytes]) -> None:
        super().__init__(daemon=True)
        self.pipe = pipe
        self.lines: list[str] = []
        self.start()

    def run(self) -> None:
        for raw in self.pipe:
            line = raw.decode(errors="replace").strip()
            if line:
                self.lines = [*self.lines[-19:], line]
