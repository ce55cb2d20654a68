"""The bi-encoder trainer: it learns, mines safe hard negatives, resumes exactly, and serves
what it trained (on a tiny random BERT and tokenizer built here)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st

from newwave import IndexCorruptError, InvalidInputError, MissingFileError, Track, load_encoder
from newwave.encoders.biencoder import CONFIG_FILE, HEADS_FILE, BiEncoder, load_backbone
from newwave.encoders.shared import share_backbones
from newwave.plugins import components
from newwave.train import Callback, LoopConfig, load_config
from newwave.train.biencoder import (
    BiEncoderData,
    BiEncoderDataConfig,
    BiEncoderResult,
    BiEncoderTrainingConfig,
    HardNegativeMiner,
    _BiEncoderTask,
    _initial_encoder,
    _linked_groups,
    _PairBatches,
    _retrieval_metrics,
    _split,
    _Texts,
    tower_embeddings,
    train_biencoder,
)
from newwave.train.losses import same_group_mask
from tests.tiny_models import save_tiny_bert

CONCEPTS = 12
WORDS = [f"q{i}" for i in range(CONCEPTS)] + [f"d{i}" for i in range(CONCEPTS)]
FILLER = ["song", "the", "and", "a"]
LONG = "q1 q2 d3 song and the a " * 5  # several windows of 12 tokens


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT and a word-level tokenizer, saved like MiniLM."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), WORDS + FILLER, layers=2)


def concept_pairs(tracks: int = 40, queries: int = 2, seed: int = 0) -> BiEncoderData:
    """Each track stands for 3 of 12 concepts: its document names them with ``d`` words, its
    queries (several, in other orders) with ``q`` words, which the untrained model cannot tie
    to them. Artists and tags (the first concept) are shared between tracks."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, str, str, str, tuple[str, ...]]] = []
    for t in range(tracks):
        concepts = rng.choice(CONCEPTS, 3, replace=False)
        document = " ".join(f"d{c}" for c in concepts) + " song"
        for _ in range(queries):
            words = [f"q{c}" for c in rng.permutation(concepts)] + [str(rng.choice(FILLER))]
            rows.append(
                (" ".join(words), document, f"t{t}", f"artist {t % 7}", (f"g{concepts[0]}",))
            )
    return BiEncoderData(
        queries=tuple(r[0] for r in rows),
        documents=tuple(r[1] for r in rows),
        track_ids=tuple(r[2] for r in rows),
        artists=tuple(r[3] for r in rows),
        tags=tuple(r[4] for r in rows),
    )


def tiny_config(output_dir: Path, tiny_bert: Path, **changes: object) -> BiEncoderTrainingConfig:
    model = {"backbone_model": str(tiny_bert), "backbone_options": {"max_length": 12, "stride": 2}}
    loop = {"epochs": 12, "batch_size": 16, "learning_rate": 3e-3, "eval_every": 30, "loggers": ()}
    model.update(changes.pop("model", {}))  # type: ignore[call-overload]
    loop.update(changes.pop("loop", {}))  # type: ignore[call-overload]
    return BiEncoderTrainingConfig.model_validate(
        {
            "output_dir": output_dir,
            "model": model,
            "loop": loop,
            "validation_fraction": 0.2,
            "test_fraction": 0.2,
            **changes,
        }
    )


def recall_at_1(encoder: BiEncoder, data: BiEncoderData, rows: np.ndarray) -> float:
    """Queries of ``rows`` against the distinct documents of ``rows``."""
    documents = sorted({data.documents[r] for r in rows})
    queries = encoder.encode_queries([data.queries[r] for r in rows])
    scores = queries @ encoder.encode_text(documents, role="document").T
    best = [documents[i] for i in scores.argmax(axis=1)]
    return float(np.mean([b == data.documents[r] for b, r in zip(best, rows, strict=True)]))


