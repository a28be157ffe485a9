"""Where the course lives on GitHub, written into every notebook's install cell and the README's Colab badges.

:data:`REPO` is the one place the repository is named. A fork changes that line and runs ``make links``
(``python -m rlhf_helpers links``), which rewrites the first code cell of every notebook (:func:`install_cell`) and
the README's badges (:func:`badge_url`); ``links --check`` (run by the tests) fails when any of them disagrees.

The install cell runs only on Colab, and not in a notebook that another one runs (``$RLHF_RUNNER``, set by
:func:`rlhf_helpers.runner.execute_notebook`: the course is installed already). It installs ``requirements.txt`` (the runtime libraries; the local lab and
dev tools are in ``requirements-dev.txt``) with Colab's own torch, ipykernel, Jupyter and notebook packages held at
the versions Colab ships (a pip constraints file made from ``pip list --format=freeze``): reinstalling them can break the
running Colab kernel, and torch would be several GB.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from .core.artifacts import REPO_ROOT, write_text

REPO = "rlhf-course/rlhf-course"  # GitHub owner/name of the course; a fork changes this line and runs `make links`
BRANCH = "main"
HELD = ("torch", "torchvision", "torchaudio", "ipykernel", "ipython", "jupyter[-_a-z]*", "notebook", "tornado",
        "pyzmq")  # Colab's packages the install must leave as they are (regular expressions for grep -E)
CLONE_DIR = "/content/rlhf-course"
BADGE = re.compile(r"https://colab\.research\.google\.com/github/[^/\s)]+/[^/\s)]+/blob/[^/\s)]+/notebooks/")


def repo_url(repo: str = REPO) -> str:
    return f"https://github.com/{repo}"


def badge_url(notebook: str, repo: str = REPO, branch: str = BRANCH) -> str:
    """The "Open in Colab" link of ``notebook`` (a file name under ``notebooks/``)."""
    return f"https://colab.research.google.com/github/{repo}/blob/{branch}/notebooks/{notebook}"


def install_cell(repo: str = REPO) -> str:
    """The first code cell of every notebook: on Colab only, clone the course and install what Colab lacks."""
    held = "|".join(HELD)
    return "\n".join([
        "import os",
        "import sys",
        'if "google.colab" in sys.modules and not os.environ.get("RLHF_RUNNER"):  # Colab, not run by another notebook:',
        "    # fetch the course, install what Colab lacks",
        f"    !git clone -q {repo_url(repo)} {CLONE_DIR}",
        f"    %cd {CLONE_DIR}",
        f"    !pip list --format=freeze | grep -iE '^({held})==' > /tmp/colab-held.txt  # Colab's torch, kernel",
        "    %pip install -q -r requirements.txt -c /tmp/colab-held.txt -e .",
    ])


def _is_install_cell(source: str) -> bool:
    return '"google.colab" in sys.modules' in source


def write_links(root: Path = REPO_ROOT, repo: str = REPO, check: bool = False) -> list[Path]:
    """Rewrite the install cell of every notebook under ``root/notebooks`` and the Colab badges of
    ``root/README.md`` for ``repo``; return the files that changed (``check=True``: that would change, nothing is
    written). A notebook without an install cell as its first code cell is an error (``ValueError``)."""
    changed: list[Path] = []
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        text = path.read_text()
        nb = json.loads(text)
        first = next((c for c in nb["cells"] if c["cell_type"] == "code"), None)
        if first is None or not _is_install_cell("".join(first["source"])):
            raise ValueError(f"{path}: the first code cell is not the Colab install cell")
        lines = install_cell(repo).split("\n")
        first["source"] = [line + "\n" for line in lines[:-1]] + lines[-1:]
        new = json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n"
        if new != text:
            changed.append(path)
            if not check:
                write_text(path, new)
    readme = root / "README.md"
    text = readme.read_text()
    new = BADGE.sub(badge_url("", repo), text)
    if new != text:
        changed.append(readme)
        if not check:
            write_text(readme, new)
    return changed


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlhf_helpers links",
                                     description=f"Write {REPO!r} into the notebooks' install cells and the badges.")
    parser.add_argument("--check", action="store_true", help="only report the files that disagree (exit 1)")
    args = parser.parse_args(argv)
    changed = write_links(check=args.check)
    for path in changed:
        print(f"{'out of date' if args.check else 'updated'}: {path.relative_to(REPO_ROOT)}")
    return 1 if args.check and changed else 0
