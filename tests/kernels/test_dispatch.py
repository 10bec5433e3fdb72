"""The dispatcher itself: auto selection, explicit backends that cannot serve, the env var, Triton on CPU."""

from __future__ import annotations

import pytest
import torch
from attnzoo_kernels import dispatch
from attnzoo_kernels.dispatch import BackendNotSupported, Op
from attnzoo_kernels.ops import all_ops


@pytest.fixture
def toy_op():
    op = Op("toy_dispatch_op", reference=lambda x, **kw: ("reference", x))
    op.register("slow", lambda x, **kw: ("slow", x), priority=5)
    op.register(
        "fast",
        lambda x, **kw: ("fast", x),
        priority=10,
        dtypes=(torch.float32,),
        check=lambda x, **kw: ["odd length"] if x.shape[-1] % 2 else [],
    )
    op.register(
        "kernel", lambda x, **kw: ("kernel", x), priority=50, devices=("cuda", "cpu"), interpreted_on_cpu=True
    )
    op.register(
        "missing", lambda x, **kw: ("missing", x), priority=40, available=lambda: "package not installed"
    )
    yield op
    dispatch._OPS.pop(op.name, None)


def test_auto_takes_the_highest_priority_backend_that_serves(toy_op):
    assert toy_op(torch.zeros(4))[0] == "fast"
    assert toy_op(torch.zeros(3))[0] == "slow"  # fast's check refuses odd lengths
    assert toy_op(torch.zeros(4, dtype=torch.float64))[0] == "slow"  # fast is float32 only


def test_auto_falls_back_to_the_reference():
    op = Op("toy_fallback_op", reference=lambda x: "reference")
    op.register("never", lambda x: "never", priority=10, check=lambda x: ["never serves"])
    try:
        assert op(torch.zeros(2)) == "reference"
    finally:
        dispatch._OPS.pop(op.name)


def test_interpreted_backend_is_never_auto_on_cpu_but_can_be_asked_for(toy_op):
    assert toy_op.select("auto", torch.zeros(4)).name != "kernel"
    assert toy_op(torch.zeros(4), backend="kernel")[0] == "kernel"


def test_explicit_backend_that_cannot_serve_lists_every_reason(toy_op):
    with pytest.raises(BackendNotSupported) as info:
        toy_op(torch.zeros(3, dtype=torch.float64), backend="fast")
    message = str(info.value)
    assert "odd length" in message and "dtype torch.float64" in message and "'fast'" in message
    with pytest.raises(BackendNotSupported, match="package not installed"):
        toy_op(torch.zeros(4), backend="missing")
    with pytest.raises(BackendNotSupported, match="unknown backend 'nope'"):
        toy_op(torch.zeros(4), backend="nope")


def test_backward_support_is_checked(toy_op):
    toy_op.register("inference", lambda x, **kw: ("inference", x), priority=100, supports_grad=False)
    x = torch.zeros(4, requires_grad=True)
    assert toy_op(x)[0] == "fast"
    with torch.no_grad():
        assert toy_op(x)[0] == "inference"


def test_env_var_forces_every_op_or_one_op(toy_op, monkeypatch):
    monkeypatch.setenv(dispatch.ENV_VAR, "reference")
    assert toy_op(torch.zeros(4))[0] == "reference"
    monkeypatch.setenv(dispatch.ENV_VAR, "other_op=reference, toy_dispatch_op=slow")
    assert toy_op(torch.zeros(4))[0] == "slow"
    assert toy_op(torch.zeros(4), backend="fast")[0] == "slow"  # the env var wins, for debugging
    monkeypatch.setenv(dispatch.ENV_VAR, "toy_dispatch_op=fast")
    with pytest.raises(BackendNotSupported, match="odd length"):
        toy_op(torch.zeros(3))


def test_every_registered_op_has_a_reference_and_inputs_it_accepts():
    """The benchmark and GPU-check contract: each op finds its input maker (``op.make_inputs``, else
    ``make_<op>_inputs`` or ``make_inputs`` in its folder) and its reference runs on those inputs."""
    import importlib

    for op in all_ops().values():
        if op.name.startswith("toy_"):
            continue
        assert "reference" in op.backends
        make = getattr(op, "make_inputs", None)
        if make is None:
            module = importlib.import_module(op.reference.__module__.rsplit(".", 1)[0])
            make = getattr(module, f"make_{op.name}_inputs", None) or module.make_inputs
        args, kwargs = make(16)
        assert isinstance(args, tuple) and isinstance(kwargs, dict)
        with torch.no_grad():
            out = op(*args, backend="reference", **kwargs)
        outs = out if isinstance(out, tuple) else (out,)
        assert all(torch.isfinite(t).all() for t in outs if isinstance(t, torch.Tensor)), op.name


def test_dispatch_itself_traces_under_torch_compile():
    from attnzoo_kernels.ops.softmax import make_inputs, softmax_attention

    (q, k, v), kwargs = make_inputs(20)
    compiled = torch.compile(lambda *a: softmax_attention(*a, **kwargs), backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(q, k, v), softmax_attention(q, k, v, **kwargs))