class LossLog(Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_log(self, step: int, values: Mapping[str, float]) -> None:
        self.losses.append(values["loss"])


@pytest.mark.parametrize("frozen", [False, True], ids=["fine-tuned", "frozen-heads"])
def test_it_learns_what_the_backbone_cannot(tiny_bert: Path, tmp_path: Path, frozen: bool) -> None:
    data = concept_pairs()
    model = {"freeze_backbone": True, "head_dim": 32} if frozen else {"head_dim": 16}
    loop = {"log_every": 1, "epochs": 40 if frozen else 12}
    config = tiny_config(tmp_path / "run", tiny_bert, model=model, loop=loop)
    splits = _split(data, config)
    log = LossLog()
    result = train_biencoder(config, data=data, callbacks=[log])
    assert np.mean(log.losses[-5:]) < 0.5 * np.mean(log.losses[:5])
    untrained = _initial_encoder(config.model, config.loop.seed, "cpu")  # as training starts
    before = recall_at_1(untrained, data, splits["train"])
    after = recall_at_1(result.encoder, data, splits["train"])
    chance = 1 / len({data.documents[r] for r in splits["train"]})
    assert before < 6 * chance < 0.5 < after
    comparison = result.comparison
    assert result.held_out == "test"
    assert comparison["biencoder"]["mrr@10"] > comparison["backbone"]["mrr@10"] + 0.2
    assert "biencoder" in result.summary()
    assert "backbone" in result.summary()
    saved = json.loads((tmp_path / "run" / "comparison.json").read_text())
    assert saved["biencoder"] == pytest.approx(comparison["biencoder"])
    names = set(result.encoder.heads["query"].state_dict())
    assert names == {"weight", "bias"}
    if frozen:  # only the heads and the temperature trained; the backbone is as loaded
        reference = transformers.AutoModel.from_pretrained(tiny_bert)
        served = result.encoder.backbones["query"]._load().model
        for name, value in reference.state_dict().items():
            assert torch.equal(served.state_dict()[name], value), name


@pytest.mark.parametrize(
    "model",
    [
        {"shared_backbone": False, "head_dim": 16},
        {"shared_backbone": True},
        {"freeze_backbone": True, "head_dim": 8, "shared_head": True},
        # bge-m3's recipe (the CLS token, long text truncated) on the same tiny BERT
        {"backbone": "bge-m3", "backbone_options": {"max_length": 12}, "head_dim": 8},
    ],
    ids=["two-backbones-heads", "one-backbone-no-head", "frozen-shared-head", "bge-m3-cls"],
)
# bge-m3 embeds a query from its first window, warning that LONG was cut (as training cuts it)
@pytest.mark.filterwarnings("ignore::newwave.errors.TruncatedTextWarning")
def test_served_equals_trained(tiny_bert: Path, tmp_path: Path, model: dict[str, object]) -> None:
    config = tiny_config(tmp_path / "run", tiny_bert, model=model, loop={"epochs": 2})
    result = train_biencoder(config, data=concept_pairs(tracks=16))
    served = load_encoder("biencoder", model=result.model_dir, device="cpu")
    assert isinstance(served, BiEncoder)
    assert served.dim == result.encoder.dim == model.get("head_dim", 32)
    texts = [LONG, "q5", "d7 d1 song", "q1 q3 and"]
    outputs = {}
    for role in ("query", "document"):
        with torch.no_grad():  # the path the loss runs, then the L2 normalisation
            trained = torch.nn.functional.normalize(
                tower_embeddings(result.encoder, texts, role), dim=1
            ).numpy()
        outputs[role] = served.encode_text(texts, role=role)
        np.testing.assert_allclose(outputs[role], trained, atol=1e-5)
    np.testing.assert_array_equal(served.encode_queries(texts), outputs["query"])
    assert type(served.backbones["query"]).name == model.get("backbone", "minilm")
    if "head_dim" in model and not model.get("shared_head"):  # the towers differ after training
        assert not np.allclose(outputs["query"], outputs["document"], atol=1e-3)
    files = {p.name for p in result.model_dir.iterdir()}
    backbones = (
        {"backbone"}
        if model.get("shared_backbone", True)
        else {"query-backbone", "document-backbone"}
    )
    assert files == {CONFIG_FILE, *backbones} | ({HEADS_FILE} if "head_dim" in model else set())


def test_the_plugin_checks_its_directory(tiny_bert: Path, tmp_path: Path) -> None:
    assert "biencoder" in components("encoder")
    with pytest.raises(MissingFileError, match="no bi-encoder directory"):
        load_encoder("biencoder", model=tmp_path / "missing")
    config = tiny_config(tmp_path / "run", tiny_bert, model={"head_dim": 8}, loop={"max_steps": 1})
    model_dir = train_biencoder(config, data=concept_pairs(tracks=8)).model_dir
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / HEADS_FILE).write_bytes(b"not safetensors")
    encoder = load_encoder("biencoder", model=broken)
    with pytest.raises(IndexCorruptError, match="not a readable safetensors"):
        encoder.encode_queries(["q1"])
    (broken / HEADS_FILE).unlink()
    with pytest.raises(IndexCorruptError, match=r"heads\.safetensors is missing"):
        load_encoder("biencoder", model=broken).encode_queries(["q1"])
    shutil.rmtree(broken / "backbone")
    with pytest.raises(IndexCorruptError, match="backbone/ is missing"):
        load_encoder("biencoder", model=broken)
    (broken / CONFIG_FILE).write_text('{"format": "something else"}')
    with pytest.raises(IndexCorruptError, match="not a bi-encoder config"):
        load_encoder("biencoder", model=broken)


