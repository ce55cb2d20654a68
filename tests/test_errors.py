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


def test_the_tree_in_the_docstring_names_every_error() -> None:
    for name in errors.__all__:
        assert name in (errors.__doc__ or ""), name
