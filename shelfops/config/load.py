"""YAML loading with ``key=value`` overrides; every problem reported at once."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from shelfops.config.schema import ShelfopsConfig
from shelfops.errors import ConfigError
from shelfops.tables import TABLES

M = TypeVar("M", bound=BaseModel)

#: the configs shipped inside the package (the repo's ``configs/`` links here), so that an
#: installed shelfops finds them: ``--config synthetic`` is ``PRESETS/synthetic.yaml``
PRESETS = Path(__file__).resolve().parent / "presets"


def config_file(path: str | os.PathLike[str]) -> Path:
    """``path`` itself, or where it does not exist and names a preset (``synthetic``,
    ``homedepot.yaml``, or the repo's spelling ``configs/synthetic.yaml`` from another folder),
    the preset shipped with the package."""
    p = Path(path)
    if p.exists():
        return p
    preset = PRESETS / (p.name if p.suffix in (".yaml", ".yml") else f"{p.name}.yaml")
    named = len(p.parts) == 1 or (len(p.parts) == 2 and p.parts[0] == "configs")
    return preset if named and preset.exists() else p


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.0.c=value`` -> (["a","b","0","c"], value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError([f"override {text!r}: expected key=value"])
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError([f"override {text!r}: empty key"])
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    problems: list[str] = []
    for text in overrides:
        try:
            path, value = parse_override(text)
        except ConfigError as e:
            problems.extend(e.problems)
            continue
        node: Any = data
        for i, part in enumerate(path[:-1]):
            nxt = path[i + 1]
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    problems.append(f"override {text!r}: no list index {part}")
                    break
                node = node[int(part)]
            else:
                if part not in node or node[part] is None:
                    node[part] = [] if nxt.isdigit() else {}
                node = node[part]
        else:
            last = path[-1]
            if isinstance(node, list):
                if last.isdigit() and int(last) < len(node):
                    node[int(last)] = value
                else:
                    problems.append(f"override {text!r}: no list index {last}")
            else:
                node[last] = value
    if problems:
        raise ConfigError(problems)
    return data


def format_validation_error(err: ValidationError) -> list[str]:
    out = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        out.append(f"{loc}: {msg}")
    return out


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError([f"{p}: file not found"], source=str(p))
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError([f"{p}: not valid YAML: {e}"], source=str(p)) from e
    if not isinstance(data, dict):
        raise ConfigError([f"{p}: top level must be a mapping"], source=str(p))
    return data


def _semantic_problems(cfg: ShelfopsConfig, base: Path) -> list[str]:
    """Checks pydantic cannot do alone: files exist, mappings name canonical columns."""

    problems = []
    for i, src in enumerate(cfg.data.sources):
        for j, p in enumerate(src.paths):
            if not resolve_path(p, base).exists():
                problems.append(f"data.sources.{i}.paths.{j}: {p} does not exist")
        if src.table:
            names = set(TABLES[src.table].names)
            for canon in src.columns:
                if canon not in names:
                    problems.append(
                        f"data.sources.{i}.columns.{canon}: not a column of {src.table} "
                        f"(expected one of {sorted(names)})"
                    )
        for canon in src.item_columns:
            if canon not in TABLES["items"].names:
                problems.append(f"data.sources.{i}.item_columns.{canon}: not an items column")
    return problems


def resolve_path(p: str, base: Path) -> Path:
    """Config paths are relative to the config file's folder, unless absolute or found as given."""
    q = Path(os.path.expandvars(os.path.expanduser(p)))
    if q.is_absolute() or q.exists():
        return q
    return Path(os.path.normpath(base / q))  # '..' read in the text, not through a linked folder


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Iterable[str] = (),
    *,
    data: dict[str, Any] | None = None,
    check_files: bool = True,
) -> ShelfopsConfig:
    """Load, override and validate; raise one ConfigError listing every problem. ``path`` may
    name a preset shipped with the package (``synthetic``)."""
    path = config_file(path) if path is not None else None
    raw = read_yaml(path) if path is not None else dict(data or {})
    raw = apply_overrides(raw, overrides)
    source = str(path) if path is not None else None
    try:
        cfg = ShelfopsConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e), source=source) from None
    # the folder the file was named in (configs/ is a link into the package: not resolved)
    base = Path(os.path.abspath(path)).parent if path is not None else Path.cwd()
    problems = _semantic_problems(cfg, base) if check_files else []
    if problems:
        raise ConfigError(problems, source=source)
    # resolve source paths now so later stages need no base folder
    for src in cfg.data.sources:
        src.paths = [str(resolve_path(p, base)) for p in src.paths]
    return cfg
