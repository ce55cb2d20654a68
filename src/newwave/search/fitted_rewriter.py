"""The query rewriter fitted to a library's catalogue, kept in the library's database.

Fitting the ``rules`` rewriter reads every tag of the catalogue (about a second for the 5,521
MusicCaps clips), which a command-line search would otherwise pay at every start. What
:meth:`~newwave.query.base.QueryRewriter.fitted_state` returns is stored as JSON in the meta
table, stamped with the library's epoch and transaction (``seq``) and the rewriter's name and
options; it is used while the stamp matches, and fitted again and replaced once the catalogue
changed. A process that finds another writing the library fits for itself and stores nothing.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from newwave.errors import InvalidInputError
from newwave.query.base import QueryRewriter
from newwave.store.library import Library

__all__ = ["META_KEY", "fit_rewriter"]

#: The meta table's key of the stored fit.
META_KEY = "rewriter:fitted"
_VERSION = 1

logger = logging.getLogger(__name__)


def fit_rewriter(rewriter: QueryRewriter, library: Library) -> int:
    """Fit ``rewriter`` to the library's catalogue, from the stored fit when it is current.

    Returns the library transaction (``seq``) the rewriter now reflects.
    """
    store = library.store
    with store.reading():  # the stamp and the tags of one committed state
        seq = store.seq
        stamp = {
            "version": _VERSION,
            "epoch": store.epoch,
            "seq": seq,
            "rewriter": rewriter.name,
            "options": rewriter.get_config(),
        }
        state = _stored_state(store.meta(META_KEY), stamp)
        if state is not None:
            try:
                rewriter.load_fitted_state(state)
                return seq
            except InvalidInputError as exc:  # written by another version: fit again
                logger.warning("the library's fitted query rewriter is unusable (%s)", exc)
        counts = store.tag_counts()
    rewriter.fit(tag for tag, n in counts.items() for _ in range(n))
    fitted = rewriter.fitted_state()
    if fitted is not None and library.root is not None:
        library.keep_meta(META_KEY, json.dumps({"stamp": stamp, "state": fitted}))
    return seq


def _stored_state(text: str | None, stamp: dict[str, Any]) -> Any:
    """The stored state if its stamp is ``stamp``, else None."""
    if text is None:
        return None
    try:
        stored = json.loads(text)
    except ValueError:
        return None
    if not isinstance(stored, dict) or stored.get("stamp") != stamp:
        return None
    return stored.get("state")
