"""Run under torch.distributed.run by test_lm_train.py: DDP then FSDP2 in one process group.

Each rank writes its metrics to ``<out>/<mode>-rank<r>.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch.distributed as dist
from attnzoo_language.train import parse_args, train

if __name__ == "__main__":
    out = Path(sys.argv[1])
    dist.init_process_group(backend="gloo")
    common = [
        "--synthetic",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--seq-len",
        "16",
        "--batch-size",
        "2",
        "--hidden-size",
        "32",
        "--layers",
        "2",
        "--heads",
        "4",
        "--eval-batches",
        "1",
        "--mixers",
        "moh,grassmann",
        "--moh-shared-heads",
        "1",
        "--moh-routed-heads",
        "2",
    ]
    for mode in ("ddp", "fsdp2"):
        metrics = train(parse_args([*common, "--distributed", mode]))
        (out / f"{mode}-rank{dist.get_rank()}.json").write_text(json.dumps(metrics))
    dist.destroy_process_group()