# -- hard negatives and batches ----------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(
            st.integers(0, 8),  # track
            st.sampled_from([None, "a", "b", "c"]),  # artist
            st.sets(st.sampled_from(["x", "y", "z", "w"]), max_size=2),  # tags
        ),
        min_size=1,
        max_size=40,
    ),
    kinds=st.sampled_from([("artist",), ("tags",), ("artist", "tags")]),
    seed=st.integers(0, 2**16),
)
def test_a_hard_negative_never_shares_the_track(
    pairs: list[tuple[int, str | None, set[str]]], kinds: tuple[str, ...], seed: int
) -> None:
    tracks = [f"t{t}" for t, _, _ in pairs]
    artists = [a for _, a, _ in pairs]
    tags = [tuple(sorted(g)) for _, _, g in pairs]
    documents = [f"lyrics of {t}" for t in tracks]  # one document per track
    queries = [f"query {i}" for i in range(len(pairs))]
    groups = _linked_groups(tracks, queries, documents)
    rows = np.arange(0, len(pairs), 2, dtype=np.int64)  # the "training" pairs
    miner = HardNegativeMiner(groups, rows, artists=artists, tags=tags, kinds=kinds)  # type: ignore[arg-type]
    rng = np.random.default_rng(seed)

    def related(i: int, j: int) -> bool:
        same_artist = "artist" in kinds and artists[i] is not None and artists[i] == artists[j]
        return same_artist or ("tags" in kinds and bool(set(tags[i]) & set(tags[j])))

    for row in rows:
        partner = miner.partner(int(row), rng)
        possible = [int(j) for j in rows if tracks[j] != tracks[row] and related(int(row), int(j))]
        if partner is None:
            assert not possible
        else:
            assert partner in possible


def test_no_in_batch_negative_shares_the_positive_track() -> None:
    data = concept_pairs(tracks=30, queries=3)
    groups = _linked_groups(data.track_ids, data.queries, data.documents)
    rows = np.arange(len(data), dtype=np.int64)
    miner = HardNegativeMiner(
        groups, rows, artists=data.artists, tags=data.tags, kinds=("artist", "tags")
    )
    source = _PairBatches(rows, LoopConfig(batch_size=16, seed=3), miner=miner, fraction=1.0)
    tracks = np.array(data.track_ids)
    artists, tags = data.artists, data.tags
    assert artists is not None
    assert tags is not None
    seen_same_track = 0
    for epoch in range(3):
        batches = list(source.batches(epoch))
        assert len(batches) == source.num_batches()
        for batch, _ in batches:
            assert len(batch) > 16  # hard negative pairs came along
            mask = same_group_mask(torch.from_numpy(groups[batch]), len(batch)).numpy()
            same_track = tracks[batch][:, None] == tracks[batch][None, :]
            off_diagonal = ~np.eye(len(batch), dtype=bool)
            negatives = off_diagonal & ~mask
            assert not np.any(negatives & same_track)  # never a negative of its own track
            seen_same_track += int(np.sum(same_track & off_diagonal))
            for partner in batch[16:]:  # each shares an artist or a tag with an anchor
                assert any(
                    tracks[a] != tracks[partner]
                    and (artists[a] == artists[partner] or tags[a] == tags[partner])
                    for a in batch[:16]
                )
        resumed = list(source.batches(epoch, batches[1][1]))  # a run resumed after batch 2
        assert all(
            np.array_equal(a, b) for (a, _), (b, _) in zip(resumed, batches[2:], strict=True)
        )
    assert seen_same_track > 0  # the check above was not vacuous


def test_splits_keep_tracks_and_artists_whole(tiny_bert: Path) -> None:
    data = concept_pairs(tracks=30, queries=2)
    by_artist = tiny_config(Path("unused"), tiny_bert, split_by="artist")
    for config in (tiny_config(Path("unused"), tiny_bert), by_artist):
        splits = _split(data, config)
        assert sorted(np.concatenate(list(splits.values())).tolist()) == list(range(len(data)))
        keys = [data.track_ids, data.artists] if config.split_by == "artist" else [data.track_ids]
        for key in keys:
            assert key is not None
            sides = [{key[r] for r in rows} for rows in splits.values()]
            assert sum(len(s) for s in sides) == len(set().union(*sides))
    no_artists = BiEncoderData(data.queries, data.documents, data.track_ids)
    with pytest.raises(InvalidInputError, match="needs the pairs' artists"):
        _split(no_artists, by_artist)


