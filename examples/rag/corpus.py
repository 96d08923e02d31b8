"""The corpus: Python's own help topics (``pydoc_data.topics``), cut into passages.

The topics ship with every CPython, so the example needs no download. Each
topic text is split on blank lines into paragraphs, which are packed into
passages of at most ``max_chars`` characters; every passage remembers its
topic id and the heading it sits under (the reranker scores headings).

This module is imported inside Ray workers: it depends on the standard
library only.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass

__all__ = ["Passage", "corpus_key", "load_passages", "load_topics", "normalize", "sentences", "tokenize"]

_WORD = re.compile(r"[a-z0-9_]+")
STOPWORDS = frozenset(
    """a about above after again all also an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has
    have having how i if in into is it its itself just may me might more most must my no nor not
    of off on once only or other our out over own same should so some such than that the their
    them then there these they this those through to too under until up very was we were what when
    where which while who whom why will with would you your""".split()
)
# Python keywords are content words in this corpus ("for", "with", "in", "is" ...):
# "the else clause of a for loop" is about the for statement.
_PY_KEYWORDS = frozenset(
    "and as assert async await break class continue def del elif else except finally for from "
    "global if import in is lambda nonlocal not or pass raise return try while with yield".split()
)


def normalize(text: str) -> str:
    """Collapse all whitespace to single spaces (for phrase matching across line breaks)."""
    return " ".join(text.split())


@functools.lru_cache(maxsize=1 << 16)  # the same words recur in every query, passage and sentence
def _stem(word: str) -> str:
    """A light suffix stripper: enough to match 'iterating'/'iterates'/'iterate'."""
    if word.startswith("_") or len(word) <= 4:
        return word
    for suffix in ("ations", "ation", "ings", "ing", "ies", "ied", "es", "ed", "ly", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            word = word[: -len(suffix)] + ("y" if suffix in ("ies", "ied") else "")
            break
    return word[:-1] if word.endswith("e") and len(word) > 4 else word


def tokenize(text: str) -> list[str]:
    """Lower-cased, stemmed content words (dunder names and Python keywords kept)."""
    words = _WORD.findall(text.lower())
    return [_stem(w) for w in words if (len(w) > 1 and w not in STOPWORDS) or w in _PY_KEYWORDS]


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"*(])")


_SIGNATURE = re.compile(r"^[\w.]+\(.*\)$")


def sentences(text: str) -> list[str]:
    """Prose sentences of a passage; grammar rules, tables and code lines are left out.

    The reference entries of these docs put a signature line ("object.__len__(self)")
    above an indented description; the first sentence of the description is
    prefixed with the signature, so that it says what it describes.
    """
    out: list[str] = []
    signature = ""
    for paragraph in re.split(r"\n\s*\n", text):
        flat = normalize(paragraph)
        if "::=" in paragraph or flat.startswith(("+-", "|", ">>>")) or not flat or set(flat) <= set("=*-"):
            continue
        if "\n" not in paragraph.strip() and _SIGNATURE.match(flat):
            signature = f"{signature} {flat}".strip() if signature else flat
            continue
        for sentence in _SENTENCE_END.split(flat):
            if len(sentence) >= 20:
                out.append(f"{signature}: {sentence}" if signature else sentence)
                signature = ""
    return out


@dataclass(frozen=True)
class Passage:
    """A chunk of one help topic."""

    id: str
    topic: str
    heading: str
    text: str

    def as_dict(self) -> dict[str, str]:
        """The passage as plain data (what travels in the graph state)."""
        return {"id": self.id, "topic": self.topic, "heading": self.heading, "text": self.text}


@functools.lru_cache(maxsize=1)
def load_topics() -> dict[str, str]:
    """The help topics, without duplicates: topics with identical text ("if"/"else")
    keep the id named in the topic's title."""
    from pydoc_data.topics import topics

    by_text: dict[str, list[str]] = {}
    for key in sorted(topics):
        by_text.setdefault(topics[key], []).append(key)
    kept: dict[str, str] = {}
    for text, keys in by_text.items():
        title = text.strip().splitlines()[0].lower() if text.strip() else ""
        named = [k for k in keys if f'"{k}"' in title]
        kept[(named or keys)[0]] = text
    return dict(sorted(kept.items()))


_UNDERLINE = re.compile(r"^(=+|\*+|-+)$")


def _chunk(topic: str, text: str, max_chars: int) -> list[Passage]:
    lines = text.strip().splitlines()
    title = lines[0].strip() if lines else topic
    heading = title
    paragraphs: list[tuple[str, str]] = []  # (heading, paragraph)
    block: list[str] = []

    def flush() -> None:
        if block and any(line.strip() for line in block):
            paragraphs.append((heading, "\n".join(block).strip("\n")))
        block.clear()

    for index, line in enumerate(lines):
        nxt = lines[index + 1].strip() if index + 1 < len(lines) else ""
        if line.strip() and _UNDERLINE.match(nxt) and len(nxt) >= len(line.strip()) - 2:
            flush()
            heading = title if index == 0 else f"{title} / {line.strip()}"
            continue
        if _UNDERLINE.match(line.strip()):
            continue
        if not line.strip():
            flush()
        else:
            block.append(line)
    flush()

    passages: list[Passage] = []
    current: list[str] = []
    current_heading = title

    def emit() -> None:
        if current:
            passages.append(Passage(f"{topic}#{len(passages)}", topic, current_heading, "\n\n".join(current)))
        current.clear()

    for para_heading, paragraph in paragraphs:
        size = sum(len(p) for p in current)
        if current and (para_heading != current_heading or size + len(paragraph) > max_chars):
            emit()
        if not current:
            current_heading = para_heading
        current.append(paragraph)
    emit()
    return passages


@functools.lru_cache(maxsize=4)
def load_passages(max_chars: int = 800) -> tuple[Passage, ...]:
    """Every topic cut into passages of at most ``max_chars`` (a longer paragraph stays whole)."""
    return tuple(p for topic, text in load_topics().items() for p in _chunk(topic, text, max_chars))


@functools.lru_cache(maxsize=4)
def corpus_key(max_chars: int = 800) -> str:
    """A fingerprint of the passages: the key of every index built on them."""
    digest = hashlib.sha1()
    for passage in load_passages(max_chars):
        digest.update(passage.id.encode())
        digest.update(passage.text.encode())
    return f"pydoc-{max_chars}-{digest.hexdigest()[:12]}"
