"""Time zoo.load's meta-device path against plain construction followed by load_state_dict.

    uv run python tools/bench/loading.py biformer-b --repeats 5

Both paths read the same safetensors file; the figures go into docs/usage.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import attnzoo as zoo
import torch
from attnzoo.loading import import_object
from attnzoo.registry import resolve
from safetensors.torch import load_file, save_file


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)

    spec, _ = resolve(args.model)
    builder = import_object(spec.builder)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.safetensors"
        reference = zoo.load(args.model, pretrained=False)
        save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, path)
        size_mb = path.stat().st_size / 2**20

        def plain() -> None:
            model = builder(**spec.config)
            model.load_state_dict(load_file(path))

        def zoo_path() -> None:
            zoo.load(args.model, weights=path)

        read = _median_seconds(lambda: load_file(path), args.repeats)
        plain_s = _median_seconds(plain, args.repeats)
        zoo_s = _median_seconds(zoo_path, args.repeats)
    print(
        f"| {spec.name} | {size_mb:.0f} MB | {read:.3f} s | {plain_s:.3f} s | {zoo_s:.3f} s | {plain_s / zoo_s:.1f}x |"
    )


if __name__ == "__main__":
    main()
