from __future__ import annotations

import importlib.metadata
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from newwave import (
    Encoder,
    InvalidInputError,
    PluginError,
    Recommender,
    Track,
    UnknownComponentError,
    hookimpl,
    load_encoder,
    load_fuser,
    load_retriever,
)
from newwave import plugins as plugins_module
from newwave.fusion.score import RRFFuser, WeightedFuser
from newwave.hookspecs import Register
from newwave.index.faiss import FaissRetriever
from newwave.plugins import components, get_plugin_manager


def test_builtin_plugins_are_declared_as_entry_points() -> None:
    names = {ep.name for ep in importlib.metadata.entry_points(group="newwave")}
    assert {"clap", "minilm", "bge-m3", "mlp"} <= names
    assert set(plugins_module.BUILTIN_PLUGINS) <= names
    for ep in importlib.metadata.entry_points(group="newwave"):
        if ep.name in plugins_module.BUILTIN_PLUGINS:
            assert ep.value == plugins_module.BUILTIN_PLUGINS[ep.name]


def test_builtin_components_are_registered() -> None:
    assert {"bge-m3", "clap", "minilm"} <= set(components("encoder"))
    assert {"mlp", "rrf", "weighted"} <= set(components("fuser"))
    assert "faiss" in components("retriever")
    assert components("encoder")["clap"].plugin == "clap"


def test_unknown_encoder_lists_the_available_names() -> None:
    with pytest.raises(UnknownComponentError) as info:
        load_encoder("nope")
    message = str(info.value)
    assert "unknown encoder 'nope'" in message
    for name in ("bge-m3", "clap", "minilm"):
        assert name in message
    assert isinstance(info.value, KeyError)


def test_unknown_name_suggests_a_close_match() -> None:
    with pytest.raises(UnknownComponentError, match="did you mean 'rrf'"):
        load_fuser("rff")


def test_builtin_fusers_and_retriever_load_by_name_and_alias() -> None:
    assert isinstance(load_fuser("rrf"), RRFFuser)
    assert isinstance(load_fuser("reciprocal-rank"), RRFFuser)
    assert isinstance(load_fuser("weighted", weights={"audio": 2.0}), WeightedFuser)
    assert isinstance(load_retriever("faiss", dim=8), FaissRetriever)


def test_third_party_plugin_through_load_encoder_and_recommender(keyword_plugin: None) -> None:
    encoder = load_encoder("kw", dim=32)
    assert encoder.name == "keyword"
    assert encoder.dim == 32
    assert components("encoder")["keyword"].plugin == "test-keyword"

    rec = Recommender(fields={"description": "keyword"})
    rec.add(
        [
            Track(id="a", description="slow sad piano ballad"),
            Track(id="b", description="fast angry punk guitar"),
        ]
    )
    hits = rec.search("sad piano", k=2)
    assert [h.track.id for h in hits] == ["a", "b"]
    assert hits[0].scores["description"] > hits[1].scores["description"]


def test_unregistered_plugin_components_disappear(keyword_plugin: None) -> None:
    pm = get_plugin_manager()
    pm.unregister(name="test-keyword")
    try:
        with pytest.raises(UnknownComponentError):
            load_encoder("keyword")
    finally:
        pm.register(_Plugin(lambda register: None), name="test-keyword")


class _Plugin:
    """A plugin whose register_encoders hook runs ``body``."""

    def __init__(self, body: Callable[[Register], None]):
        self._body = body

    @hookimpl
    def register_encoders(self, register: Register) -> None:
        self._body(register)


def _with_plugin(body: Callable[[Register], None]) -> Callable[[], None]:
    pm = get_plugin_manager()
    pm.register(_Plugin(body), name="test-temporary")
    return lambda: pm.unregister(name="test-temporary")


def test_a_plugin_cannot_take_a_builtin_name() -> None:
    class Impostor:
        name = "minilm"

    undo = _with_plugin(lambda register: register(Impostor))
    try:
        with pytest.warns(UserWarning, match="'minilm'.*already registered"):
            registration = components("encoder")["minilm"]
        assert registration.plugin == "minilm"
    finally:
        undo()


def test_registration_without_a_name_is_a_plugin_error() -> None:
    undo = _with_plugin(lambda register: register(lambda: None))
    try:
        with pytest.raises(PluginError, match="without a name"):
            components("encoder")
    finally:
        undo()


