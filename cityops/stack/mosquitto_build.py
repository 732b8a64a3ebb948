"""Mosquitto 2.1 with its persist-sqlite and dynamic-security plugins, built once and cached.

Debian bookworm ships Mosquitto 2.0, which acknowledges QoS 1 messages and then drops
them after a restart (``$share`` subscriptions are not persisted) or a SIGHUP with a
password file. The platform therefore runs 2.1: Debian publishes its source for ``sid``;
a ``deb-src``-only entry (never a ``deb`` one, so nothing of sid is installed) lets
``apt-get source --download-only mosquitto`` fetch it, and cmake builds it against
bookworm's libraries into ``<cache>/mosquitto-<version>``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cityops.errors import StackError
from cityops.stack.common import ensure_debian_packages, is_debian, is_root, run

MINIMUM = (2, 1)
PLUGINS = ("mosquitto_persist_sqlite.so", "mosquitto_dynamic_security.so")

#: Debian packages the build needs, each with a file that exists once it is installed.
BUILD_PACKAGES = {
    "cmake": "/usr/bin/cmake",
    "g++": "/usr/bin/g++",
    "make": "/usr/bin/make",
    "pkg-config": "/usr/bin/pkg-config",
    "dpkg-dev": "/usr/bin/dpkg-source",
    "libcjson-dev": "/usr/include/cjson/cJSON.h",
    "libsqlite3-dev": "/usr/include/sqlite3.h",
    "libssl-dev": "/usr/include/openssl/ssl.h",
    "libedit-dev": "/usr/include/histedit.h",
    "libargon2-dev": "/usr/include/argon2.h",
}

SID_SOURCES = Path("/etc/apt/sources.list.d/cityops-sid-src.sources")
SID_SOURCES_TEXT = """\
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""

#: Builds carry this tag; a build without it (or of an older tag) is built again.
BUILD_TAG = "cityops1"

#: Source changes applied before building, each (file, upstream text, replacement).
#: The dynamic-security plugin keeps its clients, roles and groups in hash tables kept
#: sorted on every insertion, an O(n) string scan per new account: creating a city's
#: 100,000 device accounts through the control API takes tens of minutes and blocks the
#: broker's only thread meanwhile. Unsorted insertion is O(1); the plugin sorts the
#: tables once when it loads its file, and nothing else depends on their order.
PATCHES = [
    (
        "plugins/dynamic-security/clients.c",
        "HASH_ADD_INORDER(hh, data->clients, username, username_len, client, client_cmp);",
        "HASH_ADD(hh, data->clients, username, username_len, client);",
    ),
    (
        "plugins/dynamic-security/roles.c",
        "HASH_ADD_INORDER(hh, data->roles, rolename, rolename_len, role, role_cmp);",
        "HASH_ADD(hh, data->roles, rolename, rolename_len, role);",
    ),
    (
        "plugins/dynamic-security/groups.c",
        "HASH_ADD_INORDER(hh, data->groups, groupname, groupname_len, group, group_cmp);",
        "HASH_ADD(hh, data->groups, groupname, groupname_len, group);",
    ),
]

CMAKE_OPTIONS = [
    "-DWITH_TESTS=OFF",
    "-DWITH_DOCS=OFF",
    "-DWITH_LTO=OFF",
    "-DWITH_BUNDLED_DEPS=ON",
    "-DCMAKE_BUILD_TYPE=Release",
]


@dataclass(frozen=True)
class MosquittoInstall:
    """Where a usable Mosquitto ≥ 2.1 lives."""

    broker: Path
    plugin_dir: Path
    bin_dir: Path
    version: str

    def plugin(self, name: str) -> Path:
        return self.plugin_dir / name

    @property
    def persist_sqlite(self) -> Path:
        return self.plugin("mosquitto_persist_sqlite.so")

    @property
    def dynamic_security(self) -> Path:
        return self.plugin("mosquitto_dynamic_security.so")

    def client(self, name: str) -> Path:
        """``mosquitto_pub``, ``mosquitto_sub`` or ``mosquitto_ctrl`` of this install."""
        return self.bin_dir / name


