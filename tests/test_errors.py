from __future__ import annotations

import pytest

from newwave import errors


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (errors.UnknownComponentError, KeyError),
        (errors.UnknownTrackError, KeyError),
        (errors.ComponentUnavailableError, RuntimeError),
        (errors.PluginError, RuntimeError),
        (errors.MissingDependencyError, ImportError),
        (errors.ModelNotFoundError, OSError),
        (errors.MissingFileError, FileNotFoundError),
        (errors.InvalidInputError, ValueError),
        (errors.EmptyQueryError, ValueError),
        (errors.DimensionMismatchError, ValueError),
        (errors.NonFiniteVectorError, ValueError),
        (errors.UnsupportedModalityError, ValueError),
        (errors.AudioDecodeError, ValueError),
        (errors.IndexCorruptError, ValueError),
    ],
)
def test_each_error_is_a_newwave_error_and_its_builtin(
    error: type[Exception], builtin: type[Exception]
) -> None:
    assert issubclass(error, errors.NewWaveError)
    assert issubclass(error, builtin)


def test_key_errors_print_their_message_without_quotes() -> None:
    assert str(errors.UnknownComponentError("unknown encoder 'x'")) == "unknown encoder 'x'"


def test_skipped_input_warning_lists_the_failures() -> None:
    failures = [(i, f"f{i}.mp3", errors.AudioDecodeError("not audio")) for i in range(7)]
    warning = errors.SkippedInputWarning("clap", "audio", failures)
    assert isinstance(warning, UserWarning)
    assert warning.failures == failures
    assert "skipped 7 audio input(s)" in str(warning)
    assert "0: f0.mp3: not audio" in str(warning)
    assert "and 2 more" in str(warning)


def test_the_tree_in_the_docstring_names_every_error() -> None:
    for name in errors.__all__:
        assert name in (errors.__doc__ or ""), name
