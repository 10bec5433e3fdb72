"""Benchmark relative attention: the reference's (L, L, D) relative tensor against the skewing trick.

    uv run python tools/bench/relative.py --lengths 1024 2048 4096 --out docs/kernels/relative-bench.json

Each (backend, length) runs in a fresh subprocess so that peak memory is that run's own. On CPU the
peak is the growth of the process's maximum resident set over its resident set just before the
first forward pass; on CUDA it is ``torch.cuda.max_memory_allocated`` over the inputs. Time is the
median of ``--repeats`` forward passes after one warm-up, under ``torch.no_grad`` (inference).
Inputs come from ``attnzoo_kernels.ops.relative.make_inputs`` (batch 1, 4 heads, depth 32, causal).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

BACKENDS = ("reference", "skew", "torch")


def _rss_kib() -> int:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize() // 1024


def measure(backend: str, length: int, repeats: int, threads: int, device: str) -> dict:
    """One measurement in this process (called in a subprocess by :func:`main`)."""
    import torch
    from attnzoo_kernels.ops.relative import make_inputs, relative_attention

    torch.set_num_threads(threads)
    args, kwargs = make_inputs(length, device=device)
    with torch.no_grad():
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            base = _rss_kib() * 1024
        relative_attention(*args, backend=backend, **kwargs)
        if device == "cuda":
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() - base
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            relative_attention(*args, backend=backend, **kwargs)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return dict(
        backend=backend,
        length=length,
        peak_mib=peak / 2**20,
        median_s=statistics.median(times),
        times_s=times,
    )


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--one", nargs=2, metavar=("BACKEND", "LENGTH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        result = measure(args.one[0], int(args.one[1]), args.repeats, args.threads, args.device)
        print(json.dumps(result))
        return [result]
    results = []
    for length in args.lengths:
        for backend in args.backends:
            command = [
                sys.executable,
                __file__,
                "--one",
                backend,
                str(length),
                "--repeats",
                str(args.repeats),
                "--threads",
                str(args.threads),
                "--device",
                args.device,
            ]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            row = results[-1]
            print(
                f"L={length:6d} {backend:10s} peak {row['peak_mib']:9.1f} MiB  median {row['median_s'] * 1e3:9.1f} ms",
                flush=True,
            )
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(
                dict(device=args.device, threads=args.threads, repeats=args.repeats, results=results),
                handle,
                indent=2,
            )
    return results


if __name__ == "__main__":
    main()
