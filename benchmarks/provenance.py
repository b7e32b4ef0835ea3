"""What a results file records about how it was measured: the commit, and the resolved configs.

Why: a figure in a README is only reproducible with the code and the configuration that produced
it. Every results file a benchmark writes carries ``provenance``: the commit it was written at
(and whether tracked files had uncommitted changes), the command line, and, per run it reads, the
resolved ``config.yaml`` the run dumped and the commit the run recorded in its ``metrics.json``
(``"not recorded"`` for runs from before runs recorded it).
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable

import yaml

ROOT = Path(__file__).resolve().parents[1]


def git_commit(root: Path = ROOT) -> tuple[str | None, bool]:
    """(HEAD's sha, whether tracked files other than results differ from it); (None, False)
    outside a git checkout. Results files are left out: a benchmark rewrites them as it runs."""
    from recsys_committee.train.runner import code_commit  # the commit runs record in metrics.json

    sha = code_commit()
    if sha is None:
        return None, False
    try:
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)benchmarks/results"],
                                cwd=root, capture_output=True, text=True).stdout.strip()
        return sha, bool(status)
    except OSError:
        return sha, False


def provenance(run_dirs: Iterable[Path] = ()) -> dict[str, Any]:
    sha, dirty = git_commit()
    configs, run_commits = {}, {}
    for run_dir in run_dirs:
        run_dir = Path(run_dir)
        if (run_dir / "config.yaml").is_file():
            configs[run_dir.name] = yaml.safe_load((run_dir / "config.yaml").read_text())
        if (run_dir / "metrics.json").is_file():
            run_commits[run_dir.name] = json.loads((run_dir / "metrics.json").read_text()).get("commit") or "not recorded"
    return {
        "commit": sha,
        "uncommitted_changes": dirty,
        "written_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv,
        "run_commits": run_commits,
        "configs": configs,
    }
