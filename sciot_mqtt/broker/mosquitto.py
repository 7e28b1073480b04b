"""Mosquitto as a child process: the production broker, started here for tests and demos."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import shutil
import signal
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from sciot_mqtt.broker._ready import until_accepting
from sciot_mqtt.broker.exposure import require_credentials_off_loopback
from sciot_mqtt.errors import ConfigurationError
from sciot_mqtt.transport import BrokerAddress


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago; callers retry if another process takes it first."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class TlsListener:
    """A second listener speaking TLS with the server's certificate and key; with
    `require_certificate`, clients must present a certificate signed by `ca_file`."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    port: int = 0  # 0: a free port
    require_certificate: bool = True


class MosquittoBroker:
    """Runs the `mosquitto` binary with a generated config on loopback.

    Without `password_file` anonymous clients are allowed, and then only a loopback `host`
    is accepted. With it (and `acl_file`) anonymous clients are refused, the ACLs apply and,
    as in the shipped `mosquitto/mosquitto.conf`, every listener replaces a client's id by
    its username (`use_username_as_clientid`), so no login takes over another's session.
    `max_packet_size` disconnects a client that announces a larger packet.
    `tls` adds a TLS listener (`tls_address`). `extra_config` lines are appended to the
    generated file; `config_file` replaces it entirely (then `port` must match what the
    file says). `kill()` and `start()` let tests crash and restart the broker; with
    `persistence=True` retained messages and persistent sessions survive that, as in
    production.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        persistence: bool = False,
        extra_config: str = "",
        config_file: Path | None = None,
        password_file: Path | None = None,
        acl_file: Path | None = None,
        max_packet_size: int | None = None,
        tls: TlsListener | None = None,
        workdir: Path | None = None,
        binary: str = "mosquitto",
        start_timeout: float = 10.0,
    ) -> None:
        found = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/local/sbin")
        if found is None:
            raise ConfigurationError(
                f"{binary!r} not found: install Mosquitto "
                "(Debian/Ubuntu: apt-get install mosquitto)"
            )
        if config_file is None:
            # Beyond loopback, logins alone are not enough: every account could read everything.
            protected = password_file is not None and acl_file is not None
            require_credentials_off_loopback(host, protected, "mosquitto")
        self._binary = found
        self._host = host
        self._port = port or free_port(host)
        self._password_file = password_file
        self._acl_file = acl_file
        self._max_packet_size = max_packet_size
        self._tls = tls
        self._tls_port = (tls.port or free_port(host)) if tls is not None else None
        self._persistence = persistence
        self._extra = extra_config
        self._config_file = config_file
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._workdir = workdir
        self._start_timeout = start_timeout
        self._process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None
        self.log_tail: collections.deque[str] = collections.deque(maxlen=200)

    @property
    def pid(self) -> int | None:
        """The running broker's process id (for measuring it), or None."""
        return self._process.pid if self._process is not None else None

    @property
    def address(self) -> BrokerAddress:
        return BrokerAddress(self._host, self._port)

    @property
    def tls_address(self) -> BrokerAddress:
        """The TLS listener's host and port (add the client's `TlsConfig` to connect)."""
        if self._tls_port is None:
            raise RuntimeError("this broker has no TLS listener")
        return BrokerAddress(self._host, self._tls_port)

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="sciot-mosquitto-")
            self._workdir = Path(self._tmp.name)
        return self._workdir

    def _write_config(self) -> Path:
        if self._config_file is not None:
            return self._config_file
        # Per listener, like the shipped configuration: a login's client id is its username.
        bind_ids = ["use_username_as_clientid true"] if self._password_file else []
        lines = [
            f"listener {self._port} {self._host}",
            *bind_ids,
            f"allow_anonymous {'false' if self._password_file else 'true'}",
            "set_tcp_nodelay true",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            f"persistence {'true' if self._persistence else 'false'}",
        ]
        if os.geteuid() == 0:
            # Started by root, mosquitto switches to the `mosquitto` user, which cannot read
            # the caller's private files (password file, keys, a 0700 temporary folder).
            lines.append("user root")
        if self._persistence:
            lines += [f"persistence_location {self.workdir}/", "autosave_interval 1"]
        if self._password_file is not None:
            lines.append(f"password_file {self._password_file}")
        if self._acl_file is not None:
            lines.append(f"acl_file {self._acl_file}")
        if self._max_packet_size is not None:
            lines.append(f"max_packet_size {self._max_packet_size}")
        if self._tls is not None:
            lines += [
                f"listener {self._tls_port} {self._host}",
                *bind_ids,
                f"cafile {self._tls.ca_file}",
                f"certfile {self._tls.cert_file}",
                f"keyfile {self._tls.key_file}",
                f"require_certificate {'true' if self._tls.require_certificate else 'false'}",
            ]
        path = self.workdir / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n" + self._extra + "\n")
        return path

    async def start(self) -> None:
        """Start the process and return once it accepts connections."""
        if self._process is not None:
            raise RuntimeError("mosquitto is already running")
        config = self._write_config()
        self._process = await asyncio.create_subprocess_exec(
            self._binary,
            "-c",
            str(config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=self.workdir,
        )
        self._drain = asyncio.create_task(self._read_output(), name="mosquitto-log")
        try:
            await asyncio.wait_for(
                until_accepting(self.address, still_starting=self._running), self._start_timeout
            )
        except (TimeoutError, RuntimeError) as exc:
            await self.stop()
            raise ConfigurationError(
                f"mosquitto did not start on {self.address}: " + " | ".join(self.log_tail)
            ) from exc

    def _running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def _read_output(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        async for line in self._process.stdout:
            self.log_tail.append(line.decode(errors="replace").rstrip())

    async def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop the process (SIGTERM: clean; SIGKILL: a crash)."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._drain is not None:
            self._drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain
            self._drain = None

    async def kill(self) -> None:
        await self.stop(signal.SIGKILL)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
