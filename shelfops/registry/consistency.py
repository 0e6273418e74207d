"""Is the registry whole? The operational store is the authority on aliases (the server and the
controller read it); MLflow's aliases mirror it, and each alias move leaves one audit row. A
process killed mid-promotion can leave the store either before or after the move (one
transaction), but the mirror set inside it may already point ahead. :func:`problems` compares
the three, purely; ``shelfops registry verify`` prints them and ``--repair`` re-mirrors."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    model: str
    kind: str  # mirror | history | missing_version | incomplete_version
    message: str
    repairable: bool = False


def problems(model: str, store: dict[str, tuple[str | None, int]], mirror: dict[str, str],
             audit: list[tuple[str, str | None]], versions: dict[str, dict[str, str]]) -> list[Problem]:
    """``store``: alias -> (version, revision) in the operational store; ``mirror``: MLflow's
    alias -> version; ``audit``: (alias, to_version) of each recorded move, oldest first;
    ``versions``: MLflow version -> its tags."""
    out: list[Problem] = []
    for alias, (version, rev) in sorted(store.items()):
        moves = [to for a, to in audit if a == alias]
        if len(moves) != rev:
            out.append(Problem(model, "history", f"{model}@{alias} is at revision {rev} but the history "
                               f"holds {len(moves)} move(s) of it"))
        elif moves and moves[-1] != version:
            out.append(Problem(model, "history", f"{model}@{alias} is v{version} but its last recorded "
                               f"move went to v{moves[-1]}"))
        if version is not None and version not in versions:
            out.append(Problem(model, "missing_version", f"{model}@{alias} points at v{version}, which "
                               "MLflow does not have"))
        if mirror.get(alias) != version:
            out.append(Problem(model, "mirror", f"MLflow's {model}@{alias} is "
                               f"{'v' + mirror[alias] if alias in mirror else 'unset'}; the operational store "
                               f"says {'v' + version if version else 'unset'}", repairable=True))
    for alias in sorted(set(mirror) - set(store)):
        out.append(Problem(model, "mirror", f"MLflow's {model}@{alias} is v{mirror[alias]}; the operational "
                           "store never set it", repairable=True))
    for version, tags in sorted(versions.items(), key=lambda kv: int(kv[0])):
        if "shelfops.manifest_sha256" not in tags:
            out.append(Problem(model, "incomplete_version", f"{model} v{version} has no manifest checksum "
                               "(its registration was interrupted); it cannot be loaded"))
    return out
