"""One-call check of every attnzoo kernel op on a GPU: correctness against the reference, then timing.

    uv run python tools/bench/cuda_check.py                       # on a CUDA machine
    uv run python tools/bench/cuda_check.py --device cpu --check-lengths 48 --time-lengths 256   # smoke test

For every op in ``attnzoo_kernels.ops.all_ops()`` and every backend (Triton included; on CPU only
under ``TRITON_INTERPRET=1``):

1. correctness: inputs from the op's ``make_inputs`` at each of ``--check-lengths``; the reference runs in float64,
   each backend in float64 (where it accepts it), float32 and the low-precision ``--low-dtype``;
   forward output and the gradients of every input that requires grad (a fixed random cotangent)
   are compared by the relative error max|x - ref| / max|ref|, against a per-dtype tolerance;
2. timing: median forward and forward+backward time per backend at ``--time-lengths`` (float32, or
   ``--time-dtype``), the reference only while its predicted memory stays under ``--memory-cap``.

Prints a table, writes ``--out`` (JSON) and exits 1 when any comparison fails.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kernels import make_inputs_of, parse_length, select_ops, time_call  # noqa: E402

TOLERANCE = {torch.float64: 1e-7, torch.float32: 2e-3, torch.float16: 2e-2, torch.bfloat16: 6e-2}


def relative_error(x: torch.Tensor, ref: torch.Tensor) -> float:
    scale = ref.abs().max().item() or 1.0
    if not torch.isfinite(x).all():
        return float("inf")
    return (x.double() - ref.double()).abs().max().item() / scale


def cast_inputs(args, kwargs, dtype, requires_grad):
    def cast(t):
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            return t.detach().to(dtype).requires_grad_(requires_grad and t.requires_grad)
        return t

    return tuple(cast(t) for t in args), {n: cast(t) for n, t in kwargs.items()}


def forward_backward(fn, args, kwargs, cotangent):
    out = fn(*args, **kwargs)
    leaves = [t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor) and t.requires_grad]
    grads = torch.autograd.grad(out, leaves, cotangent.to(out.dtype)) if leaves else ()
    return out, grads


def check_op(op, backends, args_cli, length: int) -> list[dict]:
    make = make_inputs_of(op)
    base_args, base_kwargs = make(length, device=args_cli.device, dtype=torch.float64, requires_grad=True)
    gen = torch.Generator(device="cpu").manual_seed(0)
    ref_out, ref_grads = None, None
    rows = []
    ref_args, ref_kwargs = cast_inputs(base_args, base_kwargs, torch.float64, True)
    with torch.no_grad():
        shape = op.reference(*ref_args, **ref_kwargs).shape
    cotangent = torch.randn(shape, generator=gen, dtype=torch.float64).to(args_cli.device)
    ref_out, ref_grads = forward_backward(op.reference, ref_args, ref_kwargs, cotangent)
    dtypes = [torch.float64, torch.float32, getattr(torch, args_cli.low_dtype)]
    for backend in backends:
        for dtype in dtypes:
            row = {
                "op": op.name,
                "backend": backend.name,
                "length": length,
                "dtype": str(dtype).removeprefix("torch."),
            }
            call_args, call_kwargs = cast_inputs(base_args, base_kwargs, dtype, backend.supports_grad)
            reasons = backend.not_supported_reasons(*call_args, **call_kwargs)
            if reasons:
                rows.append({**row, "status": "skipped", "why": "; ".join(reasons)})
                continue
            try:
                out, grads = forward_backward(backend.fn, call_args, call_kwargs, cotangent)
            except Exception as exc:  # a crash is a failure to report, not to hide
                rows.append({**row, "status": "FAIL", "why": f"{type(exc).__name__}: {exc}"})
                continue
            errors = {"out": relative_error(out, ref_out)}
            for i, (g, rg) in enumerate(zip(grads, ref_grads)):
                errors[f"grad{i}"] = relative_error(g, rg)
            worst = max(errors.values())
            if backend.name == "reference" and dtype != torch.float64:
                # The reference is the float64 ground truth; in low precision it is shown, not judged.
                status = "info"
            else:
                status = "ok" if worst <= TOLERANCE[dtype] else "FAIL"
            rows.append({**row, "status": status, "max_rel_error": worst, "errors": errors})
    return rows


def time_op(op, backends, args_cli) -> list[dict]:
    make = make_inputs_of(op)
    dtype = getattr(torch, args_cli.time_dtype)
    rows = []
    for backend in backends:
        too_big = False
        for length in [parse_length(x) for x in args_cli.time_lengths.split(",")]:
            row = {"op": op.name, "backend": backend.name, "length": length, "dtype": args_cli.time_dtype}
            if too_big:
                rows.append({**row, "status": "skipped", "why": "reference over the memory cap"})
                continue
            call_args, call_kwargs = make(length, device=args_cli.device, dtype=dtype, requires_grad=True)
            reasons = backend.not_supported_reasons(*call_args, **call_kwargs)
            if reasons:
                rows.append({**row, "status": "skipped", "why": "; ".join(reasons)})
                continue
            try:
                fwd = time_call(backend.fn, call_args, call_kwargs, device=args_cli.device, backward=False,
                                warmup=args_cli.warmup, repeats=args_cli.repeats)  # fmt: skip
                bwd = None
                if backend.supports_grad:
                    bwd = time_call(backend.fn, call_args, call_kwargs, device=args_cli.device, backward=True,
                                    warmup=args_cli.warmup, repeats=args_cli.repeats)  # fmt: skip
                peak = None
                if args_cli.device == "cuda":
                    peak = torch.cuda.max_memory_allocated()
                    torch.cuda.reset_peak_memory_stats()
                rows.append(
                    {**row, "status": "ok", "forward_s": fwd, "forward_backward_s": bwd, "peak_bytes": peak}
                )
            except torch.OutOfMemoryError:
                rows.append({**row, "status": "skipped", "why": "out of memory"})
                too_big = True
                torch.cuda.empty_cache()
            if backend.name == "reference" and args_cli.device == "cuda":
                too_big = too_big or torch.cuda.max_memory_allocated() > args_cli.memory_cap * 2**30 / 16
            del call_args, call_kwargs
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--ops", default=None, help="comma-separated op names or folders (default: all)")
    parser.add_argument(
        "--check-lengths",
        default="97,1500",
        help="lengths of the correctness checks (an odd one; a long one that takes the sparse gather path "
        "and several linear-attention slices)",
    )
    parser.add_argument("--low-dtype", default="bfloat16", choices=["float16", "bfloat16"])
    parser.add_argument("--time-lengths", default="1024,4096,16384")
    parser.add_argument("--time-dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--memory-cap", type=float, default=60.0, help="GiB the reference may use")
    parser.add_argument("--out", type=Path, default=Path("cuda-check.json"))
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device; use --device cpu for a smoke test", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    checks, timings = [], []
    for op in select_ops(args.ops):
        if make_inputs_of(op) is None:
            checks.append({"op": op.name, "backend": "-", "status": "skipped", "why": "no make_inputs"})
            continue
        backends = sorted(op.backends.values(), key=lambda b: -b.priority)
        for length in [parse_length(x) for x in args.check_lengths.split(",")]:
            checks += check_op(op, backends, args, length)
        timings += time_op(op, backends, args)
    for row in checks:
        detail = f"{row['max_rel_error']:.2e}" if "max_rel_error" in row else row.get("why", "")
        print(
            f"check  {row['op']:18s} {row['backend']:10s} L={row.get('length', '-')!s:<5} "
            f"{row.get('dtype', ''):9s} {row['status']:7s} {detail}"
        )
    for row in timings:
        if row["status"] == "ok":
            fb = row["forward_backward_s"]
            detail = f"fwd {row['forward_s'] * 1e3:9.3f} ms" + (
                "" if fb is None else f"  fwd+bwd {fb * 1e3:9.3f} ms"
            )
        else:
            detail = row["why"]
        print(f"time   {row['op']:18s} {row['backend']:10s} L={row['length']:<6d} {detail}")
    failed = [r for r in checks if r["status"] == "FAIL"]
    device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    args.out.write_text(
        json.dumps(
            {"device": device, "torch": torch.__version__, "checks": checks, "timings": timings}, indent=2
        )
    )
    passed = sum(r["status"] == "ok" for r in checks)
    others = len(checks) - passed - len(failed)
    print(f"{passed} passed, {len(failed)} failed ({others} skipped or reference-only rows)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
