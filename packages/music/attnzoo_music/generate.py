"""Sampling chorales from a Music Transformer and writing them as MIDI and MusicXML."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from .tokenizer import BOS, EOS, PAD, VOICES, decode_tokens, encode_score

__all__ = ["sample", "primer_tokens", "write_score"]


def _context(tokens: list[int], seq_len: int) -> list[int]:
    """The last ``seq_len`` tokens, starting on a voice-aligned position as training windows do."""
    if len(tokens) <= seq_len:
        return tokens
    start = len(tokens) - seq_len
    start += (VOICES - (start - 1) % VOICES) % VOICES  # cell index (start - 1) must be a multiple of 4
    return tokens[start:]


@torch.no_grad()
def sample(
    model: torch.nn.Module,
    primer: Sequence[int] = (BOS,),
    *,
    steps: int = 512,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    on_step: Callable[[int], None] | None = None,
) -> list[int]:
    """Extend ``primer`` by up to ``steps`` tokens, stopping at EOS; returns primer + continuation.

    Sampling draws from a ``torch.Generator`` seeded with ``seed``, so a run repeats exactly on the
    same machine. PAD and BOS are never sampled. ``top_k`` keeps the k likeliest tokens.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1; got {top_k}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0; got {steps}")
    tokens = list(primer) or [BOS]
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device="cpu").manual_seed(seed)
    seq_len = getattr(model, "seq_len", 256)
    for step in range(steps):
        context = torch.tensor([_context(tokens, seq_len)], dtype=torch.long, device=device)
        logits = model(context)[0, -1].float().cpu() / temperature
        logits[[PAD, BOS]] = float("-inf")
        if top_k is not None and top_k < logits.numel():
            threshold = torch.topk(logits, top_k).values[-1]
            logits[logits < threshold] = float("-inf")
        token = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=generator))
        tokens.append(token)
        if on_step is not None:
            on_step(step + 1)
        if token == EOS:
            break
    return tokens


def primer_tokens(path: str | Path | None, length: int | None = None) -> list[int]:
    """Tokens of a four-part score without its EOS, cut to ``length`` tokens.

    ``path`` is a score file (MIDI, MusicXML, Humdrum) or the name of a piece in music21's
    corpus (``bwv123.6``), which ships offline.
    """
    if path is None:
        return [BOS]
    from music21 import converter, corpus

    if Path(path).exists():
        score = converter.parse(str(path))
    else:
        try:
            score = corpus.parse(str(path))
        except Exception as exc:  # music21 raises its own CorpusException
            raise ValueError(
                f"primer {path!r} is neither a score file nor a piece in music21's corpus"
            ) from exc
    tokens = encode_score(score)[:-1]
    if length is not None:
        if length < 1:
            raise ValueError(f"primer length must be >= 1; got {length}")
        tokens = tokens[: 1 + ((length - 1) // VOICES) * VOICES] if length > 1 else tokens[:1]
    return tokens


def write_score(
    tokens: Sequence[int], path: str | Path, *, musicxml: bool = False, title: str = "attnzoo chorale"
) -> list[Path]:
    """Write ``tokens`` as MIDI at ``path`` (and MusicXML beside it); returns the files written."""
    path = Path(path)
    score = decode_tokens(tokens, title=title)
    written = [Path(score.write("midi", fp=str(path)))]
    if musicxml:
        written.append(Path(score.write("musicxml", fp=str(path.with_suffix(".musicxml")))))
    return written