def broker_version(broker: Path) -> str | None:
    """The version a Mosquitto binary reports (``mosquitto -h``), or None."""
    try:
        out = subprocess.run(
            [str(broker), "-h"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"mosquitto version (\d+\.\d+\.\d+)", out.stdout + out.stderr)
    return m.group(1) if m else None


def _at_least(version: str) -> bool:
    major, minor, *_ = (int(x) for x in version.split("."))
    return (major, minor) >= MINIMUM


def cached(cache_dir: Path) -> MosquittoInstall | None:
    """The newest usable build of this tag under ``cache_dir``, if any."""
    for prefix in sorted(cache_dir.glob(f"mosquitto-*-{BUILD_TAG}"), reverse=True):
        found = _usable(prefix / "sbin" / "mosquitto", prefix / "lib", prefix / "bin")
        if found is not None:
            return found
    return None


def system() -> MosquittoInstall | None:
    """A system Mosquitto ≥ 2.1 with both plugins (e.g. a newer distribution's package)."""
    broker = Path("/usr/sbin/mosquitto")
    for plugin_dir in [*Path("/usr/lib").glob("*-linux-gnu"), Path("/usr/lib")]:
        found = _usable(broker, plugin_dir, Path("/usr/bin"))
        if found is not None:
            return found
    return None


def _usable(broker: Path, plugin_dir: Path, bin_dir: Path) -> MosquittoInstall | None:
    if not broker.exists() or not all((plugin_dir / p).exists() for p in PLUGINS):
        return None
    version = broker_version(broker)
    if version is None or not _at_least(version):
        return None
    return MosquittoInstall(broker, plugin_dir, bin_dir, version)


def ensure(cache_dir: Path, log: Callable[[str], None]) -> MosquittoInstall:
    """A Mosquitto ≥ 2.1 with persist-sqlite and dynamic-security: found, or built and cached."""
    found = system() or cached(cache_dir)
    if found is not None:
        return found
    if not (is_root() and is_debian() and shutil.which("apt-get")):
        raise StackError(
            "Mosquitto 2.1 with the persist-sqlite and dynamic-security plugins is not "
            f"installed and only root on Debian can build it here; as root run "
            f"`cityops stack up` once (it builds into {cache_dir}), or install a "
            "Mosquitto >= 2.1 with both plugins under /usr"
        )
    return build(cache_dir, log)


def build(cache_dir: Path, log: Callable[[str], None]) -> MosquittoInstall:
    """Fetch Debian's Mosquitto source, build it and install it under ``cache_dir``."""
    ensure_debian_packages(BUILD_PACKAGES, log)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mosquitto-build-", dir=cache_dir) as tmp:
        work = Path(tmp)
        tarball = _fetch_source(work, log)
        version = re.search(r"mosquitto_(\d+\.\d+\.\d+)", tarball.name)
        if version is None or not _at_least(version.group(1)):
            raise StackError(
                f"Debian's Mosquitto source is {tarball.name}, older than 2.1; "
                "install a Mosquitto >= 2.1 with the persist-sqlite and dynamic-security "
                "plugins under /usr"
            )
        prefix = cache_dir / f"mosquitto-{version.group(1)}-{BUILD_TAG}"
        log(f"building Mosquitto {version.group(1)} into {prefix} (about a minute)")
        run(["tar", "-xzf", str(tarball), "-C", str(work)])
        source = next(p for p in work.iterdir() if p.is_dir() and (p / "CMakeLists.txt").exists())
        apply_patches(source)
        build_dir = source / "build"
        build_dir.mkdir()
        staging = work / "install"
        run(
            [
                "cmake",
                "-S",
                str(source),
                "-B",
                str(build_dir),
                *CMAKE_OPTIONS,
                f"-DCMAKE_INSTALL_PREFIX={prefix}",
                f"-DCMAKE_INSTALL_RPATH={prefix / 'lib'}",
                "-DCMAKE_INSTALL_LIBDIR=lib",
            ],
            timeout=600,
        )
        run(["make", "-C", str(build_dir), f"-j{os.cpu_count() or 2}"], timeout=1800)
        run(["make", "-C", str(build_dir), "install", f"DESTDIR={staging}"], timeout=600)
        built = staging / str(prefix).lstrip("/")
        if prefix.exists():
            shutil.rmtree(prefix)
        shutil.move(str(built), prefix)
    found = cached(cache_dir)
    if found is None:
        raise StackError(
            f"the Mosquitto build in {prefix} lacks the broker or one of {', '.join(PLUGINS)}"
        )
    return found


def apply_patches(source: Path) -> None:
    """Apply :data:`PATCHES` to an unpacked source tree; raise if one does not apply."""
    for name, upstream, replacement in PATCHES:
        path = source / name
        text = path.read_text()
        if text.count(upstream) != 1:
            raise StackError(
                f"{path} differs from the Mosquitto 2.1 source this build knows: "
                f"{upstream!r} is not there once; install a Mosquitto >= 2.1 with both "
                "plugins under /usr instead"
            )
        path.write_text(text.replace(upstream, replacement))


def _fetch_source(work: Path, log: Callable[[str], None]) -> Path:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not SID_SOURCES.exists():
        log(f"adding a deb-src-only entry for Debian sid ({SID_SOURCES}) to fetch Mosquitto 2.1")
        SID_SOURCES.write_text(SID_SOURCES_TEXT)
        run(["apt-get", "update", "-qq"], env=env, timeout=900)
    command = ["apt-get", "source", "--download-only", "mosquitto"]
    proc = subprocess.run(command, cwd=work, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        run(["apt-get", "update", "-qq"], env=env, timeout=900)
        proc = subprocess.run(
            command, cwd=work, capture_output=True, text=True, env=env, check=False
        )
    if proc.returncode != 0:
        raise StackError(
            "could not fetch Debian's Mosquitto source (`apt-get source --download-only "
            f"mosquitto`):\n{(proc.stdout + proc.stderr).strip()[-2000:]}"
        )
    tarballs = sorted(work.glob("mosquitto_*.orig.tar.gz"))
    if not tarballs:
        raise StackError(f"`apt-get source` left no mosquitto_*.orig.tar.gz in {work}")
    return tarballs[-1]
