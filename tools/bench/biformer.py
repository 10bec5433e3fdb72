"""Time attnzoo's BiFormer: forward images/s of a variant, and the routing op on each routed stage.

    uv run python tools/bench/biformer.py --model biformer_small --batch 8 --threads 1 --repeats 7

Prints JSON: the median forward time of the whole model at 224x224 (inference mode, random
weights), and per routed stage of that variant the median time of
``attnzoo_kernels.ops.routing.routing_attention`` on the stage's map (q, k, v as the stage's
qkv projection produces them). The comparison with the official implementation in
docs/models/biformer.md was run with the official code outside this repository.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import time
import warnings

import torch


def median_seconds(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="biformer_small")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--backend", default="auto", help="routing op backend for the op timings")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")

    import attnzoo_vision.biformer as biformer
    from attnzoo_kernels.ops.routing import routing_attention

    torch.manual_seed(0)
    model = getattr(biformer, args.model)().eval()
    x = torch.randn(args.batch, 3, args.size, args.size)
    with torch.inference_mode():
        model_s = median_seconds(lambda: model(x), args.repeats)

        stages = []
        for i, stage in enumerate(model.stages):
            attn = (stage.blocks[0] if hasattr(stage, "blocks") else stage[0]).attn
            if not isinstance(attn, biformer.BiLevelRoutingAttention):
                continue
            side = model.stage_size(args.size, i)
            q, k, v = (torch.randn(args.batch, side, side, c) for c in (attn.qk_dim, attn.qk_dim, attn.dim))
            options = {
                "num_heads": attn.num_heads,
                "n_win": attn.n_win,
                "topk": attn.topk,
                "scale": attn.scale,
            }
            seconds = median_seconds(
                lambda q=q, k=k, v=v, options=options: routing_attention(
                    q, k, v, backend=args.backend, **options
                ),
                args.repeats,
            )
            stages.append(
                {
                    "stage": i + 1,
                    "map": f"{side}x{side}",
                    "channels": attn.dim,
                    **options,
                    "ms": seconds * 1e3,
                }
            )

    print(
        json.dumps(
            {
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="minutes"),
                "machine": f"{platform.machine()} {platform.processor()}".strip(),
                "torch": torch.__version__,
                "threads": args.threads,
                "model": args.model,
                "batch": args.batch,
                "size": args.size,
                "images_per_s": args.batch / model_s,
                "routing_op": stages,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
