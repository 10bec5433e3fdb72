"""The restricted unpickler: foreign classes become inert stand-ins, calls off the allow-list are refused."""

from __future__ import annotations

import builtins
import importlib.util
import os
import pickle
import subprocess
import sys

import pytest
import torch
from attnzoo_tools.unpickle import ALLOWED, RefusedPickleError, StandIn, module_state_dict, restricted_load
from foreign import Malicious, save_with_foreign_module


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("protocol", [1, 2, 4])
def test_whole_module_pickle_opens_without_importing_its_class(tmp_path, protocol):
    expected = {}

    def build(module):
        net = module.ToyNet().half()
        expected.update(net.state_dict())
        return {"model": net, "args": module.TrainArgs(), "epoch": 7}

    path, module_name = save_with_foreign_module(tmp_path, build, "whole.pt", protocol)
    assert importlib.util.find_spec(module_name) is None
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)  # what the fallback exists for

    obj, stand_ins = restricted_load(path)

    assert module_name not in sys.modules
    assert f"{module_name}.ToyNet" in stand_ins and f"{module_name}.TrainArgs" in stand_ins
    assert isinstance(obj["model"], StandIn) and obj["epoch"] == 7
    assert obj["args"].epochs == 300 and obj["args"].data == "imagenet"
    state = obj["model"].state_dict()
    assert list(state) == list(expected)  # same keys, same order, non-persistent buffer left out
    for key, value in expected.items():
        assert state[key].dtype == torch.float16
        assert torch.equal(state[key], value)
    assert obj["model"].names == {0: "a", 1: "b", 2: "c"}


@pytest.mark.parametrize(
    "target, args",
    [
        (os.system, ("touch {marker}",)),
        (builtins.eval, ("open({marker!r}, 'w')",)),
        (builtins.exec, ("open({marker!r}, 'w')",)),
        (subprocess.check_call, (["touch", "{marker}"],)),
        (builtins.getattr, (subprocess.Popen, "__init__")),
    ],
    ids=["os.system", "eval", "exec", "subprocess", "getattr"],
)
def test_calls_off_the_allow_list_are_refused(tmp_path, target, args):
    marker = tmp_path / "pwned"

    def fill(value):
        if isinstance(value, str):
            return value.format(marker=str(marker))
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    path = tmp_path / "evil.pth"
    payload = Malicious(target, *[fill(a) for a in args])
    torch.save({"model": {"w": torch.ones(2)}, "payload": payload}, path)
    with pytest.raises(RefusedPickleError, match="not on the restricted unpickler's allow-list"):
        restricted_load(path)
    assert not marker.exists()


def test_refusal_names_the_callable(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"payload": Malicious(os.system, "echo hi")}, path)
    with pytest.raises(RefusedPickleError, match=r"(posix|nt|os)\.system"):
        restricted_load(path)


def test_stand_in_classes_cannot_be_called():
    from attnzoo_tools.unpickle import stand_in_class

    cls = stand_in_class("some.module", "Thing")
    with pytest.raises(RefusedPickleError, match="some.module.Thing"):
        cls(1, 2)


def test_allow_list_holds_no_code_runners():
    dangerous = {eval, exec, getattr, setattr, __import__, compile, open, os.system, subprocess.Popen}
    assert not dangerous & {v for v in ALLOWED.values() if callable(v)}
    assert ("torch._utils", "_rebuild_tensor_v2") in ALLOWED
    assert ("collections", "OrderedDict") in ALLOWED


def test_module_state_dict_matches_torch_on_a_real_module():
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ours = module_state_dict(net)
    reference = net.state_dict()
    assert list(ours) == list(reference)
    assert all(torch.equal(ours[k], reference[k]) for k in reference)
    with pytest.raises(TypeError, match="nn.Module"):
        module_state_dict(object.__new__(type("Plain", (), {})))


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torchscript_archives_are_refused(tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)
    with pytest.raises(RefusedPickleError, match="TorchScript"):
        restricted_load(path)


def test_legacy_non_zip_format(tmp_path):
    path = tmp_path / "legacy.pth"
    state = {"w": torch.randn(3, 2), "nested": {"b": torch.arange(4)}}
    torch.save({"model": state, "payload": None}, path, _use_new_zipfile_serialization=False)
    obj, stand_ins = restricted_load(path)
    assert stand_ins == []
    assert torch.equal(obj["model"]["w"], state["w"]) and torch.equal(
        obj["model"]["nested"]["b"], state["nested"]["b"]
    )

    evil = tmp_path / "legacy_evil.pth"
    torch.save({"payload": Malicious(os.system, "true")}, evil, _use_new_zipfile_serialization=False)
    with pytest.raises(RefusedPickleError, match="system"):
        restricted_load(evil)
