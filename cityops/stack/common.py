"""Process, port and package helpers shared by the local stack services."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cityops.errors import StackError


@dataclass(frozen=True)
class ServiceStatus:
    """What ``stack status`` reports for one service."""

    name: str
    ok: bool
    address: str
    pid: int | None = None
    managed: bool = False
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "address": self.address,
            "pid": self.pid,
            "managed": self.managed,
            "detail": self.detail,
        }


@dataclass
class StartResult:
    """What ``stack up`` did for one service."""

    name: str
    started: bool
    seconds: float
    notes: list[str] = field(default_factory=list)


def is_root() -> bool:
    return os.geteuid() == 0


def is_debian() -> bool:
    return Path("/etc/debian_version").exists()


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _ephemeral_low(default: int = 32768) -> int:
    """Where the kernel starts handing out ports to outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def free_ports(count: int, host: str = "127.0.0.1", low: int = 20000, high: int = 40000) -> int:
    """A port p with p .. p+count-1 all free right now (e.g. Kafka nodes, each with its
    controller on the next port), below the kernel's range for outgoing connections:
    a port from that range can be taken by any client's connection between this check
    and the server's bind."""
    import secrets

    high = min(high, max(_ephemeral_low(), low + 2 * count))
    for _ in range(500):
        base = low + secrets.randbelow(high - low - count)
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind((host, port))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return base
    raise StackError(f"no {count} free ports in a row between {low} and {high}")


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


def read_pid(pid_file: Path, expect: str) -> int | None:
    """The pid in ``pid_file`` if that process is alive and is ``expect``, else ``None``.

    ``expect`` must appear in the process's command line, so a stale pid file whose
    number was reused by an unrelated process is never mistaken for our service.
    """
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if not pid_alive(pid):
        return None
    proc = _SPAWNED.get(pid)
    if proc is not None:
        return pid  # started by this process: its identity is certain
    # A process in the middle of exec shows an empty command line until the kernel has
    # laid out its arguments; look again before judging it.
    for _ in range(20):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return None
        if cmdline:
            break
        time.sleep(0.05)
    return pid if expect in cmdline else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); reap it if it is one, through its
    # Popen when this process spawned it so that its exit status is kept.
    proc = _SPAWNED.get(pid)
    if proc is not None:
        return proc.poll() is None
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        if stat.read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


def stop_pid(pid_file: Path, expect: str, timeout: float = 30.0, sig: int = signal.SIGTERM) -> bool:
    """Stop the process recorded in ``pid_file``; True if one was running."""
    pid = read_pid(pid_file, expect)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    if not wait_until(lambda: not pid_alive(pid), timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not pid_alive(pid), 10)
    pid_file.unlink(missing_ok=True)
    return True


_SPAWNED: dict[int, subprocess.Popen[bytes]] = {}


@atexit.register
def _services_outlive_us() -> None:
    # Services are started to outlive this process; their handles must not warn so.
    warnings.filterwarnings("ignore", "subprocess .* is still running", ResourceWarning)


def exit_status(pid: int) -> str:
    """How a service this process spawned ended, e.g. ``exit code 1`` or ``killed by SIGKILL``."""
    proc = _SPAWNED.get(pid)
    code = None if proc is None else proc.poll()
    if code is None:
        return "exit status unknown"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


@atexit.register
def _leave_running() -> None:
    """Services this process started outlive it by design: their handles are let go
    without the "still running" warning Python gives for a child never waited on."""
    for proc in _SPAWNED.values():
        if proc.poll() is None:
            proc.returncode = 0  # not waited on, on purpose


def spawn(
    argv: Sequence[str],
    log_file: Path,
    pid_file: Path,
    *,
    user: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start a long-running service detached from this process and record its pid."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=user,
            env=env,
            cwd=cwd,
        )
    pid_file.write_text(f"{proc.pid}\n")
    # The service outlives this handle by design; keep it referenced so it is not
    # garbage-collected (with a ResourceWarning) while the service runs.
    _SPAWNED[proc.pid] = proc
    return proc.pid


def run(
    argv: Sequence[str],
    *,
    user: str | None = None,
    check: bool = True,
    env: dict[str, str] | None = None,
    input_text: str | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run a short command; raise ``StackError`` with its output when it fails."""
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            user=user,
            env=env,
            input=input_text,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StackError(f"could not run {argv[0]}: {exc}") from exc
    if check and proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip()[-2000:]
        raise StackError(f"{' '.join(argv[:3])} ... failed ({proc.returncode}):\n{out}")
    return proc


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def ensure_debian_packages(packages: dict[str, str], log: Callable[[str], None]) -> None:
    """Install the Debian packages whose probe path is missing.

    ``packages`` maps a package name to a path that exists once it is installed.
    Root on Debian installs them; anyone else is told exactly what to install.
    """
    missing = [pkg for pkg, probe in packages.items() if not Path(probe).exists()]
    if not missing:
        return
    command = "apt-get update && apt-get install -y --no-install-recommends " + " ".join(missing)
    if not (is_root() and is_debian() and shutil.which("apt-get")):
        raise StackError(f"missing Debian packages {', '.join(missing)}; install them: {command}")
    log(f"installing Debian packages: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-qq"], env=env, timeout=900)
    # policy-rc.d 101 keeps the packages' own system services from starting.
    policy = Path("/usr/sbin/policy-rc.d")
    created = not policy.exists()
    if created:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
            env=env,
            timeout=1200,
        )
    finally:
        if created:
            policy.unlink(missing_ok=True)


def chown_tree(path: Path, user: str) -> None:
    """Give ``path`` and everything under it to ``user`` (root only)."""
    if not is_root():
        return
    for p in [path, *path.rglob("*")]:
        shutil.chown(p, user=user, group=user)
