"""The Bach chorales of music21's corpus, tokenised and split by piece.

The corpus ships inside music21 (BSD licence), so nothing is downloaded. Every Bach work in it with
exactly four parts is taken as a chorale; the rest (instrumental works, chorales with extra
instrument parts) is skipped.

The split is by piece and deterministic: the first 8 hex digits of ``sha256(piece name)`` taken
modulo 10 give 0 -> ``test``, 1 -> ``valid``, anything else -> ``train`` (about 10/10/80 %). The
piece name is the corpus file's stem, e.g. ``bwv66.6``. This is NOT the Boulanger-Lewandowski
JSB Chorales split used in the papers, so figures are not comparable with published ones.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .tokenizer import encode_score

__all__ = ["split_of", "chorale_paths", "iter_chorales", "load_splits", "default_cache_dir", "SPLITS"]

SPLITS = ("train", "valid", "test")
CACHE_VERSION = 1


def split_of(name: str) -> str:
    """``train``, ``valid`` or ``test`` for a piece name (see the module docstring)."""
    bucket = int(hashlib.sha256(name.encode("utf-8")).hexdigest()[:8], 16) % 10
    return "test" if bucket == 0 else "valid" if bucket == 1 else "train"


def chorale_paths() -> list[Path]:
    """One file per Bach piece in music21's corpus, sorted by name (four-part filtering happens on parse).

    A few pieces ship both as Humdrum (``.krn``) and MusicXML (``.mxl``); the MusicXML file is kept.
    """
    from music21 import corpus

    by_name: dict[str, Path] = {}
    for path in sorted((Path(p) for p in corpus.getComposer("bach")), key=lambda p: p.name):
        by_name[piece_name(path)] = path  # ".mxl" sorts after ".krn"
    return [by_name[name] for name in sorted(by_name)]


def piece_name(path: Path) -> str:
    """``bwv66.6`` for ``.../bach/bwv66.6.mxl``."""
    return path.name.rsplit(".", 1)[0]


def iter_chorales(paths: list[Path] | None = None) -> Iterator[tuple[str, list[int]]]:
    """``(name, tokens)`` for every four-part piece among ``paths`` (default: the whole corpus)."""
    from music21 import converter

    for path in paths if paths is not None else chorale_paths():
        score = converter.parse(path)
        if len(score.parts) != 4:
            continue
        try:
            yield piece_name(path), encode_score(score)
        except ValueError:  # a pitch outside the vocabulary
            continue


def default_cache_dir() -> Path:
    """``$ATTNZOO_MUSIC_CACHE`` or ``~/.cache/attnzoo-music``."""
    return Path(os.environ.get("ATTNZOO_MUSIC_CACHE", Path.home() / ".cache" / "attnzoo-music"))


def load_splits(cache_dir: Path | None = None) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Tokenised chorales by split, parsed once and cached as ``bach-chorales-v1.npz``."""
    cache = (cache_dir or default_cache_dir()) / f"bach-chorales-v{CACHE_VERSION}.npz"
    if not cache.is_file():
        pieces = dict(iter_chorales())
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            cache, **{name: np.asarray(tokens, dtype=np.int16) for name, tokens in pieces.items()}
        )
    with np.load(cache) as archive:
        pieces = {name: archive[name].astype(np.int64) for name in archive.files}
    splits: dict[str, list[tuple[str, np.ndarray]]] = {split: [] for split in SPLITS}
    for name in sorted(pieces):
        splits[split_of(name)].append((name, pieces[name]))
    return splits
