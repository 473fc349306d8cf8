"""``gatepost bundle``: one tarball that installs gates, consoles and brokers with no internet.

It holds the gatepost wheel, every dependency's wheel for Linux aarch64 (a Raspberry Pi)
and x86_64 (a PC) for CPython 3.11, pip's own wheel, an ``install`` script that needs
nothing but ``python3``, and optionally the ``.deb`` files of the Debian packages a
machine lacks.  Dependencies come as binary wheels only (``pip download --only-binary``);
one that has only a source archive is built here with ``pip wheel`` when it is pure
Python, and named loudly when it is not, because then that machine cannot install it.

Layout::

    gatepost-bundle-<version>/install          the offline installer (runs gatepost install)
    gatepost-bundle-<version>/MANIFEST.json    version, wheels per machine, what is missing
    gatepost-bundle-<version>/wheels/*.whl
    gatepost-bundle-<version>/debs/<arch>/*.deb   only with --debs
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from packaging.utils import canonicalize_name

from deploy.errors import InstallError
from deploy.wheels import ARCHES, PYTHON, WheelName, gatepost_wheel, needed

EXTRAS = ("postgres", "pyzbar")
"""Optional extras a site may use that have wheels everywhere.  ``keyboard`` (evdev) has
only a source archive with C code: gates with keyboard-mode readers use Debian's python3-evdev."""
DEB_ARCH = {"aarch64": "arm64", "x86_64": "amd64"}
_NO_MATCH = re.compile(r"No matching distribution found for ([A-Za-z0-9_.\-]+)")

Say = Callable[[str], None]


def platform_options(arch: str) -> list[str]:
    """Every manylinux tag a Debian 12 machine (glibc 2.36) accepts: pip does not widen ``--platform``."""
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(36, 16, -1)] + [f"manylinux2014_{arch}"]
    return [option for tag in tags for option in ("--platform", tag)]


def _pip(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def source_tree() -> Path | None:
    """The checkout this gatepost runs from, if it runs from one (an editable install)."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").is_file() and (here / "deploy").is_dir() else None


def build_gatepost_wheel(into: Path) -> Path:
    tree = source_tree()
    if tree is None:
        raise InstallError("not running from a gatepost checkout: give the wheel with --wheel FILE")
    # setuptools builds through <tree>/build/lib and never deletes from it: a module removed
    # from the tree would still ship.  It is an ignored build folder; start it afresh.
    shutil.rmtree(tree / "build", ignore_errors=True)
    done = _pip(["wheel", "--no-deps", "--wheel-dir", str(into), str(tree)])
    wheel = gatepost_wheel(into)
    if done.returncode != 0 or wheel is None:
        raise InstallError(f"building the gatepost wheel failed:\n{done.stderr[-3000:]}")
    return wheel


def _download(arch: str, requirements: Sequence[str], wheels: Path, built: Path) -> str | None:
    """Binary wheels for ``arch``; the name of a project pip found no wheel for, if any."""
    done = _pip(
        [
            "download",
            "--only-binary=:all:",
            *platform_options(arch),
            "--python-version",
            PYTHON,
            "--implementation",
            "cp",
            "--find-links",
            str(built),
            "--dest",
            str(wheels),
            *requirements,
        ]
    )
    if done.returncode == 0:
        return None
    missing = _NO_MATCH.search(done.stderr)
    if missing is None:
        raise InstallError(f"pip download for {arch} failed:\n{done.stderr[-3000:]}")
    return missing.group(1)


def _build_pure(project: str, built: Path, say: Say) -> bool:
    """Build ``project`` from its source archive; True if the result is pure Python (fits every machine)."""
    with tempfile.TemporaryDirectory() as scratch:
        done = _pip(["wheel", "--no-deps", "--no-binary", ":all:", "--wheel-dir", scratch, project])
        made = list(Path(scratch).glob("*.whl"))
        if done.returncode != 0 or not made:
            return False
        if not WheelName.parse(made[0].name).pure:
            return False
        shutil.copy2(made[0], built / made[0].name)
        say(f"  built {made[0].name} from its source archive (pure Python)")
        return True


def _gaps(arch: str, wheels: Path, gatepost: Path) -> list[str]:
    """Requirements that apply on ``arch`` but that no wheel in the folder provides (see marker_environment)."""
    fitting = [w for w in wheels.glob("*.whl") if WheelName.parse(w.name).fits(arch)]
    have = {WheelName.parse(w.name).project for w in fitting}
    gaps = []
    for wheel in fitting:
        extras = EXTRAS if wheel.name == gatepost.name else ()
        for requirement in needed(wheel, arch, extras):
            if canonicalize_name(requirement.name) not in have:
                text = requirement.name + (
                    f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
                )
                gaps.append(text + str(requirement.specifier))
    return sorted(set(gaps))


def collect(gatepost: Path, wheels: Path, say: Say) -> dict[str, list[str]]:
    """Download every dependency wheel for each machine; what could not be had, by machine."""
    built = wheels.parent / "built"
    built.mkdir(exist_ok=True)
    shutil.copy2(gatepost, wheels / gatepost.name)
    unavailable: dict[str, list[str]] = {arch: [] for arch in ARCHES}
    for arch in ARCHES:
        say(f"wheels for Linux {arch}, CPython {PYTHON}")
        requested = [f"{wheels / gatepost.name}[{','.join(EXTRAS)}]"]
        for _ in range(20):
            project = _download(arch, requested, wheels, built)
            if project is None:
                gaps = _gaps(arch, wheels, gatepost)
                if not gaps:
                    break
                say(f"  also for {arch} (markers pip judged by this machine): {', '.join(gaps)}")
                requested = gaps
                continue
            if _build_pure(project, built, say):
                continue
            say(f"  !! {project} has no wheel for Linux {arch} / CPython {PYTHON} and is not pure Python")
            unavailable[arch].append(project)
            break
        else:
            raise InstallError(f"dependencies for {arch} did not settle")
    for wheel in built.glob("*.whl"):
        shutil.copy2(wheel, wheels / wheel.name)
    shutil.rmtree(built)
    pip = _pip(["download", "--only-binary=:all:", "--no-deps", "--dest", str(wheels), "pip"])
    if pip.returncode != 0:
        raise InstallError(f"downloading pip's wheel failed:\n{pip.stderr[-2000:]}")
    return unavailable


INSTALL_SCRIPT = """\
#!/bin/sh
# gatepost's offline installer: ./install gate --config gate.toml [--dry-run] [--root DIR]
#                                ./install uninstall gate [--purge]
# Needs only python3 (3.11, as in Raspberry Pi OS bookworm and Debian 12).  It unpacks the
# installer from this bundle's wheels into a temporary folder with pip's own wheel (no
# network, no venv needed yet) and runs `gatepost install ... --bundle <this folder>`,
# which makes /opt/gatepost from the same wheels.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}
command -v "$python" >/dev/null 2>&1 || { echo "install: $python is needed" >&2; exit 1; }
wheel=$(ls "$here"/wheels/gatepost-*.whl | head -n 1)
stamp=/opt/gatepost/.installed-wheel
if [ -x /opt/gatepost/bin/gatepost ] && [ -f "$stamp" ] &&
    [ "$(cut -d ' ' -f 1 "$stamp")" = "$(sha256sum "$wheel" | cut -d ' ' -f 1)" ]; then
    # This very wheel is installed already (a second role, a second run): use it as it is.
    gatepost() { /opt/gatepost/bin/gatepost "$@"; }
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/gatepost-installer.XXXXXX")
    trap 'rm -rf "$work"' EXIT INT TERM
    pip_wheel=$(ls "$here"/wheels/pip-*.whl | head -n 1)
    # The machine's own pip settings (an index, find-links) do not apply: this is offline.
    for variable in $(env | sed -n 's/^\\(PIP_[A-Z_]*\\)=.*/\\1/p'); do unset "$variable"; done
    PIP_CONFIG_FILE=/dev/null "$python" "$pip_wheel/pip" install --quiet --disable-pip-version-check \\
        --root-user-action=ignore --no-index --find-links "$here/wheels" --target "$work/site" gatepost
    gatepost() { PYTHONPATH="$work/site" "$python" -m gatepost "$@"; }
fi
command=${1:-}
case "$command" in
    uninstall) gatepost "$@" ;;
    gate|console|broker) gatepost install "$@" --bundle "$here" ;;
    *) sed -n '2,3p' "$0" | sed 's/^# \\{0,1\\}//'; exit 2 ;;
