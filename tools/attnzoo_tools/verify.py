"""``attnzoo verify``: load a release folder the way ``zoo.load`` does and compare with the source."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import attnzoo
import torch
from attnzoo.errors import ZooError
from attnzoo.inputs import example_input
from attnzoo.registry import info, resolve

from .convert import converted_model, read_release, read_source, target_config

__all__ = ["VerifyReport", "output_tensors", "verify"]


@dataclass
class VerifyReport:
    """What ``verify`` found; the differences are None without a source.

    ``max_abs_diff`` compares the release as ``zoo.load`` returns it with the source model.
    Tensors read from safetensors keep the file's (unaligned) offsets, and CPU kernels can
    round differently on unaligned memory, so a bit-exact conversion may still differ by an
    ulp or so. ``max_abs_diff_realigned`` is then measured again with the release's tensors
    copied to fresh memory: 0 there means the conversion itself is exact.
    """

    model: str
    sha256: str
    input_shape: tuple[int, ...]
    output_shapes: list[tuple[int, ...]]
    finite: bool
    max_abs_diff: float | None = None
    max_param_diff: float | None = None
    max_abs_diff_realigned: float | None = None
    source_reader: str | None = None

    def ok(self, atol: float) -> bool:
        return self.finite and (self.max_abs_diff is None or self.max_abs_diff <= atol)


def output_tensors(output: Any) -> Iterator[torch.Tensor]:
    """Every tensor in a forward's output (a tensor, a tuple/list/dict of them, or a dataclass-like)."""
    if isinstance(output, torch.Tensor):
        yield output
    elif isinstance(output, dict):
        for value in output.values():
            yield from output_tensors(value)
    elif isinstance(output, (list, tuple)):
        for value in output:
            yield from output_tensors(value)
    elif hasattr(output, "__dict__"):
        for value in vars(output).values():
            yield from output_tensors(value)


def _max_diff(first: list[torch.Tensor], second: list[torch.Tensor]) -> float:
    if [t.shape for t in first] != [t.shape for t in second]:
        raise ZooError(
            f"the outputs differ in shape: {[tuple(t.shape) for t in first]} vs {[tuple(t.shape) for t in second]}"
        )
    diffs = [(a.double() - b.double()).abs().max().item() for a, b in zip(first, second) if a.numel()]
    return max(diffs, default=0.0)


def verify(
    out_dir: str | Path,
    name: str,
    *,
    source: str | Path | None = None,
    batch_size: int = 1,
    seed: int = 0,
) -> VerifyReport:
    """Load ``out_dir`` strictly through ``attnzoo.load(name, weights=out_dir)`` and run a forward pass.

    The input is ``example_input(card.input, batch_size, seed)``. With ``source``, the official
    checkpoint is mapped through the family's converter into a second model, which runs on
    the same input; the report carries the largest absolute difference of the outputs and of
    the parameters.
    """
    spec, _ = resolve(name)
    record = read_release(out_dir)
    if record.get("model") not in (None, spec.name):
        raise ZooError(f"{out_dir} holds weights converted for {record['model']!r}, not {spec.name!r}")
    card = info(spec.name)
    if card.input is None:
        raise ZooError(f"{spec.name} registers no InputSpec, so there is no fixed input to verify it on")
    overrides = record.get("config_overrides", {})
    model = attnzoo.load(name, weights=out_dir, **overrides)
    batch = example_input(card.input, batch_size=batch_size, seed=seed)
    with torch.inference_mode():
        outputs = [t.clone() for t in output_tensors(model(batch))]
    if not outputs:
        raise ZooError(f"{spec.name}'s forward returned no tensors")
    report = VerifyReport(
        model=spec.name,
        sha256=record["weights"]["sha256"],
        input_shape=tuple(batch.shape),
        output_shapes=[tuple(t.shape) for t in outputs],
        finite=all(bool(torch.isfinite(t).all()) for t in outputs if t.is_floating_point()),
    )
    if source is None:
        return report

    checkpoint = read_source(source)
    config = target_config(spec, None, record.get("config", {}))
    reference, _ = converted_model(spec, checkpoint.obj, config, keep_dtype=record.get("keep_dtype", False))
    with torch.inference_mode():
        expected = [t.clone() for t in output_tensors(reference(batch))]
    report.max_abs_diff = _max_diff(outputs, expected)
    if report.max_abs_diff > 0:
        model.load_state_dict({k: v.clone() for k, v in model.state_dict().items()}, assign=True)
        with torch.inference_mode():
            realigned = [t.clone() for t in output_tensors(model(batch))]
        report.max_abs_diff_realigned = _max_diff(realigned, expected)
    loaded, converted = model.state_dict(), reference.state_dict()
    if set(loaded) != set(converted):
        raise ZooError(
            f"the release and the source differ in keys: {sorted(set(loaded) ^ set(converted))[:8]}"
        )
    report.max_param_diff = _max_diff(
        [loaded[k] for k in sorted(loaded)], [converted[k] for k in sorted(loaded)]
    )
    report.source_reader = checkpoint.reader
    return report
