"""The JSB-style serialisation of a four-voice chorale (Music Transformer, section 4.1).

A chorale becomes a grid of four voices (soprano, alto, tenor, bass) on a sixteenth-note grid,
read in raster order: time step by time step, and within a step soprano, alto, tenor, bass. Each
cell is one token:

* ``ON(p)``: a note of MIDI pitch ``p`` starts on this step;
* ``HOLD``: the voice's current note is still sounding;
* ``REST``: the voice is silent.

A piece is framed as ``BOS, cells..., EOS``. ``PAD`` fills batches and is never predicted. The
onset tokens make repeated notes distinct from held notes, which a bare pitch grid cannot.

This module needs music21 only to read and write scores; the token arithmetic is plain Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "PAD",
    "BOS",
    "EOS",
    "REST",
    "HOLD",
    "LOWEST_PITCH",
    "HIGHEST_PITCH",
    "VOCAB_SIZE",
    "VOICES",
    "STEPS_PER_QUARTER",
    "Note",
    "onset_token",
    "token_pitch",
    "describe_token",
    "score_to_notes",
    "notes_to_tokens",
    "tokens_to_notes",
    "notes_to_score",
    "encode_score",
    "decode_tokens",
    "transpose_tokens",
]

PAD, BOS, EOS, REST, HOLD = 0, 1, 2, 3, 4
LOWEST_PITCH, HIGHEST_PITCH = 21, 108  # the piano's range, A0..C8
FIRST_ONSET = 5
VOCAB_SIZE = FIRST_ONSET + HIGHEST_PITCH - LOWEST_PITCH + 1  # 93
VOICES = 4
STEPS_PER_QUARTER = 4  # a sixteenth-note grid
VOICE_NAMES = ("Soprano", "Alto", "Tenor", "Bass")


@dataclass(frozen=True, order=True)
class Note:
    """One note on the grid: voice index (0 = soprano), onset step, length in steps, MIDI pitch."""

    voice: int
    onset: int
    length: int
    pitch: int


def onset_token(pitch: int) -> int:
    """The token of a note of MIDI ``pitch`` starting."""
    if not LOWEST_PITCH <= pitch <= HIGHEST_PITCH:
        raise ValueError(f"pitch {pitch} is outside the vocabulary's range {LOWEST_PITCH}..{HIGHEST_PITCH}")
    return FIRST_ONSET + pitch - LOWEST_PITCH


def token_pitch(token: int) -> int | None:
    """The MIDI pitch of an onset token, or None for the special tokens."""
    return token - FIRST_ONSET + LOWEST_PITCH if FIRST_ONSET <= token < VOCAB_SIZE else None


def describe_token(token: int) -> str:
    """A readable name: ``PAD``, ``BOS``, ``EOS``, ``REST``, ``HOLD`` or ``ON(60)``."""
    names = {PAD: "PAD", BOS: "BOS", EOS: "EOS", REST: "REST", HOLD: "HOLD"}
    return names.get(token, f"ON({token_pitch(token)})")


def score_to_notes(score: Any) -> list[Note]:
    """The notes of a four-part music21 score, quantised to the sixteenth-note grid.

    Ties are merged first. A chord keeps its highest pitch. Notes whose quantised length is zero
    (grace notes, thirty-seconds that round away) are dropped.
    """
    parts = list(score.parts)
    if len(parts) != VOICES:
        raise ValueError(f"a chorale must have exactly {VOICES} parts; this score has {len(parts)}")
    notes = []
    for voice, part in enumerate(parts):
        for element in part.stripTies().flatten().notes:
            pitch = max(p.midi for p in element.pitches)
            onset = round(float(element.offset) * STEPS_PER_QUARTER)
            end = round((float(element.offset) + float(element.quarterLength)) * STEPS_PER_QUARTER)
            if end > onset:
                notes.append(Note(voice, onset, end - onset, pitch))
    return sorted(notes)


def notes_to_tokens(notes: Sequence[Note]) -> list[int]:
    """Serialise notes as ``BOS``, raster-ordered cells, ``EOS``. A later overlapping note cuts an earlier one."""
    steps = max((n.onset + n.length for n in notes), default=0)
    grid = [[REST] * VOICES for _ in range(steps)]
    for note in sorted(notes, key=lambda n: (n.onset, n.voice)):
        if not 0 <= note.voice < VOICES:
            raise ValueError(f"voice {note.voice} is not in 0..{VOICES - 1}")
        grid[note.onset][note.voice] = onset_token(note.pitch)
        for step in range(note.onset + 1, note.onset + note.length):
            if token_pitch(grid[step][note.voice]) is not None:
                break
            grid[step][note.voice] = HOLD
    return [BOS, *(cell for row in grid for cell in row), EOS]


def tokens_to_notes(tokens: Sequence[int]) -> list[Note]:
    """Parse a token sequence back into notes; framing tokens are skipped, a stray ``HOLD`` is a rest."""
    cells = [t for t in tokens if t not in (PAD, BOS, EOS)]
    notes = []
    current: list[list[int] | None] = [None] * VOICES  # [onset, length, pitch] per sounding voice
    for index, token in enumerate(cells):
        step, voice = divmod(index, VOICES)
        pitch = token_pitch(token)
        if token == HOLD and current[voice] is not None:
            current[voice][1] += 1
            continue
        if current[voice] is not None:
            notes.append(Note(voice, *current[voice]))
            current[voice] = None
        if pitch is not None:
            current[voice] = [step, 1, pitch]
    notes.extend(Note(voice, *cell) for voice, cell in enumerate(current) if cell is not None)
    return sorted(notes)


def notes_to_score(notes: Sequence[Note], *, title: str = "attnzoo chorale") -> Any:
    """A four-part music21 score (4/4, parts named soprano to bass) holding ``notes``."""
    from music21 import clef, metadata, meter, note, stream

    score = stream.Score()
    score.metadata = metadata.Metadata(title=title)
    clefs = (clef.TrebleClef, clef.TrebleClef, clef.Treble8vbClef, clef.BassClef)
    for voice in range(VOICES):
        part = stream.Part()
        part.partName = VOICE_NAMES[voice]
        part.insert(0, clefs[voice]())
        part.insert(0, meter.TimeSignature("4/4"))
        for item in (n for n in notes if n.voice == voice):
            element = note.Note(item.pitch)
            element.quarterLength = item.length / STEPS_PER_QUARTER
            part.insert(item.onset / STEPS_PER_QUARTER, element)
        score.insert(0, part)
    return score


def encode_score(score: Any) -> list[int]:
    """Tokens of a four-part music21 score."""
    return notes_to_tokens(score_to_notes(score))


def decode_tokens(tokens: Sequence[int], *, title: str = "attnzoo chorale") -> Any:
    """A music21 score from tokens (the inverse of :func:`encode_score` on the grid)."""
    return notes_to_score(tokens_to_notes(tokens), title=title)


def transpose_tokens(tokens: Sequence[int], semitones: int) -> list[int] | None:
    """Shift every onset token by ``semitones``; None when a note would leave the vocabulary's range."""
    shifted = []
    for token in tokens:
        pitch = token_pitch(token)
        if pitch is None:
            shifted.append(token)
        elif LOWEST_PITCH <= pitch + semitones <= HIGHEST_PITCH:
            shifted.append(token + semitones)
        else:
            return None
    return shifted
