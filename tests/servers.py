"""Real servers for the tests, on 127.0.0.1: PostgreSQL from Debian's package (started with initdb and
pg_ctl in a temporary folder, as the `postgres` user when the tests run as root), stopped afterwards."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def missing(what: str, install: str):
    """Locally a missing server skips its tests; in CI (.ci/run installs it) that is a failure."""
    message = f"{what} is not installed ({install})"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Postgres:
    port: int
    user: str = "workbench"

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def start_postgres():
    """Yields a running Postgres; stops it and removes its files afterwards."""
    bindir = postgres_bindir()
    if bindir is None:
        missing("PostgreSQL", "apt-get install postgresql")
    data = Path(tempfile.mkdtemp(prefix="fer-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(data, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    pgdata = data / "db"

    def run(*cmd):
        return subprocess.run(
            as_postgres + [str(c) for c in cmd], check=True, capture_output=True, text=True
        )

    try:
        run(bindir / "initdb", "-D", pgdata, "-U", "workbench", "--auth=trust", "-E", "UTF8")
        run(
            bindir / "pg_ctl",
            "-D",
            pgdata,
            "-l",
            data / "server.log",
            "-w",
            "-t",
            "60",
            "-o",
            f"-h 127.0.0.1 -p {port} -k {data} -c fsync=off",
            "start",
        )
        yield Postgres(port)
    finally:
        subprocess.run(
            as_postgres + [str(bindir / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop"],
            capture_output=True,
        )
        shutil.rmtree(data, ignore_errors=True)
