"""Chunking: boundaries, overlap, offsets, hashes, determinism, and a property test."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatledger.errors import InvalidInput
from chatledger.rag.chunking import Chunk, chunk_document
from chatledger.rag.parse_types import DocumentFormat, ParsedDocument, Section
from chatledger.rag.parsing import parse_document

DEMO = Path(__file__).resolve().parents[2] / "src" / "chatledger" / "demo_data"


def doc_of(*texts: str, paths: list[tuple[str, ...]] | None = None) -> ParsedDocument:
    sections = [
        Section(text=text, heading_path=(paths or [()] * len(texts))[i], page=i + 1)
        for i, text in enumerate(texts)
    ]
    return ParsedDocument(title="t", format=DocumentFormat.TEXT, page_count=None, sections=sections)


def check_invariants(doc: ParsedDocument, chunks: list[Chunk], size: int, overlap: int) -> None:
    """What every chunking must satisfy, whatever the text."""
    full = doc.text
    covered = [False] * len(full)
    for i, chunk in enumerate(chunks):
        assert chunk.index == i
        assert chunk.text
        assert chunk.text == full[chunk.char_start : chunk.char_end]
        assert len(chunk.text) <= size
        assert chunk.text == chunk.text.strip()
        assert chunk.sha256 == hashlib.sha256(chunk.text.encode("utf-8")).hexdigest()
        for j in range(chunk.char_start, chunk.char_end):
            covered[j] = True
    # Everything outside the chunks is whitespace (coverage of the text).
    assert all(done or char.isspace() for done, char in zip(covered, full, strict=True))
    for before, after in itertools.pairwise(chunks):
        assert after.char_start > before.char_start
        assert after.char_end > before.char_end  # every chunk brings new text
        if (before.heading_path, before.page) == (after.heading_path, after.page):
            assert after.char_start >= before.char_end - overlap  # overlap is bounded
        else:
            assert after.char_start >= before.char_end  # no overlap across sections
    # A chunk never crosses a section: it lies inside the section that gives its metadata.
    base = 0
    spans = []
    for section in doc.sections:
        spans.append((base, base + len(section.text), section))
        base += len(section.text) + 2
    for chunk in chunks:
        owner = [
            s for start, end, s in spans if start <= chunk.char_start and chunk.char_end <= end
        ]
        assert len(owner) == 1
        assert (owner[0].heading_path, owner[0].page) == (chunk.heading_path, chunk.page)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("size", "overlap"),
    [(0, 0), (-5, 0), (10, -1), (10, 10), (10, 11), (True, 0), (10, False), (10.5, 0)],
)
def test_bad_size_or_overlap_is_refused(size: int, overlap: int) -> None:
    with pytest.raises(InvalidInput) as caught:
        chunk_document(doc_of("text"), size, overlap)
    assert "chunk" in caught.value.message


# ------------------------------------------------------------------------------ behaviour


def test_short_section_is_one_chunk_with_its_metadata() -> None:
    doc = doc_of("  Hello world.  ", paths=[("Guide", "Intro")])
    (chunk,) = chunk_document(doc, 100, 10)
    assert chunk == Chunk(
        index=0,
        text="Hello world.",
        heading_path=("Guide", "Intro"),
        page=1,
        sha256=hashlib.sha256(b"Hello world.").hexdigest(),
        char_start=2,
        char_end=14,
    )


def test_prefers_paragraph_then_sentence_then_word_boundaries() -> None:
    para = "First paragraph has some words. " * 2  # 64 characters
    text = para.strip() + "\n\n" + para.strip()
    chunks = chunk_document(doc_of(text), 100, 0)
    assert [c.text for c in chunks] == [para.strip(), para.strip()]

    sentences = "One two three four. Five six seven eight. Nine ten eleven twelve."
    chunks = chunk_document(doc_of(sentences), 45, 0)
    assert chunks[0].text == "One two three four. Five six seven eight."

    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa"
    chunks = chunk_document(doc_of(words), 20, 0)
    assert all(set(c.text.split(" ")) <= set(words.split(" ")) for c in chunks)  # whole words
    assert " ".join(c.text for c in chunks) == words


def test_a_word_longer_than_the_size_is_cut_hard() -> None:
    chunks = chunk_document(doc_of("x" * 2500), 1000, 0)
    assert [len(c.text) for c in chunks] == [1000, 1000, 500]


def test_overlap_repeats_the_end_of_the_previous_chunk_from_a_word_start() -> None:
    text = " ".join(f"word{i:03d}" for i in range(200))
    chunks = chunk_document(doc_of(text), 200, 50)
    for before, after in itertools.pairwise(chunks):
        shared = before.char_end - after.char_start
        assert 30 <= shared <= 50
        assert after.text.startswith("word")
        assert before.text.endswith(after.text[:shared])


def test_overlap_prefers_a_sentence_start() -> None:
    text = "Hi there. Eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen."
    first, second = chunk_document(doc_of(text), 50, 45)[:2]
    assert first.text.startswith("Hi there.")
    assert second.text.startswith("Eight")  # not "there.", the first word in the overlap


def test_sections_are_never_merged_or_overlapped() -> None:
    doc = doc_of("Alpha one.", "Beta two.", paths=[("A",), ("B",)])
    chunks = chunk_document(doc, 1000, 100)
    assert [(c.text, c.heading_path, c.page) for c in chunks] == [
        ("Alpha one.", ("A",), 1),
        ("Beta two.", ("B",), 2),
    ]
    assert doc.text[chunks[1].char_start : chunks[1].char_end] == "Beta two."


def test_cjk_sentences_and_code_points() -> None:
    text = "这是第一句。这是第二句。这是第三句。" * 5 + " 🙂 emoji"
    doc = doc_of(text)
    chunks = chunk_document(doc, 20, 5)
    check_invariants(doc, chunks, 20, 5)
    assert chunks[0].text.endswith("。")


def test_demo_documents_chunk_cleanly_and_deterministically() -> None:
    for name in ["plans-and-pricing.md", "contact-support.txt", "sharing-links.html"]:
        doc = parse_document((DEMO / name).read_bytes(), name, None)
        first = chunk_document(doc, 300, 60)
        assert first == chunk_document(doc, 300, 60)
        check_invariants(doc, first, 300, 60)
        assert len(first) > 1


# ------------------------------------------------------------------------ property test

# Drawing from a vocabulary is much cheaper than from a regex, and still covers short and
# long words, sentence ends (Latin and CJK), quotes, digits and non-BMP characters.
_WORD = st.sampled_from(
    [
        *("a", "I", "on", "the", "word", "Zürich", "42", "end.", "stop!", "why?"),
        *("“quoted.”", "(aside)", "这是", "句子。", "🙂", "x", "supercalifragilistic" * 2),
    ]
)
_SEPARATOR = st.sampled_from([" ", " ", " ", "  ", "\n", "\n\n", "\t", " \n "])


@st.composite
def texts(draw: st.DrawFn) -> str:
    pieces = draw(st.lists(st.tuples(_WORD, _SEPARATOR), max_size=120))
    lead = draw(st.sampled_from(["", " ", "\n"]))
    return lead + "".join(word + separator for word, separator in pieces)


@st.composite
def documents_and_settings(draw: st.DrawFn) -> tuple[ParsedDocument, int, int]:
    sections = draw(st.lists(texts(), min_size=1, max_size=4))
    paths = [draw(st.sampled_from([(), ("A",), ("A", "B")])) for _ in sections]
    size = draw(st.integers(min_value=1, max_value=150))
    overlap = draw(st.integers(min_value=0, max_value=size - 1))
    return doc_of(*sections, paths=paths), size, overlap


@settings(max_examples=200, deadline=None)
@given(documents_and_settings())
def test_chunking_properties(case: tuple[ParsedDocument, int, int]) -> None:
    doc, size, overlap = case
    chunks = chunk_document(doc, size, overlap)
    check_invariants(doc, chunks, size, overlap)
    assert chunks == chunk_document(doc, size, overlap)  # deterministic
    if overlap == 0:
        for before, after in itertools.pairwise(chunks):
            assert after.char_start >= before.char_end


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=200), min_size=1, max_size=3), st.integers(1, 60), st.data())
def test_chunking_properties_on_arbitrary_unicode(
    texts: list[str], size: int, data: st.DataObject
) -> None:
    overlap = data.draw(st.integers(min_value=0, max_value=size - 1))
    doc = doc_of(*texts)
    check_invariants(doc, chunk_document(doc, size, overlap), size, overlap)
