"""Benchmark every attnzoo kernel op: each backend and the reference over a sweep of sequence lengths.

    uv run python tools/bench/kernels.py --ops linear,softmax --lengths 256,1024,4096,16384 --out bench-out/

For each op in ``attnzoo_kernels.ops.all_ops()`` (or those named by ``--ops``: an op name such as
``linear_attention`` or its folder, ``linear``), each backend that can run here and the reference,
inputs come from the op's ``make_inputs(length, ...)``. Measured per size:

* the median wall time of ``--repeats`` calls after ``--warmup`` calls (forward under no_grad, or
  forward + backward with ``--backward``); the backends of an op take turns call by call on the same
  inputs, so that load from other processes on a shared machine affects them alike;
* the peak memory the call allocates above what existed before it: on CUDA
  ``torch.cuda.max_memory_allocated``; on CPU the allocation/free events that
  ``torch.profiler.profile(profile_memory=True)`` records (summed in time order, the maximum is the
  peak), in a separate run so that profiling does not skew the times;
* per backend, the scaling exponent fitted by least squares on log(time) against log(length).

A size is skipped (and the skip is recorded with its reason) when the time or memory predicted from
the previous sizes (quadratic growth assumed for the first extrapolation) exceeds ``--time-cap`` or
``--memory-cap``. Writes ``kernels.json``, ``kernels.png`` and ``kernels.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch


def parse_length(text: str) -> int:
    text = text.strip().lower()
    return int(float(text[:-1]) * 1024) if text.endswith("k") else int(text)


def make_inputs_of(op):
    """The op's input maker: ``op.make_inputs`` if set, else ``make_<op name>_inputs`` in its folder's
    module (for folders with several ops), else that module's ``make_inputs``."""
    make = getattr(op, "make_inputs", None)
    if make is None:
        module = importlib.import_module(op.reference.__module__.rsplit(".", 1)[0])
        make = getattr(module, f"make_{op.name}_inputs", None) or getattr(module, "make_inputs", None)
    return make


def folder_of(op) -> str:
    return op.reference.__module__.rsplit(".", 2)[-2]


def select_ops(names: str | None) -> list:
    from attnzoo_kernels.ops import all_ops

    ops = list(all_ops().values())
    if not names:
        return ops
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    chosen = [op for op in ops if op.name in wanted or folder_of(op) in wanted]
    missing = [n for n in wanted if not any(op.name == n or folder_of(op) == n for op in ops)]
    if missing:
        print(
            f"warning: no op named {', '.join(missing)}; known: {', '.join(op.name for op in ops)}",
            file=sys.stderr,
        )
    return chosen


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def run_once(fn, args, kwargs, backward: bool):
    if not backward:
        with torch.no_grad():
            return fn(*args, **kwargs)
    out = fn(*args, **kwargs)
    leaves = [t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor) and t.requires_grad]
    torch.autograd.grad(out, leaves, torch.ones_like(out))
    return out


