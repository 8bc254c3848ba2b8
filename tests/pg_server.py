"""A real PostgreSQL 15 server for the tests and the benchmark.

Either the server named by ``CHATLEDGER_TEST_POSTGRES_URL`` (a superuser URL; its database
is used to create one database per test), or a throw-away cluster: ``initdb`` in a fresh
temporary directory, listening on a free loopback port with its unix socket in that
directory, stopped and deleted at the end. PostgreSQL refuses to run as root, so when the
tests run as root the server runs as the ``postgres`` OS user (``runuser``).

Nothing here skips: a missing server is a failure that says what to install.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

ENV_URL = "CHATLEDGER_TEST_POSTGRES_URL"
BIN_DIR = Path("/usr/lib/postgresql/15/bin")
MISSING = (
    f"PostgreSQL 15 is not installed ({BIN_DIR} has no initdb/pg_ctl). Run the tests through "
    "`bash .ci/run`, which installs it (Debian: apt-get install postgresql-15), or point "
    f"{ENV_URL} at a PostgreSQL 15+ superuser URL."
)


class PostgresUnavailable(RuntimeError):
    """No server could be had; the message says what to do."""


@dataclass
class PgServer:
    """A running server and a superuser URL to it."""

    admin_url: str
    data_dir: Path | None = None
    root: Path | None = None
    run_as: list[str] = field(default_factory=list)
    _counter: int = 0

    def url(
        self,
        dbname: str,
        *,
        user: str | None = None,
        password: str | None = None,
        search_path: str | None = None,
        role: str | None = None,
    ) -> str:
        params: dict[str, Any] = conninfo_to_dict(self.admin_url)
        params["dbname"] = dbname
        if user is not None:
            params["user"] = user
            params["password"] = password
        options = []
        if search_path is not None:
            options.append(f"-c search_path={search_path}")
        if role is not None:  # act as this role from the session's start (SET ROLE)
            options.append(f"-c role={role}")
        if options:
            params["options"] = " ".join(options)
        return make_url(params)

    def admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.admin_url, autocommit=True)

    def create_database(self, prefix: str = "t", *, template: str | None = None) -> str:
        self._counter += 1
        name = f"{prefix}_{os.getpid()}_{self._counter}_{secrets.token_hex(3)}"
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
        with self.admin() as conn:
            conn.execute(statement)
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def tool(self, name: str) -> str:
        """Path of a client program (pg_dump, pg_restore, psql) matching the server."""
        local = BIN_DIR / name
        if local.exists():
            return str(local)
        found = shutil.which(name)
        if found is None:
            raise PostgresUnavailable(f"{name} not found. {MISSING}")
        return found

    def stop(self) -> None:
        if self.data_dir is not None:
            subprocess.run(
                [
                    *self.run_as,
                    str(BIN_DIR / "pg_ctl"),
                    "stop",
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "fast",
                    "-w",
                ],
                capture_output=True,
                check=False,
                timeout=60,
            )
            self.data_dir = None
        if self.root is not None:
            # Thousands of relation files (a suite on PostgreSQL leaves a few hundred
            # databases) take 15-40 s to unlink: a detached `rm` does it after we return.
            done = subprocess.run(
                ["sh", "-c", 'rm -rf -- "$1" >/dev/null 2>&1 &', "sh", str(self.root)],
                check=False,
                timeout=60,
            )
            if done.returncode != 0:
                shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


def make_url(params: dict[str, Any]) -> str:
    """A ``postgresql://`` URL from libpq connection parameters."""
    params = {k: v for k, v in params.items() if v is not None}
    user = quote(str(params.pop("user", "")), safe="")
    password = params.pop("password", None)
    auth = f"{user}:{quote(str(password), safe='')}@" if password is not None else f"{user}@"
    host = str(params.pop("host", "127.0.0.1"))
    if host.startswith("/"):  # a unix-socket directory
        host = quote(host, safe="")
    port = params.pop("port", 5432)
    dbname = quote(str(params.pop("dbname", "postgres")), safe="")
    query = f"?{urlencode(params, quote_via=quote)}" if params else ""
    return f"postgresql://{auth}{host}:{port}/{dbname}{query}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(*, durable: bool = False) -> PgServer:
    """Use ``CHATLEDGER_TEST_POSTGRES_URL`` or start a private PostgreSQL 15 cluster.

    ``durable=False`` (tests) turns fsync off to keep CREATE DATABASE cheap; the store still
    asks for ``synchronous_commit``. The benchmark passes ``durable=True``.
    """
    external = os.environ.get(ENV_URL)
    if external:
        try:
            with psycopg.connect(external, autocommit=True, connect_timeout=10) as conn:
                row = conn.execute(
                    "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
                ).fetchone()
        except psycopg.Error as exc:
            raise PostgresUnavailable(f"cannot connect to {ENV_URL}: {exc}") from exc
        if not row or not row[0]:
            raise PostgresUnavailable(f"{ENV_URL} must name a superuser (tests create roles)")
        return PgServer(admin_url=make_url(conninfo_to_dict(external)))
    if not (BIN_DIR / "initdb").exists() or not (BIN_DIR / "pg_ctl").exists():
        raise PostgresUnavailable(MISSING)

    run_as: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="chatledger-pg-"))
    if os.geteuid() == 0:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError as exc:
            shutil.rmtree(root, ignore_errors=True)
            raise PostgresUnavailable(
                "running as root, and there is no 'postgres' OS user to run the server as. "
                + MISSING
            ) from exc
        os.chown(root, pw.pw_uid, pw.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    os.chmod(root, 0o700)

    data = root / "data"
    password = secrets.token_urlsafe(18)
    pwfile = root / "pw"
    pwfile.write_text(password + "\n")
    if run_as:
        os.chown(pwfile, pw.pw_uid, pw.pw_gid)
    server = PgServer(admin_url="", data_dir=None, root=root, run_as=run_as)
    try:
        _run(
            [
                *run_as,
                str(BIN_DIR / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                f"--pwfile={pwfile}",
                "--no-sync",
                "--no-instructions",
            ],
            "initdb",
        )
        pwfile.unlink()
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{root}'",
            "max_connections": "400",  # the load test runs 4 servers x ~30 readers
            "shared_buffers": "64MB",
            "fsync": "on" if durable else "off",
            "full_page_writes": "on" if durable else "off",
            "synchronous_commit": "on",
            "log_min_messages": "warning",
            "logging_collector": "off",
        }
        with (data / "postgresql.conf").open("a") as fh:
            fh.write("\n# chatledger tests\n")
            for key, value in settings.items():
                fh.write(f"{key} = {value}\n")
        server.data_dir = data
        for attempt in range(5):
            port = _free_port()
            done = subprocess.run(
                [
                    *run_as,
                    str(BIN_DIR / "pg_ctl"),
                    "start",
                    "-D",
                    str(data),
                    "-w",
                    "-t",
                    "60",
                    "-l",
                    str(root / "server.log"),
                    "-o",
                    f"-p {port}",
                ],
                capture_output=True,
                text=True,
                check=False,
                timeout=90,
            )
            if done.returncode == 0:
                break
            if attempt == 4:
                log = (root / "server.log").read_text(errors="replace")[-2000:]
                raise PostgresUnavailable(f"pg_ctl start failed: {done.stderr}\n{log}")
            time.sleep(0.2)  # the port was taken meanwhile: try another
        server.admin_url = make_url(
            {
                "host": "127.0.0.1",
                "port": port,
                "user": "postgres",
                "password": password,
                "dbname": "postgres",
                "connect_timeout": 10,
            }
        )
        return server
    except BaseException:
        server.stop()
        raise


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        raise PostgresUnavailable(f"{what} failed ({done.returncode}): {done.stderr.strip()}")
