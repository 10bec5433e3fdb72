"""``attnzoo publish``: upload a release folder to the Hub and print the weight entry that pins it."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnzoo.errors import ZooError
from attnzoo.specs import HubFile, WeightEntry

from .convert import RELEASE_FILES, WEIGHTS_FILE, read_release

__all__ = ["PublishResult", "publish", "weight_entry_code"]

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
PENDING_COMMIT = "<commit id printed by attnzoo publish>"


@dataclass
class PublishResult:
    """What ``publish`` did (or, with ``dry_run``, would do)."""

    repo_id: str
    branch: str
    commit: str | None
    sha256: str
    files: list[tuple[str, int]]
    entry: WeightEntry
    entry_code: str
    dry_run: bool


def _literal(value: Any, indent: str) -> str:
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        inner = indent + "    "
        items = "".join(f"{inner}{key!r}: {_literal(item, inner)},\n" for key, item in value.items())
        return "{\n" + items + indent + "}"
    return repr(value)


def weight_entry_code(entry: WeightEntry) -> str:
    """Python source of ``entry``, ready to paste into a plugin's registry (``eval`` gives it back)."""
    hub = entry.hub
    lines = [
        "WeightEntry(",
        f"    tag={entry.tag!r},",
        f"    hub=HubFile(repo_id={hub.repo_id!r}, filename={hub.filename!r}, revision={hub.revision!r}),",
        f"    sha256={entry.sha256!r},",
        f"    license={entry.license!r},",
        f"    origin={entry.origin!r},",
    ]
    if entry.metrics:
        lines.append(f"    metrics={_literal(dict(entry.metrics), '    ')},")
    if entry.config:
        lines.append(f"    config={_literal(dict(entry.config), '    ')},")
    if entry.notes:
        lines.append(f"    notes={entry.notes!r},")
    lines.append(")")
    return "\n".join(lines)


def _entry(record: Mapping[str, Any], repo_id: str, revision: str, sha256: str, tag: str) -> WeightEntry:
    source = record.get("source", {})
    notes = f"converted from {source.get('file')} (sha256 {source.get('sha256')}) with attnzoo-tools"
    return WeightEntry(
        tag=tag,
        license=record["license"],
        origin=record["origin"],
        sha256=sha256,
        hub=HubFile(repo_id=repo_id, filename=WEIGHTS_FILE, revision=revision),
        metrics=dict(record.get("metrics") or {}),
        config=dict(record.get("config_overrides") or {}),
        notes=notes,
    )


def publish(
    out_dir: str | Path,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    dry_run: bool = False,
    tag: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
) -> PublishResult:
    """Upload the release folder written by ``attnzoo convert`` to ``repo_id`` on the Hub.

    Creates the repo if needed (``private`` applies only then) and the branch ``revision``
    if it is not ``main``; uploads the four release files in one commit; returns the
    commit id and the ``WeightEntry`` pinning ``model.safetensors`` to it. ``dry_run``
    checks the folder and returns the plan without contacting the Hub. The endpoint is
    ``HF_ENDPOINT`` (default huggingface.co); the token is ``token`` or the usual
    huggingface_hub login.
    """
    out_dir = Path(out_dir)
    if not _REPO_ID.match(repo_id):
        raise ZooError(f"repo id {repo_id!r} must look like ORG/NAME (letters, digits, '.', '_', '-')")
    record = read_release(out_dir)
    missing = [name for name in RELEASE_FILES if not (out_dir / name).is_file()]
    if missing:
        raise ZooError(f"{out_dir} lacks {missing}; write the folder with `attnzoo convert`")
    tag = tag or record.get("tag")
    if not tag:
        raise ZooError(f"{record.get('model')} has no weight tag yet; pass --tag (e.g. in1k)")
    sha256 = record["weights"]["sha256"]
    branch = revision or "main"
    files = [(name, (out_dir / name).stat().st_size) for name in RELEASE_FILES]

    if dry_run:
        entry = _entry(record, repo_id, PENDING_COMMIT, sha256, tag)
        return PublishResult(repo_id, branch, None, sha256, files, entry, weight_entry_code(entry), True)

    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
    message = commit_message or f"{record['model']}.{tag}: weights converted from {record['source']['file']}"
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        if branch != "main":
            api.create_branch(repo_id, branch=branch, repo_type="model", exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=out_dir,
            repo_type="model",
            revision=branch,
            commit_message=message,
            allow_patterns=list(RELEASE_FILES),
        )
    except (HfHubHTTPError, ValueError) as exc:  # ValueError: the Hub rejected README.md's metadata
        raise ZooError(f"the Hub refused the upload to {repo_id}@{branch}: {exc}") from exc
    entry = _entry(record, repo_id, commit.oid, sha256, tag)
    return PublishResult(repo_id, branch, commit.oid, sha256, files, entry, weight_entry_code(entry), False)
