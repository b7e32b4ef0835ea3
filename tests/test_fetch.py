"""Registry fetchers: a .deb is read without dpkg, and a bad digest is refused by name."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from recsys_committee.fetch import Artifact, deb_reader, fetch_artifact


def make_deb(path: Path, files: dict[str, bytes]) -> Path:
    """A minimal Debian package: ar archive with debian-binary, control.tar.gz, data.tar.gz."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    members = [("debian-binary", b"2.0\n"), ("control.tar.gz", b""), ("data.tar.gz", data.getvalue())]
    blob = b"!<arch>\n"
    for name, content in members:
        header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(content):<10}`\n".encode()
        blob += header + content + (b"\n" if len(content) % 2 else b"")
    path.write_bytes(blob)
    return path


def test_deb_members_are_read_and_gunzipped(tmp_path: Path) -> None:
    deb = make_deb(tmp_path / "x.deb", {"usr/share/a.bin": b"plain", "usr/share/b-ubyte.gz": gzip.compress(b"idx bytes")})
    read = deb_reader(deb, tmp_path)
    assert read("usr/share/a.bin") == b"plain"
    assert read("usr/share/b-ubyte") == b"idx bytes"  # asked without .gz: decompressed
    with pytest.raises(FileNotFoundError, match="usr/share/missing"):
        read("usr/share/missing")


def test_not_a_deb_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.deb"
    bad.write_bytes(b"PK\x03\x04 a zip, not a deb")
    with pytest.raises(RuntimeError, match="not a Debian package"):
        deb_reader(bad, tmp_path)


def test_digest_mismatch_names_the_file(tmp_path: Path) -> None:
    def fetch(tmp: Path) -> Path:
        return make_deb(tmp / "p.deb", {"f.bin": b"tampered"})

    artifact = Artifact("x", "x", fetch, {"f.bin": "f.bin"}, {"f.bin": "0" * 64}, open_archive=deb_reader)
    with pytest.raises(RuntimeError, match="sha256 mismatch for .*f.bin"):
        fetch_artifact(artifact, tmp_path / "root")
