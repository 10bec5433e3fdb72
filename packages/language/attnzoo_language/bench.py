"""Training throughput of the mixers, measured round-robin so that machine load hits all alike.

    python -m attnzoo_language.bench --mixers softmax moh grassmann --rounds 3 --steps 5

Each round runs ``--steps`` optimiser steps of every model in turn (after one warm-up step) and
records tokens/s; the median over rounds is reported. One thread by default.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from .modeling import build_mixer_lm

__all__ = ["measure_throughput", "main"]


def measure_throughput(
    mixers: list[str],
    *,
    hidden_size: int = 128,
    layers: int = 4,
    heads: int = 4,
    seq_len: int = 128,
    batch_size: int = 16,
    rounds: int = 3,
    steps: int = 5,
) -> dict[str, float]:
    """Median training tokens/s (forward, backward, AdamW step) of each mixer spec."""
    models, optimizers = {}, {}
    for spec in mixers:
        torch.manual_seed(0)
        models[spec] = build_mixer_lm(
            vocab_size=256,
            hidden_size=hidden_size,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            mixers=spec,
            max_position_embeddings=max(256, seq_len),
        ).train()
        optimizers[spec] = torch.optim.AdamW(models[spec].parameters(), lr=1e-4)
    batch = torch.randint(0, 256, (batch_size, seq_len), generator=torch.Generator().manual_seed(0))

    def step(spec: str) -> None:
        loss = models[spec](input_ids=batch, labels=batch, use_cache=False).loss
        optimizers[spec].zero_grad(set_to_none=True)
        loss.backward()
        optimizers[spec].step()

    for spec in mixers:
        step(spec)
    samples: dict[str, list[float]] = {spec: [] for spec in mixers}
    for _ in range(rounds):
        for spec in mixers:
            start = time.perf_counter()
            for _ in range(steps):
                step(spec)
            samples[spec].append(steps * batch_size * seq_len / (time.perf_counter() - start))
    return {spec: statistics.median(values) for spec, values in samples.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mixers", nargs="+", required=True, help="mixer specs, e.g. softmax grassmann,softmax")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(json.dumps(measure_throughput(args.mixers, rounds=args.rounds, steps=args.steps), indent=2))


if __name__ == "__main__":
    main()