esac
"""


def write_bundle(out: Path, *, wheel: Path | None, debs: Sequence[Path], say: Say) -> Path:
    """Build the bundle as ``out`` (a ``.tar``, or ``.tar.gz``); returns it."""
    with tempfile.TemporaryDirectory(prefix="gatepost-bundle-") as scratch:
        work = Path(scratch)
        if wheel is None:
            wheel = build_gatepost_wheel(work / "dist")
        version = WheelName.parse(wheel.name).version
        top = work / f"gatepost-bundle-{version}"
        wheels = top / "wheels"
        wheels.mkdir(parents=True)
        unavailable = collect(wheel, wheels, say)
        for deb in debs:
            arch = _deb_arch(deb)
            (top / "debs" / arch).mkdir(parents=True, exist_ok=True)
            shutil.copy2(deb, top / "debs" / arch / deb.name)
        (top / "install").write_text(INSTALL_SCRIPT, encoding="utf-8")
        (top / "install").chmod(0o755)
        manifest = {
            "gatepost": version,
            "python": PYTHON,
            "wheels": {
                arch: sorted(w.name for w in wheels.glob("*.whl") if WheelName.parse(w.name).fits(arch))
                for arch in ARCHES
            },
            "unavailable": unavailable,
            "debs": sorted(str(p.relative_to(top)) for p in top.glob("debs/*/*.deb")),
        }
        (top / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        out.parent.mkdir(parents=True, exist_ok=True)
        mode = "w:gz" if out.name.endswith((".tar.gz", ".tgz")) else "w"
        with tarfile.open(out, mode) as archive:
            archive.add(top, arcname=top.name)
    for arch, names in unavailable.items():
        if names:
            say(
                f"WARNING: no wheel for Linux {arch}: {', '.join(names)} — that machine cannot install from this bundle"
            )
    return out


def _deb_arch(deb: Path) -> str:
    """``name_version_arm64.deb`` -> ``arm64``; ``all`` packages go with every machine."""
    arch = deb.stem.rpartition("_")[2]
    if arch not in (*DEB_ARCH.values(), "all"):
        raise InstallError(f"{deb.name}: not a Debian package for {', '.join(DEB_ARCH.values())} or all")
    return arch
