"""Finding a model's weight file: the Hub through huggingface_hub, files shipped in plugins, local paths."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from .errors import HashMismatchError, WeightsUnavailableError
from .specs import WeightEntry

_CHUNK = 1 << 20


def sha256_of(path: str | Path, advance: Callable[[int], object] | None = None) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks; ``advance(n_bytes)`` drives a progress bar."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            if advance is not None:
                advance(len(chunk))
    return digest.hexdigest()


def fetch(entry: WeightEntry, model_name: str) -> Path:
    """The local path of a weight entry's file, downloaded into the Hub cache if needed, hash-checked."""
    if not entry.published:
        raise WeightsUnavailableError(
            f"{model_name}.{entry.tag}: weights are announced but not yet published (to be at {entry.source}); "
            f"pass weights=PATH to an official checkpoint ({entry.origin}), or load with pretrained=False"
        )
    path = _fetch_hub(entry, model_name) if entry.hub is not None else _package_file(entry, model_name)
    verify(path, entry, model_name)
    return path


def verify(path: Path, entry: WeightEntry, model_name: str) -> None:
    """Check a file against the entry's pinned sha256."""
    actual = sha256_of(path)
    if actual != entry.sha256:
        raise HashMismatchError(
            f"{model_name}.{entry.tag}: sha256 of {path} is {actual}, but the entry pins {entry.sha256}; "
            f"the file is corrupt or was replaced. Delete it (or `huggingface-cli delete-cache`) and retry."
        )


def _package_file(entry: WeightEntry, model_name: str) -> Path:
    package, _, relative = entry.package_file.partition(":")
    try:
        path = Path(str(resources.files(package).joinpath(relative)))
    except ModuleNotFoundError as exc:
        raise WeightsUnavailableError(
            f"{model_name}.{entry.tag}: package {package!r} is not installed"
        ) from exc
    if not path.is_file():
        raise WeightsUnavailableError(
            f"{model_name}.{entry.tag}: {relative} is missing from the installed {package} package"
        )
    return path


def _fetch_hub(entry: WeightEntry, model_name: str) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    hub = entry.hub
    endpoint = os.environ.get("HF_ENDPOINT") or None  # read at call time, so tests and users can point it
    where = f"{hub.repo_id}@{hub.revision}/{hub.filename}"
    try:
        return Path(hf_hub_download(hub.repo_id, hub.filename, revision=hub.revision, endpoint=endpoint))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:
        raise WeightsUnavailableError(
            f"{model_name}.{entry.tag}: cannot fetch {where} from the Hub ({endpoint or 'huggingface.co'}) "
            f"and it is not in the local cache. Go online, or pass weights=PATH to a local file "
            f"(official checkpoints are converted on the fly), or load with pretrained=False. ({exc})"
        ) from exc
    except HfHubHTTPError as exc:
        raise WeightsUnavailableError(
            f"{model_name}.{entry.tag}: the Hub refused {where}: {exc}. Pass weights=PATH to use a local file."
        ) from exc
