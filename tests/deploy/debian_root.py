"""Fresh Debian 12 roots for the installer's real tests: built once by debootstrap, kept as tarballs.

A root is built with network (that is the download), packed as a tarball under
``/var/tmp/gatepost-test`` and unpacked fresh for each test, so later runs on this
machine skip the download.  The arm64 root is built with ``debootstrap --foreign`` and
finished by its second stage run through qemu-user-static, registered with binfmt_misc
(mounted here if it is not: no systemd runs on this machine to do it).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import subprocess
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("GATEPOST_TEST_CACHE", "/var/tmp/gatepost-test"))
SUITE = "bookworm"
BINFMT = Path("/proc/sys/fs/binfmt_misc")


def needs(*tools: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("debootstrap, chroot and mounts need root")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"missing {', '.join(missing)} (bootstrap's TEST_SYSTEM_PACKAGES installs them)")


def run(argv: Sequence[str], *, timeout: float = 1800, input: bytes | None = None, check: bool = True) -> str:
    done = subprocess.run(list(argv), capture_output=True, timeout=timeout, input=input, check=False)
    output = (done.stdout + done.stderr).decode("utf-8", "replace")
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {done.returncode}:\n{output[-6000:]}")
    return output


def enable_arm64_emulation() -> None:
    """qemu-aarch64 registered with binfmt_misc, with the F flag (no qemu binary needed inside the root)."""
    if not (BINFMT / "register").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)])
    entry = BINFMT / "qemu-aarch64"
    if not entry.exists() or "enabled" not in entry.read_text():
        run(["update-binfmts", "--enable", "qemu-aarch64"])
    text = entry.read_text()
    if "enabled" not in text:
        pytest.skip(f"qemu-aarch64 could not be enabled in binfmt_misc:\n{text}")


def _mirror() -> list[str]:
    mirror = os.environ.get("GATEPOST_TEST_DEBIAN_MIRROR")
    return [mirror] if mirror else []  # else debootstrap's own default


def _prepare_online(root: Path) -> None:
    """apt inside the root needs the host's resolver while it is being built (and only then)."""
    shutil.copy2("/etc/resolv.conf", root / "etc/resolv.conf")


def build_root(
    arch: str, include: Sequence[str], install: Sequence[str] = (), download_only: Sequence[str] = ()
) -> Path:
    """The cached root tarball for ``arch`` (``amd64``, ``arm64``), built when missing.

    ``include`` goes to debootstrap; ``install`` is installed after by apt inside the root
    (debootstrap's own resolver fails on large trees such as Chromium's);
    ``download_only`` packages are fetched into ``debs-<arch>/`` beside the tarball and
    not installed: the test installs them from the bundle, offline.
    """
    key = ",".join([*include, "/", *install, "/", *download_only]).encode()
    name = f"debian12-{arch}-{hashlib.sha256(key).hexdigest()[:10]}"  # another package list, another root
    tarball = CACHE / f"{name}.tar"
    if tarball.is_file():
        return tarball
    CACHE.mkdir(parents=True, exist_ok=True)
    work = CACHE / f"{name}.building"
    if work.exists():
        _remove(work)
    foreign = arch != {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine())
    options = [f"--arch={arch}", "--variant=minbase", f"--include={','.join(include)}"]
    run(["debootstrap", *options, *(["--foreign"] if foreign else []), SUITE, str(work), *_mirror()])
    if foreign:
        run(["chroot", str(work), "/debootstrap/debootstrap", "--second-stage"])
    if install or download_only:
        _prepare_online(work)
        apt = ["chroot", str(work), "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-y", "-q"]
        with mounted(work):
            run([*apt, "update"])
            if install:
                run([*apt, "install", "--no-install-recommends", *install])
            if download_only:
                run([*apt, "clean"])  # only what download_only needs ends up in debs-<arch>/
                run([*apt, "install", "--no-install-recommends", "--download-only", *download_only])
        debs = CACHE / f"debs-{arch}"
        debs.mkdir(exist_ok=True)
        for deb in (work / "var/cache/apt/archives").glob("*.deb"):
            shutil.move(deb, debs / deb.name)
        run(["chroot", str(work), "apt-get", "clean"])
    (work / "etc/resolv.conf").unlink(missing_ok=True)
    partial = tarball.with_suffix(".partial")
    with tarfile.open(partial, "w") as archive:
        archive.add(work, arcname=".")
    partial.rename(tarball)
    _remove(work)
    return tarball


def _remove(folder: Path) -> None:
    """Delete a half-built root, never through a mount (a bind-mounted /dev is this machine's)."""
    inside = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    prefix = str(folder.resolve())
    for point in sorted((p for p in inside if p.startswith(prefix + "/")), reverse=True):
        run(["umount", "-l", point], check=False)
    inside = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    if any(p.startswith(prefix + "/") for p in inside):
        raise AssertionError(f"{folder} still has mounts under it; not deleting it")
    shutil.rmtree(folder)


def cached_debs(arch: str) -> list[Path]:
    return sorted((CACHE / f"debs-{arch}").glob("*.deb"))


def unpack(tarball: Path, into: Path) -> Path:
    into.mkdir(parents=True)
    run(["tar", "-xpf", str(tarball), "-C", str(into)])  # tar keeps device nodes, owners and modes
    return into


@contextlib.contextmanager
def mounted(root: Path) -> Iterator[Path]:
    """/proc, /sys, /dev and /dev/pts of this machine inside ``root``, unmounted whatever happens."""
    points = []
    try:
        for source, point, kind in (
            ("proc", "proc", ["-t", "proc"]),
            ("/sys", "sys", ["--rbind"]),
            ("/dev", "dev", ["--rbind"]),
        ):
            target = root / point
            target.mkdir(exist_ok=True)
            run(["mount", *kind, source, str(target)])
            points.append(target)
        yield root
    finally:
        for target in reversed(points):
            run(["umount", "-R", "-l", str(target)], check=False)


def chroot(
    root: Path, command: str, *, network: bool = False, timeout: float = 1800, check: bool = True
) -> str:
    """``sh -c command`` inside ``root``; with the network off unless asked (a new network
    namespace with only loopback, brought up so local services still talk)."""
    inner = ["chroot", str(root), "/bin/sh", "-c", command]
    if network:
        return run(inner, timeout=timeout, check=check)
    return run(
        ["unshare", "--net", "/bin/sh", "-c", 'ip link set lo up && exec "$@"', "sh", *inner],
        timeout=timeout,
        check=check,
    )
