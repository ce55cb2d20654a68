"""The distribution name: pyproject, the code that looks it up, and every install line agree."""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

from newwave._distribution import DISTRIBUTION, is_this_distribution

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
NAME: str = PYPROJECT["project"]["name"]
# `pip install newwave...` with optional quotes and extras: the requirement's name.
PIP_INSTALL = re.compile(
    r"pip install\s+(?:-\S+\s+)*['\"]?([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?"
)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _install_lines(text: str) -> list[tuple[str, str]]:
    """``(requirement name, extras)`` of each ``pip install`` of a newwave distribution."""
    return [
        (m.group(1), m.group(2) or "")
        for m in PIP_INSTALL.finditer(text)
        if _normalise(m.group(1)).startswith("newwave")
    ]


def test_the_code_names_the_distribution_pyproject_declares() -> None:
    assert _normalise(NAME) == DISTRIBUTION
    assert is_this_distribution(NAME)
    assert is_this_distribution("Newwave_Music")
    assert not is_this_distribution("newwave")  # the unrelated project on PyPI


def test_the_readme_install_line_names_this_distribution() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Install in your project", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    lines = _install_lines(block.group(1))
    assert lines, "the README's install section has no pip install line"
    assert [name for name, _ in lines] == [NAME] * len(lines)
    assert "" in {extras for _, extras in lines}, "the bare install line is missing"


@pytest.mark.parametrize(
    "path",
    [
        ROOT / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
        *sorted((ROOT / "src" / "newwave").rglob("*.py")),
        *sorted((ROOT / "benchmarks").glob("*.py")),
    ],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_every_install_hint_names_this_distribution(path: Path) -> None:
    extras = set(PYPROJECT["project"]["optional-dependencies"])
    for name, wanted in _install_lines(path.read_text(encoding="utf-8")):
        assert name == NAME, f"{path.name}: pip install {name}{wanted}"
        assert set(wanted.strip("[]").split(",")) - {""} <= extras, f"{path.name}: {wanted}"


def test_extras_refer_to_this_distribution() -> None:
    for extra, requirements in PYPROJECT["project"]["optional-dependencies"].items():
        for requirement in requirements:
            if _normalise(requirement).startswith("newwave"):
                assert requirement.startswith(f"{NAME}["), f"extra {extra!r}: {requirement}"


def test_the_installed_metadata_is_this_distribution() -> None:
    assert importlib.metadata.version(NAME) == PYPROJECT["project"]["version"]
    groups = importlib.metadata.distribution(NAME).entry_points.select(group="newwave")
    assert {ep.name for ep in groups} == set(PYPROJECT["project"]["entry-points"]["newwave"])
