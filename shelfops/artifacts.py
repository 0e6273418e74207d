"""Stage outputs, written atomically, with ``manifest.json`` written last.

A stage writes into a hidden sibling folder; only when every file, the manifest last, is
in place is the folder renamed to its final name. A reader that finds ``manifest.json``
therefore finds a complete artifact, and a crashed stage leaves no half-written output.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from shelfops import __version__
from shelfops.errors import ArtifactError, ArtifactNotFound, IntegrityError
from shelfops.redact import redacted

MANIFEST = "manifest.json"


class InputRef(BaseModel):
    path: str
    sha256: str
    bytes: int


class Manifest(BaseModel):
    stage: str
    inputs: list[InputRef] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)
    code_version: str = ""
    created_at: str = ""
    counts: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)  # relative path -> sha256
    notes: list[str] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict)


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def input_ref(path: str | os.PathLike[str]) -> InputRef:
    p = Path(path)
    return InputRef(path=str(p.resolve()), sha256=file_sha256(p), bytes=p.stat().st_size)


@lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus the git commit of the source tree, when there is one."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True,
            text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", str(here)],
            cwd=here, capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        return f"{__version__}+g{sha}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return __version__


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _hash_outputs(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            out[p.relative_to(root).as_posix()] = file_sha256(p)
    return out


class StageWriter:
    """Handle given to a stage while it writes: ``path(name)`` and the manifest fields."""

    def __init__(self, tmp: Path, manifest: Manifest) -> None:
        self.dir = tmp
        self.manifest = manifest

    def path(self, name: str) -> Path:
        p = self.dir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_json(self, name: str, obj: Any) -> Path:
        p = self.path(name)
        p.write_text(json.dumps(obj, indent=2, default=str, sort_keys=False))
        return p


@contextmanager
def stage_output(
    out: str | os.PathLike[str],
    stage: str,
    *,
    config: Mapping[str, Any] | None = None,
    inputs: list[InputRef] | None = None,
    overwrite: bool = True,
) -> Iterator[StageWriter]:
    """Write a stage's folder atomically; ``manifest.json`` is written last.

    On error nothing appears at ``out`` (a previous artifact there stays untouched).
    """
    final = Path(out)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not overwrite:
        raise ArtifactError(f"{final} already exists", path=str(final))
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    manifest = Manifest(
        stage=stage, inputs=inputs or [], config=redacted(dict(config or {})),
        code_version=code_version(), created_at=utc_now(),
    )
    writer = StageWriter(tmp, manifest)
    try:
        yield writer
        manifest.outputs = _hash_outputs(tmp)
        (tmp / MANIFEST).write_text(manifest.model_dump_json(indent=2))
        if final.exists():
            old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, Exception) and disk_full(e):
            raise ArtifactError(f"no space left on the device of {final}; nothing was written there (any "
                                "previous artifact is untouched): free space or write elsewhere (--out)",
                                path=str(final), disk_full=True) from e
        raise


def disk_full(e: BaseException | None) -> bool:
    """Whether ``e`` (or what caused it) is a full disk or quota: an OSError with ENOSPC/EDQUOT,
    or a library's wrapper of one (safetensors says "No space left on device (os error 28)")."""
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(e) or "Disk quota exceeded" in str(e):
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def leftovers(out: str | os.PathLike[str]) -> list[Path]:
    """Half-written copies a killed writer left beside ``out`` (``.NAME.tmp-*``, ``.NAME.old-*``):
    never read by anything, safe to delete once no writer runs."""
    final = Path(out)
    return sorted(p for pattern in (f".{final.name}.tmp-*", f".{final.name}.old-*")
                  for p in final.parent.glob(pattern))


def read_manifest(artifact_dir: str | os.PathLike[str]) -> Manifest:
    p = Path(artifact_dir) / MANIFEST
    if not p.is_file():
        raise ArtifactNotFound(
            f"{artifact_dir} is not a shelfops artifact (no {MANIFEST})", path=str(artifact_dir)
        )
    return Manifest.model_validate_json(p.read_text())


def verify_outputs(artifact_dir: str | os.PathLike[str]) -> Manifest:
    """Check every file against the checksums in the manifest; raise on any mismatch."""
    root = Path(artifact_dir)
    m = read_manifest(root)
    bad = []
    for rel, digest in m.outputs.items():
        f = root / rel
        if not f.is_file():
            bad.append(f"{rel}: missing")
        elif file_sha256(f) != digest:
            bad.append(f"{rel}: checksum mismatch")
    if bad:
        raise IntegrityError(f"{root}: " + "; ".join(bad), path=str(root), files=bad)
    return m
