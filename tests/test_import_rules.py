"""The package's architecture as a test: the shared core imports no stage, no import circle, no private name
used across modules (the checker reads the source; nothing is imported). Also: every module has a test file."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "rlhf_helpers"
CHECKER = ROOT.parent / "shared" / "tools" / "import_rules.py"


def imports_of(path: Path) -> set[str]:
    """The rlhf_helpers modules that ``path`` imports (relative imports resolved; inside functions too)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names]
            found.update(n for n in [base, *names] if n.startswith("rlhf_helpers"))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("rlhf_helpers"))
    return found


def test_the_core_imports_no_stage_module():
    for path in sorted((PACKAGE / "core").rglob("*.py")):
        outside = sorted(m for m in imports_of(path) if not m.startswith("rlhf_helpers.core"))
        assert not outside, f"{path.relative_to(ROOT)} imports {outside}: the shared core must not depend on a stage"


def test_the_checker_finds_no_circle_and_no_private_use():
    if not CHECKER.exists():
        pytest.skip(f"{CHECKER} not present")
    out = subprocess.run([sys.executable, str(CHECKER), str(PACKAGE)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_circle_would_be_caught(tmp_path):
    if not CHECKER.exists():
        pytest.skip(f"{CHECKER} not present")
    pkg = tmp_path / "rlhf_helpers"
    (pkg / "core").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "core" / "__init__.py").write_text("")
    (pkg / "core" / "a.py").write_text("from ..stage import x\n")
    (pkg / "stage.py").write_text("from .core.a import y\nx = 1\n")
    out = subprocess.run([sys.executable, str(CHECKER), str(pkg)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "circle" in out.stdout and "core" in out.stdout


def test_every_module_has_its_own_test_file():
    modules = [p for p in PACKAGE.rglob("*.py") if p.name not in ("__init__.py", "__main__.py")
               and "metrics" not in p.parts]
    packages = [p.parent for p in PACKAGE.rglob("__init__.py") if p.parent not in (PACKAGE, PACKAGE / "core")]
    names = {p.stem for p in modules if p.parent in (PACKAGE, PACKAGE / "core")} | {p.name for p in packages}
    missing = sorted(n for n in names if not (ROOT / "tests" / f"test_{n}.py").exists())
    assert not missing, f"modules without a tests/test_<module>.py: {missing}"


def test_the_readme_and_the_package_docstring_name_real_files():
    import re

    import rlhf_helpers

    for where, text in (("README.md", (ROOT / "README.md").read_text(encoding="utf-8")),
                        ("rlhf_helpers/__init__.py", rlhf_helpers.__doc__)):
        rows = [line for line in text.splitlines() if line.startswith("| ") and "test_" in line]
        assert len(rows) >= 9, f"{where}: the notebook -> module -> test table is missing"
        for module in re.findall(r"`(\w+\.py)`", "\n".join(rows)):
            folder = ROOT / "tests" if module.startswith("test_") else PACKAGE
            assert (folder / module).exists(), f"{where} names {module}, which does not exist"
        numbers = {m for row in rows for m in re.findall(r"^\| (\d\d) ", row)}
        assert numbers == {p.name[:2] for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}, where


def test_every_relative_link_of_the_markdown_resolves():
    """The links between the README, the workshop guide, the datasheet, the results summaries, the notebooks and
    their solutions point at files and folders that exist (web links and in-page anchors are not checked). A link
    with no target fails here."""
    import re

    import nbformat

    pages = [(p, p.read_text(encoding="utf-8")) for p in [
        ROOT / "README.md", *sorted((ROOT / "workshop").glob("*.md")), ROOT / "data" / "README.md",
        *sorted((ROOT / "outputs" / "results").glob("*.md"))]]
    pages += [(p, "\n".join(c.source for c in nbformat.read(str(p), 4).cells if c.cell_type == "markdown"))
              for p in sorted((ROOT / "notebooks").rglob("*.ipynb"))]
    assert {ROOT / "workshop" / "README.md", ROOT / "notebooks" / "solutions" / "05_ppo_solutions.ipynb"} <= {
        p for p, _ in pages}
    broken, checked = [], 0
    for page, text in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://", "#", "mailto:")):
                continue
            checked += 1
            if not (page.parent / target.split("#")[0]).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken
    assert checked >= 60, checked  # the pattern still finds the links


def test_the_printable_page_is_one_a4_landscape_svg_linked_from_the_guide():
    """workshop/one_page.svg: well-formed SVG (a browser prints it), one A4 landscape page, linked from the guide."""
    import xml.etree.ElementTree as ET

    svg = ROOT / "workshop" / "one_page.svg"
    root = ET.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and (root.get("width"), root.get("height")) == ("297mm", "210mm")
    texts = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    assert all(w in texts for w in ("Rollout", "Advantages (GAE)", "Reward model", "clip")), texts[:200]
    assert "](one_page.svg)" in (ROOT / "workshop" / "README.md").read_text()
