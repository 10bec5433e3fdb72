"""The split by piece is deterministic and near 80/10/10; corpus pieces tokenise."""

from __future__ import annotations

from collections import Counter

from attnzoo_music.data import chorale_paths, iter_chorales, piece_name, split_of


def test_split_is_a_function_of_the_name_and_roughly_80_10_10():
    names = [piece_name(p) for p in chorale_paths()]
    assert len(names) > 300 and len(set(names)) == len(names)
    assert [split_of(n) for n in names] == [split_of(n) for n in names]
    counts = Counter(split_of(n) for n in names)
    assert set(counts) == {"train", "valid", "test"}
    assert 0.05 < counts["test"] / len(names) < 0.15 and 0.05 < counts["valid"] / len(names) < 0.15


def test_iter_chorales_tokenises_four_part_pieces():
    paths = [p for p in chorale_paths() if piece_name(p) in ("bwv66.6", "bwv1.6")]
    pieces = dict(iter_chorales(paths))
    assert "bwv66.6" in pieces and len(pieces["bwv66.6"]) > 100
