"""Pickles of classes that cannot be imported when the checkpoint is read, as in the wild."""

from __future__ import annotations

import importlib
import sys
import textwrap
import uuid
from pathlib import Path

import torch

MODULE_SOURCE = textwrap.dedent(
    '''
    import torch
    from torch import nn


    class TrainArgs:
        """A training-config object, like the argparse namespaces official checkpoints carry."""

        def __init__(self):
            self.epochs = 300
            self.data = "imagenet"


    class ToyNet(nn.Module):
        """A whole model pickled as an object, as Ultralytics checkpoints do (official layer names)."""

        def __init__(self, width=8, num_classes=3):
            super().__init__()
            self.layer1 = nn.Linear(4, width)
            self.layer2 = nn.Linear(width, num_classes)
            self.register_buffer("scratch", torch.zeros(2), persistent=False)
            self.names = {0: "a", 1: "b", 2: "c"}
            self.act = nn.ReLU()
    '''
)


def save_with_foreign_module(tmp_path: Path, build, filename: str, protocol: int = 2) -> tuple[Path, str]:
    """Import a throwaway module, ``torch.save(build(module))``, then make the module unimportable.

    Returns the checkpoint path and the module's name (which is then absent from sys.modules
    and from every sys.path entry).
    """
    name = f"official_{uuid.uuid4().hex[:12]}"
    folder = tmp_path / "official_code"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(MODULE_SOURCE)
    sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module(name)
        path = tmp_path / filename
        torch.manual_seed(0)
        torch.save(build(module), path, pickle_protocol=protocol)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(name, None)
        importlib.invalidate_caches()
    (folder / f"{name}.py").unlink()
    return path, name


class Malicious:
    """Pickles as a call to ``target(*args)``: what a hostile checkpoint does."""

    def __init__(self, target, *args):
        self.target, self.args = target, args

    def __reduce__(self):
        return self.target, self.args