# -- resume, data, config and the command line -------------------------------------------------


def test_an_interrupted_run_resumes_to_the_same_weights(
    tiny_bert: Path, tmp_path: Path, run_until_killed: Callable[..., None]
) -> None:
    data = concept_pairs(tracks=24)
    model = {"head_dim": 16, "shared_backbone": False}
    config = tiny_config(
        tmp_path / "whole",
        tiny_bert,
        model=model,
        loop={"epochs": 6, "batch_size": 8, "eval_every": 3},
    )
    whole = train_biencoder(config, data=data)
    cut = config.model_copy(update={"output_dir": tmp_path / "cut"})
    run_until_killed(6, train_biencoder, cut, data=data)
    resumed = train_biencoder(cut, data=data, resume=True)
    assert resumed.training.history == whole.training.history
    assert resumed.comparison == whole.comparison
    for role in ("query", "document"):
        expected = whole.encoder.backbones[role]._load().model.state_dict()
        got = resumed.encoder.backbones[role]._load().model.state_dict()
        for name, value in expected.items():
            assert torch.equal(got[name], value), name
        for name, value in whole.encoder.heads[role].state_dict().items():
            assert torch.equal(resumed.encoder.heads[role].state_dict()[name], value), name


def test_pairs_from_tracks() -> None:
    tracks = [
        Track(id="a", description="calm piano", lyrics="rain falls", tags=("piano", "calm")),
        Track(id="b", description="loud drums", tags=("rock",)),  # no lyrics: left out
        Track(id="c", lyrics="fire burns", artist="x"),  # no description
    ]
    data = BiEncoderData.from_tracks(tracks)
    assert (data.queries, data.documents, data.track_ids) == (
        ("calm piano",),
        ("rain falls",),
        ("a",),
    )
    tagged = BiEncoderData.from_tracks(tracks, query_field="description", document_field="tags")
    assert tagged.documents == ("piano, calm", "rock")
    extra = BiEncoderData.from_tracks(tracks, queries=[("sad song", "c"), ("storm", "a")])
    assert extra.documents == ("fire burns", "rain falls")
    assert extra.artists == ("x", None)
    with pytest.raises(InvalidInputError, match="not in the catalogue or have no lyrics: b"):
        BiEncoderData.from_tracks(tracks, queries=[("x", "b")])
    with pytest.raises(InvalidInputError, match="documents must have one entry per query"):
        BiEncoderData(("q",), ("d", "e"), ("t",))
    with pytest.raises(InvalidInputError, match="queries\\[0\\] is not a non-empty string"):
        BiEncoderData((" ",), ("d",), ("t",))


def test_config_checks(tmp_path: Path) -> None:
    bad = {
        "[model]\nfreeze_backbone = true\n": "a frozen backbone leaves nothing to train",
        '[model]\nbackbone_options = {model = "x"}\n': "backbone_options cannot set model",
        "[model]\nhead_dim = 8\nfreeze_backbone = true\nshared_backbone = false\n": "shared",
        "validation_fraction = 0.5\ntest_fraction = 0.5\n": "must leave pairs to train on",
    }
    for body, message in bad.items():
        (tmp_path / "bad.toml").write_text(f'output_dir = "run"\n{body}')
        with pytest.raises(InvalidInputError, match=message):
            load_config(tmp_path / "bad.toml", BiEncoderTrainingConfig)


