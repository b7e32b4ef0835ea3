"""The recommendation side's downloads: MovieLens-100K (RecBole's atomic files, from its wheel).

``python -m recsys_committee.data.logs.downloads`` (``make data`` runs it) fetches and verifies
them into ``data/``; see docs/DATA.md for the source and licence.
"""

from __future__ import annotations

from recsys_committee.fetch import Artifact, fetch_main, pip_download

_ML100K_PREFIX = "recbole/dataset_example/ml-100k/"

ARTIFACTS: dict[str, Artifact] = {
    "ml-100k": Artifact(
        name="ml-100k",
        target_dir="ml-100k",
        fetch=pip_download("recbole==1.2.1"),
        members={f"{_ML100K_PREFIX}ml-100k.{ext}": f"ml-100k.{ext}" for ext in ("inter", "user", "item")},
        sha256={
            "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
            "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
            "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
        },
    ),
}


def main(argv: list[str] | None = None) -> int:
    return fetch_main(ARTIFACTS, argv, "Fetch and verify the recommendation data into data/.")


if __name__ == "__main__":
    raise SystemExit(main())
