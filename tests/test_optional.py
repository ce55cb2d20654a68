"""One way to import an optional dependency: the error names what to pip install."""

from __future__ import annotations

import sys

import pytest

from newwave._optional import import_optional
from newwave.errors import MissingDependencyError


def test_an_installed_module_is_returned() -> None:
    assert import_optional("json", purpose="x") is sys.modules["json"]
    assert import_optional("os.path", purpose="x") is sys.modules["os.path"]


def test_a_missing_module_names_the_extra_or_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "no_such_mod", None)
    with pytest.raises(MissingDependencyError) as info:
        import_optional("no_such_mod.sub", purpose="doing it", extra="tags", package="No-Such")
    assert str(info.value).startswith("doing it needs No-Such, which is not installed (")
    assert str(info.value).endswith("): pip install 'newwave-music[tags]'")
    assert isinstance(info.value.__cause__, ImportError)
    with pytest.raises(
        MissingDependencyError, match=r"needs no_such_mod, .*: pip install no_such_mod$"
    ):
        import_optional("no_such_mod", purpose="doing it")


def test_catch_widens_what_counts_as_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(name: str, *args: object, **kwargs: object) -> object:
        raise OSError("cannot load library 'libthing'")

    monkeypatch.setattr("builtins.__import__", broken)
    with pytest.raises(OSError, match="libthing") as info:
        import_optional("thing", purpose="x")
    assert type(info.value) is OSError
    with pytest.raises(MissingDependencyError, match="libthing"):
        import_optional("thing", purpose="x", catch=(ImportError, OSError))