def time_call(fn, args, kwargs, *, device: str, backward: bool, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        run_once(fn, args, kwargs, backward)
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run_once(fn, args, kwargs, backward)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_memory(fn, args, kwargs, *, device: str, backward: bool) -> int:
    """Bytes allocated at the peak of one call, above the allocations alive before it."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        out = run_once(fn, args, kwargs, backward)
        torch.cuda.synchronize()
        del out
        return torch.cuda.max_memory_allocated() - before
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = run_once(fn, args, kwargs, backward)
        del out
    events = prof.profiler.kineto_results.events()
    memory = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    current = peak = 0
    for _, nbytes in memory:
        current += nbytes
        peak = max(peak, current)
    return peak


def fit_exponent(lengths: list[int], times: list[float]) -> float | None:
    if len(lengths) < 2:
        return None
    xs, ys = [math.log(x) for x in lengths], [math.log(y) for y in times]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def predict(prev: list[tuple[int, float]], length: int) -> float:
    """Extrapolate a measured quantity to ``length`` from the last two sizes (quadratic if one)."""
    if not prev:
        return 0.0
    if len(prev) == 1:
        exponent = 2.0
    else:
        (l0, v0), (l1, v1) = prev[-2], prev[-1]
        exponent = max(1.0, math.log(max(v1, 1e-12) / max(v0, 1e-12)) / math.log(l1 / l0))
    l_last, v_last = prev[-1]
    return v_last * (length / l_last) ** exponent


def backends_for(op, device: str) -> list:
    chosen = []
    for backend in sorted(op.backends.values(), key=lambda b: -b.priority):
        if backend.interpreted_on_cpu and device == "cpu":
            continue
        if device not in backend.devices:
            continue
        chosen.append(backend)
    return chosen


def bench(args) -> dict:
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    lengths = [parse_length(x) for x in args.lengths.split(",")]
    results, fits = [], {}
    for op in select_ops(args.ops):
        make = make_inputs_of(op)
        if make is None:
            print(f"{op.name}: no make_inputs, skipped", file=sys.stderr)
            continue
        backends = backends_for(op, args.device)
        measured = {b.name: {"time": [], "memory": [], "skip": None} for b in backends}
        for length in lengths:
            call_args, call_kwargs = make(
                length, device=args.device, dtype=dtype, requires_grad=args.backward
            )
            active = []
            for backend in backends:
                row = {"op": op.name, "backend": backend.name, "length": length}
                state = measured[backend.name]
                if state["skip"] is None:
                    t_pred, m_pred = predict(state["time"], length), predict(state["memory"], length)
                    if t_pred > args.time_cap or m_pred > args.memory_cap * 2**30:
                        state["skip"] = (
                            f"from L={length} on: predicted {t_pred:.1f} s / {m_pred / 2**30:.1f} GiB per call "
                            f"exceeds the cap ({args.time_cap} s / {args.memory_cap} GiB)"
                        )
                if state["skip"]:
                    results.append({**row, "skipped": state["skip"]})
                    continue
                reasons = backend.not_supported_reasons(*call_args, **call_kwargs)
                if reasons:
                    results.append({**row, "skipped": "; ".join(reasons)})
                    continue
                active.append(backend)
            # Backends take turns call by call, so that load from other processes hits them alike.
            for backend in list(active):
                try:
                    for _ in range(args.warmup):
                        run_once(backend.fn, call_args, call_kwargs, args.backward)
                except Exception as exc:  # a broken backend or make_inputs is reported, not fatal
                    error = f"error: {type(exc).__name__}: {exc}"
                    print(
                        f"{op.name:18s} {backend.name:10s} L={length:6d} {error}", file=sys.stderr, flush=True
                    )
                    results.append(
                        {"op": op.name, "backend": backend.name, "length": length, "skipped": error}
                    )
                    measured[backend.name]["skip"] = error
                    active.remove(backend)
            times = {backend.name: [] for backend in active}
            for _ in range(args.repeats):
                for backend in active:
                    synchronize(args.device)
                    start = time.perf_counter()
                    run_once(backend.fn, call_args, call_kwargs, args.backward)
                    synchronize(args.device)
                    times[backend.name].append(time.perf_counter() - start)
            for backend in active:
                seconds = statistics.median(times[backend.name])
                peak = peak_memory(
                    backend.fn, call_args, call_kwargs, device=args.device, backward=args.backward
                )
                measured[backend.name]["time"].append((length, seconds))
                measured[backend.name]["memory"].append((length, float(peak)))
                results.append(
                    {
                        "op": op.name,
                        "backend": backend.name,
                        "length": length,
                        "median_s": seconds,
                        "peak_bytes": peak,
                    }
                )
                print(
                    f"{op.name:18s} {backend.name:10s} L={length:6d} {seconds * 1e3:10.2f} ms {peak / 2**20:10.1f} MiB",
                    flush=True,
                )
            del call_args, call_kwargs
        for backend in backends:
            points = measured[backend.name]["time"]
            fits.setdefault(op.name, {})[backend.name] = fit_exponent(
                [n for n, _ in points], [t for _, t in points]
            )
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_description(args.device),
        "torch": torch.__version__,
        "device": args.device,
        "dtype": args.dtype,
        "threads": args.threads,
        "mode": "forward+backward" if args.backward else "forward (no_grad)",
        "warmup": args.warmup,
        "repeats": args.repeats,
        "lengths": lengths,
        "results": results,
        "exponents": fits,
    }


def machine_description(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs"


def slower_than_reference(report: dict) -> list[str]:
    """'op/backend at L' for every fast backend slower than the reference at a size both measured."""
    ref = {(r["op"], r["length"]): r["median_s"] for r in report["results"]
           if r["backend"] == "reference" and "median_s" in r}  # fmt: skip
    return [
        f"{r['op']}/{r['backend']} at L={r['length']}"
        for r in report["results"]
        if r["backend"] != "reference"
        and "median_s" in r
        and (r["op"], r["length"]) in ref
        and r["median_s"] > ref[(r["op"], r["length"])]
    ]


def markdown(report: dict) -> str:
    lengths = report["lengths"]
    lines = [
        f"Measured {report['date']} on {report['machine']} ({report['device']}, {report['threads']} thread(s)), "
        f"torch {report['torch']}, {report['dtype']}, {report['mode']}, median of {report['repeats']} "
        f"after {report['warmup']} warm-up. Cells: time / peak memory; '—' = skipped (see JSON).",
        "",
        "| op | backend | " + " | ".join(f"L={n}" for n in lengths) + " | exponent |",
        "|---|---|" + "---|" * len(lengths) + "---|",
    ]
    by_key = {(r["op"], r["backend"], r["length"]): r for r in report["results"]}
    pairs = list(dict.fromkeys((r["op"], r["backend"]) for r in report["results"]))
    for op, backend in pairs:
        cells = []
        for n in lengths:
            r = by_key.get((op, backend, n), {})
            if "median_s" in r:
                cells.append(f"{format_time(r['median_s'])} / {format_bytes(r['peak_bytes'])}")
            else:
                cells.append("—")
        exponent = report["exponents"].get(op, {}).get(backend)
        lines.append(
            f"| {op} | {backend} | "
            + " | ".join(cells)
            + f" | {'' if exponent is None else f'{exponent:.2f}'} |"
        )
    slow = slower_than_reference(report)
    lines += ["", "Fast backends slower than the reference: " + (", ".join(slow) if slow else "none") + "."]
    skipped = sorted(
        {f"{r['op']}/{r['backend']}: {r['skipped']}" for r in report["results"] if "skipped" in r}
    )
    if skipped:
        lines += ["", "Skipped:", *[f"- {s}" for s in skipped]]
    return "\n".join(lines) + "\n"


def format_time(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


def format_bytes(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = list(dict.fromkeys(r["op"] for r in report["results"]))
    cols = min(3, max(1, len(ops)))
    rows = math.ceil(len(ops) / cols) if ops else 1
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), squeeze=False)
    for ax, op in zip(axes.flat, ops):
        for backend in dict.fromkeys(r["backend"] for r in report["results"] if r["op"] == op):
            points = [(r["length"], r["median_s"]) for r in report["results"]
                      if r["op"] == op and r["backend"] == backend and "median_s" in r]  # fmt: skip
            if points:
                exponent = report["exponents"][op].get(backend)
                label = backend + ("" if exponent is None else f" (∝ L^{exponent:.2f})")
                ax.loglog(*zip(*points), marker="o", label=label)
        ax.set_title(op)
        ax.set_xlabel("sequence length")
        ax.set_ylabel("median time [s]")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(ops) :]:
        ax.axis("off")
    fig.suptitle(f"attnzoo kernels, {report['machine']} ({report['mode']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", default=None, help="comma-separated op names or folders (default: all)")
    parser.add_argument("--lengths", default="256,1024,4096,16384", help="comma-separated, '16k' allowed")
    parser.add_argument("--out", default="bench-out", type=Path)
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"]
    )
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16", "float64"])
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1: shared machines)"
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--backward", action="store_true", help="time forward + backward instead of forward")
    parser.add_argument(
        "--time-cap", type=float, default=20.0, help="skip sizes predicted to take longer [s]"
    )
    parser.add_argument(
        "--memory-cap", type=float, default=4.0, help="skip sizes predicted to allocate more [GiB]"
    )
    args = parser.parse_args(argv)
    report = bench(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "kernels.json").write_text(json.dumps(report, indent=2))
    (args.out / "kernels.md").write_text(markdown(report))
    plot(report, args.out / "kernels.png")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
