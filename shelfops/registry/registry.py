"""The model registry: immutable MLflow model versions with lineage, audited alias moves.

* ``register`` logs a stage folder (trained or optimized model, manifest written last) as
  the artifacts of an MLflow run and creates a model version from them. The version carries
  its lineage as tags: stage, task, code version, the sha256 of its manifest and of every
  input manifest (dataset, source model), and its headline metrics; the run holds the
  config and all numeric metrics. Nothing is ever overwritten: a new folder is a new version.
* ``load`` downloads a version and verifies it: the manifest's sha256 must equal the one
  recorded at registration and every file must match the manifest's checksums, or
  ``IntegrityError`` is raised and the caller keeps whatever it was serving.
* Aliases (candidate, shadow, canary, production, previous) move through ``promote`` and
  ``rollback`` only; each move is a compare-and-set in the operational store with its audit
  row (who, when, why, evidence), mirrored to the MLflow alias inside the same transaction.
  ``canary`` and ``production`` need a passing gate report unless forced with a reason.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from shelfops import __version__
from shelfops.artifacts import file_sha256, verify_outputs
from shelfops.errors import ArtifactNotFound, IntegrityError, PromotionRefused, RegistryError
from shelfops.registry.consistency import Problem, problems
from shelfops.registry.ops_store import Move, OpsStore

ALIASES = ("candidate", "shadow", "canary", "production", "previous")
GATED = ("canary", "production")
EXPERIMENT = "shelfops"
MODEL_ARTIFACT = "shelfops"  # the stage folder inside a version's MLflow model: artifacts/shelfops


def stage_folder(model_dir: Path) -> Path:
    """The stage folder inside a downloaded version: the ``shelfops`` artifact of its MLflow
    model (path as its MLmodel file records it), or the download itself for a version
    registered before versions were MLflow models."""
    model_dir = Path(model_dir)
    if not (model_dir / "MLmodel").exists():
        return model_dir
    flavour = (yaml.safe_load((model_dir / "MLmodel").read_text()) or {}).get("flavors", {}) \
        .get("python_function", {})
    inner = (flavour.get("artifacts") or {}).get(MODEL_ARTIFACT, {}).get("path")
    if not inner or not (model_dir / inner).is_dir():
        raise IntegrityError(f"{model_dir}/MLmodel names no {MODEL_ARTIFACT!r} artifact folder")
    return model_dir / inner


def default_home() -> Path:
    return Path(os.environ.get("SHELFOPS_HOME") or Path.home() / ".shelfops")


@dataclass
class VersionInfo:
    name: str
    version: str
    stage: str
    task: str
    created_at: str
    aliases: list[str]
    gate: str  # passed | failed | none
    tags: dict[str, str]
    source: str
    run_id: str


def _flat_numbers(d: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flat_numbers(v, f"{prefix}{k}." if prefix or k else ""))
    elif isinstance(d, (int, float)) and not isinstance(d, bool) and d == d:
        out[prefix.rstrip(".")] = float(d)
    return out


def _mlflow_key(k: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in k)[:250]


class Registry:
    def __init__(self, tracking_uri: str | None = None, *, home: Path | None = None,
                 ops_url: str | None = None, artifact_root: str | None = None) -> None:
        from mlflow import MlflowClient

        self.home = Path(home or default_home()).expanduser().resolve()
        self.home.mkdir(parents=True, exist_ok=True)
        self.tracking_uri = tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"
        self.artifact_root = artifact_root or (self.home / "mlartifacts").as_uri()
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        self.ops = OpsStore(ops_url or f"sqlite:///{self.home / 'ops.db'}")

    # ------------------------------------------------------------------ register / read
    def _experiment(self) -> str:
        exp = self.client.get_experiment_by_name(EXPERIMENT)
        if exp is not None:
            return exp.experiment_id
        try:
            remote = self.tracking_uri.startswith(("http://", "https://"))
            return self.client.create_experiment(EXPERIMENT, artifact_location=None if remote
                                                 else self.artifact_root)
        except Exception:  # created concurrently by another process
            return self.client.get_experiment_by_name(EXPERIMENT).experiment_id

    def register(self, folder: Path, name: str, *, description: str = "") -> VersionInfo:
        """Register a stage folder as a new immutable version of ``name``."""
        from mlflow.entities import Metric, Param

        folder = Path(folder)
        m = verify_outputs(folder)  # never register something that is already damaged
        if m.stage not in ("train", "optimize"):
            raise RegistryError(f"{folder} is a {m.stage!r} artifact; only trained or optimized "
                                "models are registered")
        task = str(m.extra.get("task", ""))
        manifest_sha = file_sha256(folder / "manifest.json")
        lineage = [{"path": i.path, "sha256": i.sha256} for i in m.inputs]
        tags = {"shelfops.stage": m.stage, "shelfops.task": task,
                "shelfops.code_version": m.code_version, "shelfops.manifest_sha256": manifest_sha,
                "shelfops.created_at": m.created_at, "shelfops.lineage": json.dumps(lineage),
                "shelfops.source_folder": str(folder.resolve()), "shelfops.gate": "none"}
        if m.stage == "optimize":
            tags["shelfops.variant"] = str(m.metrics.get("chosen"))
            tags["shelfops.source_model"] = str(m.extra.get("source_model", ""))
        else:
            tags["shelfops.dataset"] = str(m.extra.get("data", ""))
        run = self.client.create_run(self._experiment(), tags={**tags, "mlflow.runName": f"{name}-{m.stage}"})
        rid = run.info.run_id
        nums = _flat_numbers(m.metrics)
        now_ms = int(time.time() * 1000)  # a real timestamp: the MLflow UI plots metrics by it
        metrics = [Metric(_mlflow_key(k), v, now_ms, 0) for k, v in list(nums.items())[:900]]
        params = [Param("stage", m.stage), Param("task", task)]
        for i in range(0, len(metrics), 500):
            self.client.log_batch(rid, metrics=metrics[i:i + 500])
        self.client.log_batch(rid, params=params)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "config.json").write_text(json.dumps(m.config, indent=2, default=str))
            self.client.log_artifacts(rid, tmp, artifact_path="lineage")
        with tempfile.TemporaryDirectory() as tmp:
            # the folder goes in as an MLflow model (python_function flavour, logged from code):
            # mlflow.pyfunc and pandas cost 1.2 s to import, paid here and not by every CLI call
            from shelfops.registry import pyfunc

            model = pyfunc.save(folder, task, Path(tmp) / "model", requirement=f"shelfops=={__version__}")
            self.client.log_artifacts(rid, str(model), artifact_path="model")
        self.client.set_terminated(rid)
        try:
            self.client.create_registered_model(name)
        except Exception:  # already registered (by us or concurrently)
            pass
        mv = self.client.create_model_version(name, source=f"{run.info.artifact_uri}/model", run_id=rid,
                                              tags=tags, description=description or None)
        return self.show(name, mv.version)

    def _mv(self, name: str, ref: str):
        ref = str(ref)
        try:
            if ref.isdigit():
                return self.client.get_model_version(name, ref)
            version, _ = self.ops.get(name, ref)
            if version is None:
                raise ArtifactNotFound(f"{name}@{ref}: alias not set", model=name, alias=ref)
            return self.client.get_model_version(name, version)
        except ArtifactNotFound:
            raise
        except Exception as e:
            raise ArtifactNotFound(f"{name} version/alias {ref!r} not found: {e}", model=name) from e

    def show(self, name: str, ref: str) -> VersionInfo:
        mv = self._mv(name, ref)
        aliases = [a for a, v in self.ops.aliases(name).items() if v == str(mv.version)]
        t = dict(mv.tags)
        return VersionInfo(name, str(mv.version), t.get("shelfops.stage", ""), t.get("shelfops.task", ""),
                           t.get("shelfops.created_at", ""), sorted(aliases), t.get("shelfops.gate", "none"),
                           t, mv.source, mv.run_id)

    def versions(self, name: str) -> list[VersionInfo]:
        mvs = self.client.search_model_versions(f"name='{name}'")
        return sorted((self.show(name, mv.version) for mv in mvs), key=lambda v: int(v.version))

    def find_version(self, name: str, folder: Path) -> str | None:
        """The registered version of ``name`` whose manifest is byte-identical to ``folder``'s."""
        sha = file_sha256(Path(folder) / "manifest.json")
        try:
            mvs = self.client.search_model_versions(f"name='{name}'")
        except Exception:
            return None
        return next((str(mv.version) for mv in mvs if mv.tags.get("shelfops.manifest_sha256") == sha), None)

    def models(self) -> list[str]:
        return sorted(rm.name for rm in self.client.search_registered_models())

    def load(self, name: str, ref: str, dst: Path | None = None) -> Path:
        """Download a version and verify it byte for byte; returns the local folder."""
        mv = self._mv(name, ref)
        dst = Path(dst or self.home / "cache" / name / str(mv.version))
        if not (dst / "manifest.json").exists():
            import shutil

            import mlflow

            # download beside the cache entry, then move it in with one rename: two loaders of
            # the same version (the server's watcher and the autopilot, say) never see each
            # other's half-written folder, and the slower one keeps the faster one's copy
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=dst.parent))
            try:
                local = Path(mlflow.artifacts.download_artifacts(artifact_uri=mv.source, dst_path=str(tmp),
                                                                 tracking_uri=self.tracking_uri))
                if dst.exists() and not (dst / "manifest.json").exists():
                    shutil.rmtree(dst, ignore_errors=True)  # left by an interrupted copy
                try:
                    stage_folder(local).rename(dst)  # the stage folder inside the MLflow model
                except OSError:
                    if not (dst / "manifest.json").exists():
                        raise  # not a finished copy by another loader: a real failure
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        self.verify(name, str(mv.version), dst)
        return dst

    def gate_report(self, name: str, ref: str) -> Path | None:
        """The folder of the gate report stored with a version (gate.json, golden.json), or None."""
        mv = self._mv(name, ref)
        dst = self.home / "cache" / "gates" / name / str(mv.version)
        if not (dst / "gate.json").exists():
            try:
                got = Path(self.client.download_artifacts(mv.run_id, f"gate/v{mv.version}", str(dst.parent)))
            except Exception:  # no gate report stored
                return None
            if got != dst:
                if dst.exists():
                    import shutil

                    shutil.rmtree(dst)
                got.rename(dst)
        return dst if (dst / "gate.json").exists() else None

    def verify(self, name: str, version: str, folder: Path) -> None:
        mv = self.client.get_model_version(name, version)
        want = mv.tags.get("shelfops.manifest_sha256")
        got = file_sha256(Path(folder) / "manifest.json")
        if want != got:
            raise IntegrityError(f"{name} v{version}: manifest sha256 {got[:12]} differs from the one "
                                 f"recorded at registration ({str(want)[:12]}); refusing to load",
                                 model=name, version=version)
        verify_outputs(folder)

    # ------------------------------------------------------------------ gate evidence
    def attach_gate(self, name: str, version: str, report_dir: Path) -> None:
        """Store a gate report (gate.json + gate.html) with the version and tag its verdict."""
        rep = json.loads((Path(report_dir) / "gate.json").read_text())
        mv = self.client.get_model_version(name, version)
        self.client.log_artifacts(mv.run_id, str(report_dir), artifact_path=f"gate/v{version}")
        self.client.set_model_version_tag(name, version, "shelfops.gate",
                                          "passed" if rep.get("passed") else "failed")
        self.client.set_model_version_tag(name, version, "shelfops.gate_sha256",
                                          file_sha256(Path(report_dir) / "gate.json"))
        self.client.set_model_version_tag(name, version, "shelfops.gate_failed",
                                          json.dumps(rep.get("failed", [])))

    # ------------------------------------------------------------------ alias moves
    def promote(self, name: str, version: str, alias: str, *, reason: str, actor: str = "cli",
                force: bool = False, evidence: dict | None = None, action: str = "promote",
                with_move=None) -> Move:
        """Move ``alias`` to ``version`` (canary / production need a passing gate, or ``force``
        with a reason); ``with_move(connection)`` commits with it (see OpsStore.move)."""
        if alias not in ALIASES:
            raise RegistryError(f"alias must be one of {list(ALIASES)}, not {alias!r}")
        info = self.show(name, version)
        ev = {"gate": info.gate, "gate_failed": info.tags.get("shelfops.gate_failed"),
              "gate_sha256": info.tags.get("shelfops.gate_sha256"),
              "manifest_sha256": info.tags.get("shelfops.manifest_sha256"), **(evidence or {})}
        if alias in GATED and info.gate != "passed":
            if not force:
                raise PromotionRefused(f"{name} v{version} has no passing gate report (gate: {info.gate}); "
                                       f"{alias} refused. Run `shelfops gate`, or force with a written reason.",
                                       model=name, version=version, alias=alias)
            if not reason.strip():
                raise PromotionRefused("a forced promotion needs a written reason", model=name)
            action = "force"
        cur, rev = self.ops.get(name, alias)
        also = []
        if alias == "production" and cur is not None and cur != info.version:
            prev_rev = self.ops.get(name, "previous")[1]
            also.append(("previous", cur, prev_rev))

        def mirror() -> None:
            self.client.set_registered_model_alias(name, alias, info.version)
            if also:
                self.client.set_registered_model_alias(name, "previous", also[0][1])

        return self.ops.move(name, alias, info.version, expected_rev=rev, actor=actor, action=action,
                             reason=reason, evidence=ev, also=also, side_effect=mirror, with_move=with_move)

    def rollback(self, name: str, *, reason: str, actor: str = "cli", alias: str = "production",
                 evidence: dict | None = None) -> Move:
        """Point ``production`` back at ``previous`` (and ``previous`` at what was rolled back)."""
        cur, rev = self.ops.get(name, alias)
        prev, prev_rev = self.ops.get(name, "previous")
        if prev is None:
            raise PromotionRefused(f"{name}: no previous version to roll back to", model=name)

        def mirror() -> None:
            self.client.set_registered_model_alias(name, alias, prev)
            if cur is not None:
                self.client.set_registered_model_alias(name, "previous", cur)

        return self.ops.move(name, alias, prev, expected_rev=rev, actor=actor, action="rollback",
                             reason=reason or "rollback", evidence={"rolled_back": cur, **(evidence or {})},
                             also=[("previous", cur, prev_rev)] if cur is not None else None,
                             side_effect=mirror)

    def clear(self, name: str, alias: str, *, reason: str, actor: str = "cli",
              evidence: dict | None = None, with_move=None) -> Move:
        """Unset an alias (e.g. ``canary`` after a rolled-back canary), audited like any move."""
        cur, rev = self.ops.get(name, alias)
        if cur is None:
            raise PromotionRefused(f"{name}@{alias} is not set", model=name, alias=alias)

        def mirror() -> None:
            try:
                self.client.delete_registered_model_alias(name, alias)
            except Exception:  # already absent in MLflow: the operational store is the authority
                pass

        return self.ops.move(name, alias, None, expected_rev=rev, actor=actor, action="rollback",
                             reason=reason, evidence={"rolled_back": cur, **(evidence or {})},
                             side_effect=mirror, with_move=with_move)

    def aliases(self, name: str) -> dict[str, str]:
        return self.ops.aliases(name)

    # ------------------------------------------------------------------ consistency
    def check(self, name: str | None = None) -> list[Problem]:
        """Every disagreement between the operational store, its history and MLflow."""
        out: list[Problem] = []
        for model in [name] if name else sorted(set(self.models()) | set(self.ops.models())):
            try:
                rm = self.client.get_registered_model(model)
                mirror = {a: str(v) for a, v in (rm.aliases or {}).items()}
                versions = {str(v.version): dict(v.tags or {})
                            for v in self.client.search_model_versions(f"name='{model}'")}
            except Exception:  # not in MLflow at all
                mirror, versions = {}, {}
            audit = [(m.alias, m.to_version) for m in self.ops.history(model, limit=1_000_000)]
            out += problems(model, self.ops.revisions(model), mirror, audit, versions)
        return out

    def repair(self, name: str | None = None) -> list[Problem]:
        """Point MLflow's aliases where the operational store says; the problems repaired."""
        fixed = [p for p in self.check(name) if p.repairable]
        for model in sorted({p.model for p in fixed}):
            store = self.ops.revisions(model)
            mirror = {a: str(v) for a, v in (self.client.get_registered_model(model).aliases or {}).items()}
            for alias in set(store) | set(mirror):
                want = store.get(alias, (None, 0))[0]
                if want is None and alias in mirror:
                    self.client.delete_registered_model_alias(model, alias)
                elif want is not None and mirror.get(alias) != want:
                    self.client.set_registered_model_alias(model, alias, want)
        return fixed

    def history(self, name: str | None = None) -> list[Move]:
        return self.ops.history(name)


def registry_from(cfg) -> Registry:
    """A Registry from the config's ``registry`` section. Unset there, the tracking URI is
    MLflow's own ``$MLFLOW_TRACKING_URI`` (as every MLflow tool reads it), the home
    ``$SHELFOPS_HOME``, the operational store ``$SHELFOPS_OPS_URL`` (a URL with a password
    belongs in a secret, not in a config file), else SQLite and files under ~/.shelfops."""
    home = Path(cfg.home).expanduser() if cfg.home else None
    return Registry(cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None, home=home,
                    ops_url=cfg.ops_url or os.environ.get("SHELFOPS_OPS_URL") or None)
