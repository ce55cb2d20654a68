"""The README and docs: every Python example runs and prints what the page says it prints."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```\n(?:\nprints\n\n```text\n(.*?)^```\n)?", re.M | re.S)


def python_examples(page: Path) -> list[tuple[str, str | None]]:
    """(code, expected output or None) for each ```python block of ``page``."""
    return [
        (match.group(2), match.group(3))
        for match in BLOCK.finditer(page.read_text(encoding="utf-8"))
        if match.group(1) == "python"
    ]


PAGES = [
    page
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    if python_examples(page)
]


def test_the_pages_with_examples_are_found() -> None:
    names = {page.name for page in PAGES}
    assert {"README.md", "quickstart.md", "plugins.md", "metrics.md"} <= names


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_examples_run_and_print_what_they_say(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    examples = python_examples(page)
    if any('load_encoder("musicnn")' in code for code, _ in examples):
        from newwave.encoders.musicnn import INSTALL_HINT, packaged_checkpoint

        if packaged_checkpoint() is None:
            pytest.skip(
                f"{page.name} runs musicnn, whose weights are not installed: {INSTALL_HINT}"
            )
    monkeypatch.chdir(tmp_path)
    module = types.ModuleType(f"docs_example_{page.stem}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for number, (code, expected) in enumerate(examples, start=1):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"{page.name}, example {number}", "exec"), module.__dict__)
        if expected is not None:
            assert out.getvalue() == expected, f"{page.name}, example {number}"


def test_illustrative_examples_compile() -> None:
    """```py blocks need real model weights, so they are not run; they must at least parse."""
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for match in BLOCK.finditer(page.read_text(encoding="utf-8")):
            if match.group(1) == "py":
                compile(match.group(2), str(page), "exec")


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = [m.group(1).strip() for m in re.finditer(r"```bash\n(.*?)```", section, re.S)]
    assert commands == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert any(shlex.split(line, comments=True) == ["make", "test"] for line in ci.splitlines())


def test_makefile_pins_the_cpu_torch_build_and_runs_every_check() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "TORCH ?= torch==2.13.0" in makefile
    test_target = re.search(r"^test: (.*)$", makefile, re.M)
    assert test_target is not None
    assert set(test_target.group(1).split()) >= {"lint", "typecheck", "unit"}