def test_the_command_line_trains_from_a_toml_config(
    tiny_bert: Path, tmp_path: Path, train_command: Callable[[list[str]], str]
) -> None:
    shutil.copytree(tiny_bert, tmp_path / "tiny")
    data = concept_pairs(tracks=24)
    documents = dict(zip(data.track_ids, data.documents, strict=True))
    with (tmp_path / "tracks.jsonl").open("w") as handle:
        for i, (track, document) in enumerate(documents.items()):
            split = "eval" if i % 6 == 5 else "train"
            handle.write(
                json.dumps(
                    {"id": track, "lyrics": document, "split": split, "artist": f"artist {i % 5}"}
                )
                + "\n"
            )
    queries = "".join(f"{q},{t}\n" for q, t in zip(data.queries, data.track_ids, strict=True))
    (tmp_path / "queries.csv").write_text("text,track\n" + queries)
    (tmp_path / "biencoder.toml").write_text(
        'output_dir = "run"\nvalidation_fraction = 0.25\ntest_fraction = 0.25\n'
        '[data]\ntracks = "tracks.jsonl"\nwhere = {split = "train"}\n'
        'queries = "queries.csv"\nquery_column = "text"\ntrack_column = "track"\n'
        '[model]\nbackbone_model = "tiny"\nbackbone_options = {max_length = 12, stride = 2}\n'
        "head_dim = 16\n"
        '[loop]\nepochs = 2\nbatch_size = 8\nloggers = ["jsonl"]\n'
    )
    config = load_config(tmp_path / "biencoder.toml", BiEncoderTrainingConfig)
    assert config.model.backbone_model == str(tmp_path / "tiny")
    section = config.data
    assert isinstance(section, BiEncoderDataConfig)
    with pytest.raises(InvalidInputError, match="not in the catalogue"):  # eval tracks left out
        section.load()
    kept = {t for i, t in enumerate(documents) if i % 6 != 5}
    kept_queries = [(q, t) for q, t in zip(data.queries, data.track_ids, strict=True) if t in kept]
    (tmp_path / "queries.csv").write_text(
        "text,track\n" + "".join(f"{q},{t}\n" for q, t in kept_queries)
    )
    assert set(section.load().track_ids) == kept

    argv = ["train", "biencoder", "--config", str(tmp_path / "biencoder.toml"), "--device", "cpu"]
    out = train_command(argv)
    assert out.startswith("test pairs:\n")
    assert "\nbiencoder " in out
    assert "\nbackbone " in out
    assert isinstance(load_encoder("biencoder", model=tmp_path / "run" / "model"), BiEncoder)
    assert (tmp_path / "run" / "log.jsonl").is_file()


def test_results_name_their_model(tiny_bert: Path, tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "run", tiny_bert, loop={"max_steps": 1}, test_fraction=0)
    result = train_biencoder(config, data=concept_pairs(tracks=10))
    assert isinstance(result, BiEncoderResult)
    assert result.held_out == "validation"
    assert f"load_encoder('biencoder', model='{result.model_dir}')" in result.summary()
    assert result.encoder.model_id == "biencoder:unsaved"
    served = load_encoder("biencoder", model=result.model_dir)
    assert served.get_config() == {
        "model": str(result.model_dir),
        "dtype": "float32",
        "batch_size": 32,
    }


def test_a_backbone_shared_with_other_encoders_is_never_fine_tuned(
    tiny_bert: Path, tmp_path: Path
) -> None:
    config = tiny_config(tmp_path / "run", tiny_bert)
    encoder = _initial_encoder(config.model, config.loop.seed, "cpu")
    options = {"max_length": 12, "stride": 2, "device": "cpu"}
    other = load_backbone("minilm", model=str(tiny_bert), **options)
    assert share_backbones([other, encoder]) == 2
    assert encoder.backbones["query"] is other
    with pytest.raises(InvalidInputError, match="backbone is shared"):
        _BiEncoderTask(encoder, None, None, None, {}, config, None)  # type: ignore[arg-type]


def test_validation_against_all_documents_ranks_the_training_documents_too() -> None:
    # Three tracks; the validation query "q0" is nearer the training track t1's document than
    # its own: ranked against the validation documents alone, it is first; against all, second.
    data = BiEncoderData(
        queries=("q0", "q1", "q2"),
        documents=("d0", "d1", "d2"),
        track_ids=("t0", "t1", "t2"),
        artists=("a0", "a1", "a2"),
        tags=((), (), ()),
    )
    vectors = {"q0": [1.0, 0.0], "d0": [0.6, 0.8], "d1": [1.0, 0.0], "d2": [0.0, 1.0]}
    texts = _Texts.of(data)

    def embed(rows: np.ndarray, role: str) -> np.ndarray:
        names = [texts.texts[role][int(i)] for i in rows]  # type: ignore[index]
        return np.array([vectors.get(n, [0.0, -1.0]) for n in names], dtype=np.float32)

    validation, train = np.array([0]), np.array([1, 2])
    alone = _retrieval_metrics(embed, data, texts, validation, ("mrr@10",))
    against_all = _retrieval_metrics(embed, data, texts, validation, ("mrr@10",), distractors=train)
    assert alone["mrr@10"] == pytest.approx(1.0)
    assert against_all["mrr@10"] == pytest.approx(0.5)
    config = BiEncoderTrainingConfig(output_dir="run", validation_candidates="all")
    assert config.validation_candidates == "all"
    with pytest.raises(ValueError, match="validation_candidates"):
        BiEncoderTrainingConfig(output_dir="run", validation_candidates="test")
