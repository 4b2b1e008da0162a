"""A throw-away PostgreSQL server for one test: the distribution's binaries, a cluster in a
temporary folder, listening on a Unix socket only (no port to collide with), stopped after."""
from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path


def server_bin() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb, or the folder of one on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def skip_reason() -> str | None:
    if server_bin() is None:
        return ("needs the PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql "
                "(.ci/run installs them)")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "needs psycopg2 (the dev extra: pip install -e '.[dev]')"
    return None


def _as_server_user():
    """initdb and postgres refuse to run as root: drop to the `postgres` user (or nobody) then."""
    if os.getuid() != 0:
        return None, None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists")


@contextlib.contextmanager
def postgres_server(user: str = "vireid"):
    """Yield an SQLAlchemy URL of a fresh server's `postgres` database; stop and delete it after."""
    bindir = server_bin()
    uid, gid = _as_server_user()
    # Not under pytest's tmp_path: its parents are private to root, and the server user must enter it.
    base = Path(tempfile.mkdtemp(prefix="vireid-pg-"))
    data, sockets, log = base / "data", base / "sock", base / "server.log"
    sockets.mkdir()
    if uid is not None:
        os.chmod(base, 0o755)
        for path in (base, sockets):
            os.chown(path, uid, gid)

    def as_user():
        if uid is not None:
            os.setgid(gid)
            os.setuid(uid)

    def run(*cmd: str) -> None:
        proc = subprocess.run(cmd, preexec_fn=as_user, capture_output=True, text=True, timeout=120)
        if proc.returncode:
            tail = log.read_text()[-2000:] if log.is_file() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}{tail}")

    try:
        run(str(bindir / "initdb"), "--no-sync", "--auth=trust", f"--username={user}", "-D", str(data))
        options = f"-c listen_addresses='' -c unix_socket_directories='{sockets}' -c fsync=off"
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start")
        try:
            yield f"postgresql+psycopg2://{user}@/postgres?host={sockets}"
        finally:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(base, ignore_errors=True)