def test_factory_that_builds_the_wrong_type_is_a_plugin_error() -> None:
    undo = _with_plugin(lambda register: register(dict, name="not-an-encoder"))
    try:
        with pytest.raises(PluginError, match="built a dict, not a Encoder"):
            load_encoder("not-an-encoder")
    finally:
        undo()


# -- installed distributions: entry points for real --------------------------------------------

THIRD_PARTY = '''
import numpy as np
from newwave import Encoder, hookimpl

class OnesEncoder(Encoder):
    """Every text maps to the same unit vector."""
    name = "ones"

    @property
    def dim(self):
        return 4

    def _encode_batch(self, batch, modality, role):
        return np.ones((len(batch), 4))

@hookimpl
def register_encoders(register):
    register(OnesEncoder)
'''


def _install(site: Path, dist: str, entry: str, module: str, source: str) -> None:
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[newwave]\n{entry} = {module}\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on sys.path to install fake distributions into."""
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _fresh_manager(monkeypatch: pytest.MonkeyPatch, allowed: str | None) -> None:
    if allowed is None:
        monkeypatch.delenv("NEWWAVE_LOAD_PLUGINS", raising=False)
    else:
        monkeypatch.setenv("NEWWAVE_LOAD_PLUGINS", allowed)
    monkeypatch.setattr(plugins_module, "_manager", plugins_module._new_plugin_manager())


@pytest.mark.parametrize("allowed", [None, "ones-plugin", "nw-ones"])
def test_installed_plugin_loads_by_entry_point(
    site: Path, monkeypatch: pytest.MonkeyPatch, allowed: str | None
) -> None:
    _install(site, "nw-ones", "ones-plugin", "nw_ones_plugin", THIRD_PARTY)
    _fresh_manager(monkeypatch, allowed)
    encoder = load_encoder("ones")
    assert isinstance(encoder, Encoder)
    vectors = encoder.encode_text(["anything", "else"])
    np.testing.assert_allclose(vectors, np.full((2, 4), 0.5, dtype=np.float32))


@pytest.mark.parametrize("allowed", ["", "something-else"])
def test_load_plugins_variable_restricts_installed_plugins(
    site: Path, monkeypatch: pytest.MonkeyPatch, allowed: str
) -> None:
    _install(site, "nw-ones", "ones-plugin", "nw_ones_plugin", THIRD_PARTY)
    _fresh_manager(monkeypatch, allowed)
    with pytest.raises(UnknownComponentError):
        load_encoder("ones")
    assert isinstance(load_retriever("faiss", dim=4), FaissRetriever)  # built-ins always load


def test_broken_installed_plugin_warns_and_is_skipped(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install(site, "nw-broken", "broken", "nw_broken_plugin", "raise ImportError('no luck')\n")
    with pytest.warns(UserWarning, match="plugin 'broken' from nw-broken failed to load"):
        _fresh_manager(monkeypatch, None)
    assert "faiss" in components("retriever")


def test_installed_plugin_cannot_shadow_a_builtin_plugin_name(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install(site, "nw-shadow", "minilm", "nw_shadow_plugin", THIRD_PARTY)
    with pytest.warns(UserWarning, match="plugin 'minilm' from nw-shadow is not loaded"):
        _fresh_manager(monkeypatch, None)
    with pytest.raises(UnknownComponentError):
        load_encoder("ones")


@pytest.mark.usefixtures("keyword_plugin")
def test_a_saved_library_with_an_unknown_encoder_option_fails_clearly(tmp_path: Path) -> None:
    import json
    import sqlite3

    rec = Recommender(fields={"description": "keyword"})
    rec.add([Track(id="a", description="sad piano ballad")])
    rec.save(tmp_path / "library")
    with sqlite3.connect(tmp_path / "library" / "library.sqlite") as db:
        (text,) = db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()
        config = json.loads(text)
        config["fields"]["description"]["encoder"]["options"]["bogus"] = 1
        db.execute("UPDATE meta SET value = ? WHERE key = 'config'", (json.dumps(config),))
    db.close()
    with pytest.raises(InvalidInputError, match=r"encoder 'keyword': .*'bogus'"):
        Recommender.load(tmp_path / "library")
