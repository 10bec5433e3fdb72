"""Train a Music Transformer on the Bach chorales: ``python -m attnzoo_music.train``.

Recipes (``--preset``):

* ``cpu-small`` (default): the shipped models. 4 layers, width 128, 256-token context, batch 16,
  1,200 steps, so relative and absolute get the same budget. About 10 (relative) and 7 (absolute)
  minutes of compute on one idle CPU thread; 41 and 38 minutes of wall time when the shipped
  weights were trained side by side on a busy shared 2-core machine. ``--steps`` changes the budget.
* ``gpu``: a larger model (6 layers, width 256, 1024-token context, batch 32) for a GPU.

Training windows start on a voice-aligned position (the BOS or the first voice of a time step)
and are transposed by a random interval in -5..+6 semitones (kept only when every note stays in
the vocabulary). Evaluation is unaugmented; see :func:`piece_nll`. The split is by piece and is
NOT the Boulanger-Lewandowski JSB split.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .data import load_splits
from .music_transformer import MusicTransformer, pretrained_configs
from .tokenizer import PAD, VOICES, transpose_tokens

__all__ = ["main", "piece_nll", "evaluate", "sample_batch", "PRESETS"]

PRESETS = {
    "cpu-small": dict(
        dim=128,
        depth=4,
        num_heads=4,
        ffn_dim=512,
        seq_len=256,
        batch_size=16,
        steps=1200,
        lr=1e-3,
        warmup=100,
    ),
    "gpu": dict(
        dim=256,
        depth=6,
        num_heads=8,
        ffn_dim=1024,
        seq_len=1024,
        batch_size=32,
        steps=20000,
        lr=5e-4,
        warmup=1000,
    ),
}


def sample_batch(
    pieces, batch_size: int, seq_len: int, rng: random.Random, augment: bool = True
) -> torch.Tensor:
    """``(batch, seq_len + 1)`` windows drawn in proportion to piece length, PAD-filled past the end."""
    lengths = [len(tokens) for _, tokens in pieces]
    batch = np.full((batch_size, seq_len + 1), PAD, dtype=np.int64)
    for row in range(batch_size):
        _, tokens = rng.choices(pieces, weights=lengths)[0]
        starts = [0, *range(1, max(len(tokens) - seq_len, 1), VOICES)]
        start = rng.choice(starts)
        window = tokens[start : start + seq_len + 1].tolist()
        if augment:
            window = transpose_tokens(window, rng.randint(-5, 6)) or window
        batch[row, : len(window)] = window
    return torch.from_numpy(batch)


@torch.no_grad()
def piece_nll(model: MusicTransformer, tokens, seq_len: int | None = None) -> tuple[float, int]:
    """Summed NLL (nats) of every token after the first, and how many were scored.

    Windows of ``seq_len`` tokens advance by half a window (voice-aligned), so each scored token
    sees at least half a window of context (all of it near the piece's start).
    """
    seq_len = seq_len or model.seq_len
    tokens = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
    total, count, start, scored_until = 0.0, 0, 0, 1
    while scored_until < len(tokens):
        end = min(start + seq_len, len(tokens) - 1)
        logits = model(tokens[start:end][None])[0]
        targets = tokens[start + 1 : end + 1]
        first = scored_until - (start + 1)
        losses = F.cross_entropy(logits[first:].float(), targets[first:], reduction="sum")
        total += float(losses)
        count += len(targets) - first
        scored_until = end + 1
        start += seq_len // 2 + (1 if start == 0 else 0)
        start -= (start - 1) % VOICES if start > 0 else 0
    return total, count


def evaluate(model: MusicTransformer, pieces, seq_len: int | None = None) -> float:
    """Mean NLL per token (nats) over ``pieces``."""
    was_training = model.training
    model.eval()
    total = count = 0
    for _, tokens in pieces:
        piece_total, piece_count = piece_nll(model, tokens, seq_len)
        total, count = total + piece_total, count + piece_count
    model.train(was_training)
    return total / count


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--position", choices=("relative", "absolute"), default="relative")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu-small")
    parser.add_argument("--steps", type=int, help="override the preset's number of optimiser steps")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--seq-len", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for model.safetensors and metrics.json"
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    preset = dict(PRESETS[args.preset])
    for key in ("steps", "batch_size", "seq_len", "lr"):
        if getattr(args, key) is not None:
            preset[key] = getattr(args, key)
    name = "music-transformer-bach" if args.position == "relative" else "music-transformer-bach-absolute"
    config = dict(pretrained_configs()[name])
    config.update({k: preset[k] for k in ("dim", "depth", "num_heads", "ffn_dim", "seq_len")})
    if args.position == "relative":
        config["max_relative_position"] = preset["seq_len"]
    model = MusicTransformer(**config).to(args.device)

    splits = load_splits()
    optimizer = torch.optim.AdamW(model.parameters(), lr=preset["lr"], betas=(0.9, 0.98), weight_decay=0.01)
    steps, warmup = preset["steps"], preset["warmup"]
    schedule = lambda step: (
        min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step / steps, 1.0)))
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    args.out.mkdir(parents=True, exist_ok=True)
    history, best, started = [], math.inf, time.time()
    for step in range(1, steps + 1):
        batch = sample_batch(splits["train"], preset["batch_size"], preset["seq_len"], rng).to(args.device)
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), ignore_index=PAD
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        if step % args.eval_every == 0 or step == steps:
            valid = evaluate(model, splits["valid"])
            history.append(
                dict(step=step, train_loss=float(loss), valid_nll=valid, seconds=time.time() - started)
            )
            print(json.dumps(history[-1]), flush=True)
            if valid < best:
                best = valid
                from safetensors.torch import save_file

                state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
                save_file(
                    state, str(args.out / "model.safetensors"), metadata={"name": name, "step": str(step)}
                )

    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(args.out / "model.safetensors")))
    metrics = dict(
        name=name,
        config=config,
        preset=preset,
        seed=args.seed,
        threads=args.threads,
        train_seconds=time.time() - started,
        best_valid_nll=best,
        test_nll=evaluate(model, splits["test"]),
        test_tokens=sum(len(t) - 1 for _, t in splits["test"]),
        pieces={split: len(pieces) for split, pieces in splits.items()},
        history=history,
        split_note="split by sha256(piece name) % 10 over music21's Bach corpus; NOT the Boulanger-Lewandowski JSB split",
    )
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(
        json.dumps({k: metrics[k] for k in ("name", "best_valid_nll", "test_nll", "train_seconds")}),
        flush=True,
    )
    return metrics


if __name__ == "__main__":
    main()
