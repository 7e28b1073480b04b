"""Child processes of `python -m sciot_mqtt` for tests of the command line as users run it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path


class Child:
    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    async def wait(self, timeout: float) -> int:
        try:
            return await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"still running after {timeout}s; its log ends:\n{self.output()[-3000:]}"
            ) from None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def last_json_line(self) -> dict[str, object]:
        stdout = self.log.with_suffix(".out").read_text().strip().splitlines()
        value: dict[str, object] = json.loads(stdout[-1])
        return value


@contextlib.asynccontextmanager
async def spawn(
    argv: list[str], env: dict[str, str], workdir: Path, name: str
) -> AsyncIterator[Child]:
    """Start a child with stdout and stderr in files; it is killed if still alive at the end."""
    log = workdir / f"{name}.log"
    with log.open("wb") as err, log.with_suffix(".out").open("wb") as out:
        process = await asyncio.create_subprocess_exec(*argv, stdout=out, stderr=err, env=env)
    child = Child(process, log)
    try:
        yield child
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
                process.kill()
            await process.wait()
