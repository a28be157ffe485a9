"""The repository named once (rlhf_helpers.colab_links.REPO): the notebooks' install cells and the README's Colab
badges agree with it, `links` rewrites them all for a fork, and the Colab install leaves Colab's torch and kernel."""

from __future__ import annotations

import json
import shutil

import pytest

from rlhf_helpers import colab_links
from rlhf_helpers.core.artifacts import REPO_ROOT


def test_every_install_cell_and_badge_names_the_repository():
    assert colab_links.write_links(check=True) == []  # `make links` has nothing to change


@pytest.fixture
def fork(tmp_path):
    shutil.copytree(REPO_ROOT / "notebooks", tmp_path / "notebooks")
    shutil.copy(REPO_ROOT / "README.md", tmp_path / "README.md")
    return tmp_path


def test_links_rewrites_every_cell_and_badge_for_a_fork(fork):
    notebooks = sorted((fork / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert colab_links.write_links(fork, "someone/my-fork", check=True) == [*notebooks, fork / "README.md"]
    assert "someone/my-fork" not in (fork / "README.md").read_text()  # check mode writes nothing
    colab_links.write_links(fork, "someone/my-fork")
    for path in notebooks:
        first = next(c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
        assert "".join(first["source"]) == colab_links.install_cell("someone/my-fork")
    readme = (fork / "README.md").read_text()
    assert readme.count("colab.research.google.com/github/someone/my-fork/blob/main/notebooks/") == len(notebooks)
    assert "github/rlhf-course/rlhf-course" not in readme
    assert colab_links.write_links(fork, "someone/my-fork", check=True) == []


def test_a_notebook_without_the_install_cell_is_an_error(fork):
    path = fork / "notebooks" / "03_sft_qlora.ipynb"
    nb = json.loads(path.read_text())
    next(c for c in nb["cells"] if c["cell_type"] == "code")["source"] = ["print('hi')"]
    path.write_text(json.dumps(nb))
    with pytest.raises(ValueError, match="03_sft_qlora.ipynb"):
        colab_links.write_links(fork, check=True)


def test_colab_install_holds_colab_packages_and_installs_runtime_requirements_only():
    cell = colab_links.install_cell()
    assert "-c /tmp/colab-held.txt" in cell and "torch|" in cell and "ipykernel" in cell
    runtime = [line.split(">")[0].split("=")[0].strip() for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert not {"jupyterlab", "ipykernel", "pytest", "ruff"} & set(runtime)
    assert {"nbclient", "nbformat"} <= set(runtime)  # ensure_stages runs an earlier notebook on Colab too...
    assert "jupyter[-_a-z]*" in cell  # ...with the jupyter_client Colab ships (held: its kernel depends on it)
    assert 'not os.environ.get("RLHF_RUNNER")' in cell  # and a notebook run that way does not install again
    assert "torch>=2.6" in (REPO_ROOT / "requirements.txt").read_text()  # transformers 5's floor
