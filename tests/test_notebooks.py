"""The lesson notebooks as files, and the Binder set-up.

nbval runs the notebooks themselves: the pytest section of pyproject.toml collects
``notebooks/`` with ``--nbval-lax``. These tests check what a reader and Binder get:
numbered lessons listed in ``notebooks/README.md``, saved small, with any outputs from
one top-to-bottom run and no widget state, and a ``binder/`` folder that installs the
package's own dependencies with CPU-only PyTorch. Nothing here uses the network.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import nbformat
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
BINDER = ROOT / "binder"

MAX_NOTEBOOK_BYTES = 1_000_000
NOTEBOOK_NAME = re.compile(r"(\d\d)_[a-z0-9]+(?:_[a-z0-9]+)*\.ipynb")
QUICK_MODE_VARIABLE = "ALRAO_EDU_QUICK"
PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"


def notebook_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def read_notebook(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def code_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in notebook.cells if cell.cell_type == "code" and cell.source.strip()]


each_notebook = pytest.mark.parametrize("path", notebook_paths(), ids=lambda path: path.name)


def test_first_lessons_exist():
    names = {path.name for path in notebook_paths()}
    for name in ("01_quickstart.ipynb", "03_inside_alrao.ipynb", "04_your_own_model.ipynb", "05_intervals.ipynb"):
        assert name in names


def test_notebook_names_are_numbered():
    numbers = []
    for path in notebook_paths():
        match = NOTEBOOK_NAME.fullmatch(path.name)
        assert match, f"{path.name} is not named NN_lesson_name.ipynb"
        numbers.append(int(match.group(1)))
    assert len(numbers) == len(set(numbers)), f"two notebooks share a number: {sorted(numbers)}"


def test_readme_lists_every_notebook_in_order():
    readme = (NOTEBOOKS / "README.md").read_text()
    linked = re.findall(r"\]\(([^)]+\.ipynb)\)", readme)
    on_disk = [path.name for path in notebook_paths()]
    assert linked == on_disk, f"notebooks/README.md links {linked}, the folder holds {on_disk}"


@each_notebook
def test_notebook_is_under_one_megabyte(path):
    size = path.stat().st_size
    assert size < MAX_NOTEBOOK_BYTES, f"{path.name} is {size:,} bytes"


@each_notebook
def test_notebook_has_no_widget_state(path):
    notebook = read_notebook(path)
    assert "widgets" not in notebook.metadata
    for cell in code_cells(notebook):
        for output in cell.get("outputs", []):
            assert WIDGET_STATE_MIME not in output.get("data", {})


@each_notebook
def test_notebook_outputs_come_from_one_run(path):
    # Execution counts 1, 2, 3, ... in cell order: the saved outputs come from one
    # top-to-bottom run, not from cells run by hand in another order. A notebook saved
    # unexecuted passes too: a dashboard's output means nothing without its widget state.
    counts = [cell.execution_count for cell in code_cells(read_notebook(path))]
    unexecuted = [None] * len(counts)
    assert counts in (list(range(1, len(counts) + 1)), unexecuted), f"{path.name} execution counts: {counts}"


@each_notebook
def test_notebook_has_no_error_output(path):
    for index, cell in enumerate(read_notebook(path).cells):
        for output in cell.get("outputs", []):
            assert output.output_type != "error", f"{path.name} cell {index}: {output.get('ename')}"


@each_notebook
def test_notebook_reads_quick_mode_variable(path):
    # Quick mode shrinks data and epochs for the test suite, so a lesson without it would run in
    # full under nbval.
    sources = "\n".join(cell.source for cell in code_cells(read_notebook(path)))
    assert QUICK_MODE_VARIABLE in sources


@each_notebook
def test_notebook_kernel_is_python3(path):
    assert read_notebook(path).metadata.kernelspec.name == "python3"


def parse_requirements(lines: list[str]) -> dict[str, str]:
    """Map each requirement's canonical name to its version specifier, skipping pip options."""
    requirements = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        requirement = Requirement(line)
        requirements[canonicalize_name(requirement.name)] = str(requirement.specifier)
    return requirements


def binder_requirement_lines() -> list[str]:
    return (BINDER / "requirements.txt").read_text().splitlines()


def test_binder_requirements_match_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert parse_requirements(binder_requirement_lines()) == parse_requirements(project["dependencies"])


def test_binder_takes_torch_from_cpu_index():
    options = [line.split() for line in binder_requirement_lines() if line.startswith("-")]
    assert ["--extra-index-url", PYTORCH_CPU_INDEX] in options


def test_binder_postbuild_installs_package_without_dependencies():
    post_build = BINDER / "postBuild"
    assert os.access(post_build, os.X_OK), "binder/postBuild must be executable"
    commands = [line.split() for line in post_build.read_text().splitlines() if line.startswith("pip ")]
    assert ["pip", "install", "--no-deps", "-e", "."] in commands


def test_binder_python_fits_requires_python():
    runtime = (BINDER / "runtime.txt").read_text().strip()
    match = re.fullmatch(r"python-(\d+\.\d+)", runtime)
    assert match, f"binder/runtime.txt should read python-X.Y, reads {runtime!r}"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert Requirement(f"python{requires}").specifier.contains(match.group(1) + ".0")
