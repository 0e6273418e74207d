"""When to retrain: a pure decision from the signals the autopilot observed.

Five triggers, each with its reason and numbers: drift (the drift report says so),
schedule (production has served for ``max_age_s``), online metric drop (production's
click-through in the current window fell by ``min_ctr_drop`` relative to the reference
window, with enough impressions in both, and the fall is significant: a one-sided
two-proportion test at ``ctr_alpha``; 106 against 90 clicks in 1,000 impressions each is a
15% fall that chance gives one time in ten), and new data (``min_new_events`` feedback events
arrived since the last training), and a failed scheduled consistency check. None fires while a rollout is running or within
``cooldown_s`` of the autopilot's last retraining (a release the gate refused included).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from shelfops.config.schema import TriggerConfig
from shelfops.eval.sequential import one_sided_p


@dataclass(frozen=True)
class TriggerPolicy:
    """The config's ``monitor.triggers`` (``TriggerConfig``, the one source of defaults): build
    it with :func:`trigger_policy_from`."""

    on_drift: bool
    max_age_s: float | None  # schedule: retrain a production model older than this
    min_ctr_drop: float | None  # relative drop of production's click-through
    min_impressions: int  # per window, before the click-through trigger may fire
    ctr_alpha: float  # the fall must also be significant (one-sided two-proportion test)
    min_new_events: int | None  # retrain once this many new feedback events arrived
    cooldown_s: float


def trigger_policy_from(c: TriggerConfig) -> TriggerPolicy:
    """The retraining triggers of a config's ``monitor.triggers`` section, field for field."""
    return TriggerPolicy(**c.model_dump())


@dataclass(frozen=True)
class Signals:
    now: float
    production_since: float | None = None  # when the serving version went live
    last_retrain_at: float | None = None  # the autopilot's last retraining; None: never
    drift: dict | None = None  # shelfops.monitor.drift.compare's report
    ctr_reference: float | None = None
    ctr_current: float | None = None
    impressions_reference: int = 0
    impressions_current: int = 0
    new_events: int = 0
    consistency_failed: bool = False  # the scheduled check: production no longer answers as gated
    rollout_running: bool = False


@dataclass
class TriggerDecision:
    retrain: bool
    reasons: list[str]
    evidence: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def decide(s: Signals, p: TriggerPolicy) -> TriggerDecision:
    ev = {"signals": {k: v for k, v in asdict(s).items() if k != "drift"}, "policy": asdict(p)}
    if s.drift is not None:
        ev["drifted_features"] = s.drift.get("drifted_features", [])
    if s.rollout_running:
        return TriggerDecision(False, ["a rollout is running"], ev)
    if s.last_retrain_at is not None and s.now - s.last_retrain_at < p.cooldown_s:
        return TriggerDecision(False, [f"cooling down: last retraining {s.now - s.last_retrain_at:.0f} s ago "
                                       f"(< {p.cooldown_s:.0f} s)"], ev)
    reasons = []
    if p.on_drift and s.drift and s.drift.get("drifted"):
        reasons.append("drift: " + ", ".join(s.drift.get("drifted_features", [])))
    age = s.now - s.production_since if s.production_since is not None else None
    if p.max_age_s is not None and age is not None and age >= p.max_age_s:
        reasons.append(f"schedule: production has served for {age:.0f} s (>= {p.max_age_s:.0f} s)")
    if p.min_ctr_drop is not None and s.ctr_reference and s.ctr_current is not None and \
            min(s.impressions_reference, s.impressions_current) >= p.min_impressions:
        drop = 1.0 - s.ctr_current / s.ctr_reference
        pval = one_sided_p(round(s.ctr_current * s.impressions_current), s.impressions_current,
                           round(s.ctr_reference * s.impressions_reference), s.impressions_reference)
        ev["ctr_drop"], ev["ctr_drop_p"] = drop, pval
        if drop >= p.min_ctr_drop and pval < p.ctr_alpha:
            reasons.append(f"online metric: click-through fell {drop:.0%} ({s.ctr_reference:.2%} -> "
                           f"{s.ctr_current:.2%}, p = {pval:.2g})")
    if s.consistency_failed:
        reasons.append("consistency: production no longer answers its golden set as it did when gated")
    if p.min_new_events is not None and s.new_events >= p.min_new_events:
        reasons.append(f"new data: {s.new_events:,} feedback events since the last training")
    return TriggerDecision(bool(reasons), reasons or ["no trigger fired"], ev)
