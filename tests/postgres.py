"""
A throwaway PostgreSQL server for the tests: ``initdb`` and ``pg_ctl`` on a temporary directory, listening on a free
port of 127.0.0.1, stopped and removed afterwards. As root (CI, these machines) it runs as the ``postgres`` user of
Debian's ``postgresql`` package, since initdb refuses root.
"""

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def find_binaries() -> Path | None:
    """:return: the folder holding ``initdb`` and ``pg_ctl`` (Debian puts them under /usr/lib/postgresql/N/bin)"""
    for candidate in [shutil.which("initdb"), *sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)]:
        if candidate and Path(candidate).with_name("pg_ctl").exists():
            return Path(candidate).resolve().parent
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """
    Start a server, yield its SQLAlchemy URL (database ``postgres``, user ``postgres``, no password), stop it.

    :raises FileNotFoundError: if the PostgreSQL binaries are not installed
    """
    binaries = find_binaries()
    if binaries is None:
        raise FileNotFoundError("initdb/pg_ctl not found (Debian: apt-get install postgresql)")
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    folder = Path(tempfile.mkdtemp(prefix="sb3_jepa_pg_"))
    data = folder / "data"
    if as_root:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
    port = free_port()

    def run(*command: str) -> None:
        subprocess.run([*prefix, *command], check=True, capture_output=True, text=True, timeout=120)

    try:
        run(str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync")
        options = f"-p {port} -h 127.0.0.1 -k {folder} -c fsync=off"
        run(str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "server.log"), "-w", "start")
        try:
            yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
        finally:
            run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
