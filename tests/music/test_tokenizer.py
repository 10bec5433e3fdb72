"""The JSB-style serialisation: four voices on a sixteenth-note grid, raster order, onset/hold/rest cells."""

from __future__ import annotations

import pytest
from attnzoo_music.tokenizer import (
    BOS,
    EOS,
    HOLD,
    REST,
    VOCAB_SIZE,
    Note,
    decode_tokens,
    describe_token,
    encode_score,
    notes_to_tokens,
    onset_token,
    score_to_notes,
    token_pitch,
    tokens_to_notes,
    transpose_tokens,
)


@pytest.fixture(scope="module")
def chorale():
    from music21 import corpus

    return corpus.parse("bach/bwv66.6")


def test_chorale_round_trips_through_tokens_and_a_score(chorale):
    notes = score_to_notes(chorale)
    tokens = encode_score(chorale)
    assert tokens[0] == BOS and tokens[-1] == EOS and (len(tokens) - 2) % 4 == 0
    assert all(0 <= t < VOCAB_SIZE for t in tokens)
    assert tokens_to_notes(tokens) == notes
    rebuilt = decode_tokens(tokens)
    assert len(rebuilt.parts) == 4
    assert score_to_notes(rebuilt) == notes
    assert encode_score(rebuilt) == tokens


def test_grid_notes_match_the_score_exactly(chorale):
    """bwv66.6 has no note shorter than a sixteenth, so quantising loses nothing."""
    expected = []
    for voice, part in enumerate(chorale.parts):
        for n in part.stripTies().flatten().notes:
            expected.append(Note(voice, int(n.offset * 4), int(n.quarterLength * 4), n.pitch.midi))
    assert score_to_notes(chorale) == sorted(expected)


def test_raster_order_and_cells():
    notes = [Note(0, 0, 2, 72), Note(1, 0, 1, 67), Note(1, 1, 1, 67), Note(3, 1, 1, 48)]
    tokens = notes_to_tokens(notes)
    assert [describe_token(t) for t in tokens] == [
        "BOS",
        "ON(72)", "ON(67)", "REST", "REST",
        "HOLD", "ON(67)", "REST", "ON(48)",
        "EOS",
    ]  # fmt: skip
    assert tokens_to_notes(tokens) == sorted(notes)  # a repeated note stays two notes


def test_stray_hold_reads_as_rest_and_pitch_range_is_checked():
    assert tokens_to_notes([BOS, HOLD, REST, REST, REST, EOS]) == []
    assert token_pitch(onset_token(60)) == 60 and token_pitch(HOLD) is None
    with pytest.raises(ValueError, match="outside the vocabulary's range"):
        onset_token(10)


def test_transpose_shifts_onsets_only():
    tokens = [BOS, onset_token(60), HOLD, REST, onset_token(48), EOS]
    assert transpose_tokens(tokens, 2) == [BOS, onset_token(62), HOLD, REST, onset_token(50), EOS]
    assert transpose_tokens([onset_token(107)], 3) is None


def test_score_with_wrong_part_count_is_rejected():
    from music21 import stream

    with pytest.raises(ValueError, match="exactly 4 parts"):
        score_to_notes(stream.Score([stream.Part()]))
