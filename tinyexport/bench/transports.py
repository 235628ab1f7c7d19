"""How ``bench --on`` reaches another machine: ssh (OpenSSH client) or adb (Android platform-tools).

A transport runs a shell command on the target (optionally feeding a local file to its stdin) and
copies a file there. Each builds plain argv lists for ``ssh`` / ``adb`` (testable without a target),
runs them with a timeout, and turns a transport failure into one line naming the target and the fix.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from tinyexport.errors import UserError


class RemoteError(UserError, RuntimeError):
    """The target could not be reached or refused us (message: the target, what failed, the fix)."""


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


class Transport(Protocol):
    label: str  # "ssh://user@host:port" / "adb://serial"

    def run(self, command: str, *, stdin: Path | None = None, timeout: float) -> Completed: ...

    def push(self, local: Path, remote: str, *, timeout: float) -> None: ...


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _run(argv: list[str], stdin: Path | None, timeout: float, what: str) -> Completed:
    try:
        if stdin is not None:
            with open(stdin, "rb") as handle:
                proc = subprocess.run(argv, stdin=handle, capture_output=True, timeout=timeout)
        else:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RemoteError(f"{what}: no answer within {timeout:.0f} s; check the target is up and reachable") from None
    except FileNotFoundError:
        raise RemoteError(
            f"{argv[0]} is not installed here; install it (Debian: apt-get install "
            f"{'openssh-client' if argv[0] == 'ssh' else 'adb'})"
        ) from None
    return Completed(proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))


@dataclass(frozen=True)
class SshTransport:
    """``ssh://user@host[:port]``. BatchMode (never prompts), ConnectTimeout, and the user's own ssh
    options (``-o KEY=VALUE``), identity file and config otherwise."""

    user: str | None
    host: str
    port: int = 22
    identity: Path | None = None
    options: tuple[str, ...] = ()
    connect_timeout: int = 10

    @classmethod
    def parse(
        cls, url: str, identity: Path | None = None, options: tuple[str, ...] = (), connect_timeout: int = 10
    ) -> SshTransport:
        parts = urlsplit(url)
        try:
            port = parts.port or 22
        except ValueError:
            port = -1
        if parts.scheme != "ssh" or not parts.hostname or port <= 0 or parts.path not in ("", "/"):
            raise RemoteError(f"--on {url!r} is not an ssh target; use ssh://user@host[:port] (or adb://[SERIAL])")
        bad = [o for o in options if "=" not in o]
        if bad:
            raise RemoteError(f"--ssh-option {bad[0]!r} is not KEY=VALUE (e.g. StrictHostKeyChecking=accept-new)")
        return cls(parts.username, parts.hostname, port, identity, tuple(options), connect_timeout)

    @property
    def label(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"ssh://{user}{self.host}:{self.port}"

    def base_argv(self) -> list[str]:
        argv = [
            "ssh",
            "-p",
            str(self.port),
            "-o",
            "BatchMode=yes",
            "-o",
            f"ConnectTimeout={self.connect_timeout}",
            "-o",
            "ServerAliveInterval=15",
            "-o",
            "ServerAliveCountMax=2",
        ]
        if self.identity is not None:
            argv += ["-i", str(self.identity), "-o", "IdentitiesOnly=yes"]
        for option in self.options:
            argv += ["-o", option]
        argv.append(f"{self.user}@{self.host}" if self.user else self.host)
        return argv

    def argv(self, command: str) -> list[str]:
        return [*self.base_argv(), "--", command]

    def run(self, command: str, *, stdin: Path | None = None, timeout: float) -> Completed:
        done = _run(self.argv(command), stdin, timeout, self.label)
        if done.returncode == 255:  # ssh's own failure: unreachable, refused key, host key mismatch...
            reason = _last_line(done.stderr) or "ssh failed"
            hint = (
                "the key was refused: pass --identity KEY (or add yours to the target's authorized_keys)"
                if "Permission denied" in reason
                else "check the host, the port and that sshd runs there"
            )
            raise RemoteError(f"{self.label}: {reason}; {hint}")
        return done

    def push(self, local: Path, remote: str, *, timeout: float) -> None:
        done = self.run(f"cat > {shlex.quote(remote)}", stdin=local, timeout=timeout)
        if done.returncode != 0:
            raise RemoteError(f"{self.label}: could not write {remote}: {_last_line(done.stderr)}")


@dataclass(frozen=True)
class AdbTransport:
    """``adb://[SERIAL]``: ``adb [-s SERIAL] push`` / ``shell``. The device needs a Python 3.10+ with
    ``tinyexport[runtime]`` (e.g. Termux), given by ``--remote-python``."""

    serial: str | None = None
    adb: str = "adb"

    @classmethod
    def parse(cls, url: str) -> AdbTransport:
        parts = urlsplit(url)
        if parts.scheme != "adb" or parts.path not in ("", "/"):
            raise RemoteError(f"--on {url!r} is not an adb target; use adb:// (the only device) or adb://SERIAL")
        return cls(parts.netloc or None)

    @property
    def label(self) -> str:
        return f"adb://{self.serial or ''}"

    def prefix(self) -> list[str]:
        return [self.adb, *(["-s", self.serial] if self.serial else [])]

    def shell_argv(self, command: str) -> list[str]:
        return [*self.prefix(), "shell", command]

    def push_argv(self, local: Path, remote: str) -> list[str]:
        return [*self.prefix(), "push", str(local), remote]

    def check_device(self, timeout: float = 20) -> None:
        if shutil.which(self.adb) is None:
            raise RemoteError("adb is not installed here; install Android platform-tools (Debian: apt-get install adb)")
        done = _run([self.adb, "devices"], None, timeout, "adb devices")
        serials = [
            line.split()[0] for line in done.stdout.splitlines()[1:] if line.strip() and line.split()[-1] == "device"
        ]
        if not serials:
            raise RemoteError(
                "no Android device attached (`adb devices` lists none ready); connect one with USB "
                "debugging on and accept its prompt, or use --on ssh://user@host"
            )
        if self.serial is not None and self.serial not in serials:
            raise RemoteError(f"adb device {self.serial!r} is not attached (attached: {', '.join(serials)})")
        if self.serial is None and len(serials) > 1:
            raise RemoteError(
                f"{len(serials)} Android devices attached ({', '.join(serials)}); pick one with adb://SERIAL"
            )

    def run(self, command: str, *, stdin: Path | None = None, timeout: float) -> Completed:
        if stdin is not None:
            raise ValueError("adb shell takes no stdin file; push the file first")
        # adb shell does not return the command's exit code on old devices: append it to stdout
        done = _run(self.shell_argv(f"{command}; echo __rc=$?"), None, timeout, self.label)
        out, _, rc = done.stdout.rpartition("__rc=")
        code = int(rc.strip()) if rc.strip().isdigit() else done.returncode or 1
        return Completed(code, out, done.stderr)

    def push(self, local: Path, remote: str, *, timeout: float) -> None:
        done = _run(self.push_argv(local, remote), None, timeout, self.label)
        if done.returncode != 0:
            raise RemoteError(f"{self.label}: adb push {local.name} failed: {_last_line(done.stderr + done.stdout)}")


def parse_target(
    url: str, identity: Path | None = None, ssh_options: tuple[str, ...] = (), connect_timeout: int = 10
) -> Transport:
    scheme = urlsplit(url).scheme
    if scheme == "ssh":
        return SshTransport.parse(url, identity, ssh_options, connect_timeout)
    if scheme == "adb":
        return AdbTransport.parse(url)
    raise RemoteError(f"--on {url!r}: unknown transport; use ssh://user@host[:port] or adb://[SERIAL]")
