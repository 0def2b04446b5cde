"""PostgreSQL's client programs (pg_dump, pg_restore) run locally or inside the database pod.

Credentials never appear in a command line:
- locally, the one child gets them in its environment (PGHOST, PGUSER, PGPASSWORD...);
- in the pod (`kubectl exec -i`), a tiny shell script reads the password from the first line
  of its standard input and exports it to pg_dump / pg_restore alone; user, database and port
  are plain arguments.

`stream` runs such a child, feeds its standard input (a password line, then optionally a
file), copies its standard output to a sink in large chunks, and kills it on any exit path.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from kubemigrate.embedded import program
from kubemigrate.errors import KubemigrateError

if TYPE_CHECKING:
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

    def command(self, name: str, *args: str) -> tuple[list[str], dict[str, str], bytes]:
        """argv, environment and standard-input prefix to run program `name` with `args`."""
        if self.kubectl is None:
            assert self.binaries is not None
            return [str(self.binaries / name), *args], self._local_env(), b""
        container = ["-c", self.container] if self.container else []
        argv = [
            *self.kubectl.argv(),
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
        password = (self.url.password or "").encode()
        if b"\n" in password:
            raise ClientError(
                "the database password contains a newline, which cannot be "
                "passed to pg_dump in the pod"
            )
        return argv, _plain_env(), password + b"\n"

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
    stdin_prefix: bytes = b"",
    stdin_file: Path | None = None,
    sink: Callable[[bytes], None] | None = None,
    what: str,
) -> Transfer:
    """Run `argv`, feed it, copy its output to `sink`; ClientError on a non-zero exit."""
    transfer = Transfer()
    with _child(argv, env) as proc:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        errors = _Drain(proc.stderr)
        feeder = threading.Thread(
            target=_feed, args=(proc.stdin, stdin_prefix, stdin_file), daemon=True
        )
        feeder.start()
        while chunk := proc.stdout.read1(CHUNK):  # type: ignore[attr-defined]
            transfer.bytes += len(chunk)
            if sink is not None:
                sink(chunk)
        code = proc.wait()
        feeder.join()
        errors.join()
    if code != 0:
        raise ClientError(f"{what} failed (exit code {code}): {errors.summary()}")
    return transfer


@contextmanager
def _child(argv: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    from kubemigrate.tunnel import die_with_parent

    proc = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.PIPE,
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


def _feed(stdin: IO[bytes], prefix: bytes, path: Path | None) -> None:
    try:
        if prefix:
            stdin.write(prefix)
        if path is not None:
            with path.open("rb") as source:
                while chunk := source.read(CHUNK):
                    stdin.write(chunk)
    except (BrokenPipeError, ValueError, OSError):
        pass  # the child exited early; its exit code and stderr tell why
    finally:
        with suppress(OSError):
            stdin.close()


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

    def summary(self) -> str:
        useful = [line for line in self.lines if "error" in line.lower()] or self.lines
        return useful[-1] if useful else "no message"
