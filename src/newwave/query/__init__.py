"""Query rewriting: a free-text music request parsed into structured attributes before encoding.

>>> from newwave.query import RuleRewriter
>>> parsed = RuleRewriter().rewrite("relaxing piano music without vocals")
>>> parsed.text
'relaxing piano music'
>>> [(a.kind, a.value, a.negated) for a in parsed.attributes]
[('mood', 'relaxing', False), ('instrument', 'piano', False), ('vocals', 'vocals', True)]

Modules: :mod:`~newwave.query.base` (the interface and its values),
:mod:`~newwave.query.vocabulary` (the descriptor vocabulary), :mod:`~newwave.query.negation`
(finding attributes and their negation), :mod:`~newwave.query.entities` (artist, title and
album names), :mod:`~newwave.query.catalogue_names` (those looked up in a library database),
:mod:`~newwave.query.languages` (the vocabulary in other languages),
:mod:`~newwave.query.rules` (the built-in ``rules`` rewriter) and
:mod:`~newwave.query.evaluation` (negation accuracy of a search function).
"""

from __future__ import annotations

from newwave.query.base import Attribute, Entity, ParsedQuery, QueryRewriter, track_text
from newwave.query.rules import RuleRewriter
from newwave.query.vocabulary import Concept, Vocabulary

__all__ = [
    "Attribute",
    "Concept",
    "Entity",
    "ParsedQuery",
    "QueryRewriter",
    "RuleRewriter",
    "Vocabulary",
    "track_text",
]
