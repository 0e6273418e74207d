"""Every config field reaches its runtime object (issue 18: the config is the one source of defaults).

Each section is built with every field set to a value other than its default (generated from the
pydantic model: numbers bumped within their bounds, booleans flipped, another Literal choice), its
builder runs, and each field's value must arrive in the runtime object: under the same name, or
through the explicit mapping below. The mapping must name every field of the section, so a new
config field without a runtime home fails here. (The serve: section: tests/unit/serve/test_serve_spec.py.)
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from shelfops.config.schema import (
    CatalogueSearchConfig,
    ClassifySchedule,
    ClassifyTrainConfig,
    CleaningConfig,
    DataConfig,
    DriftConfig,
    GateConfig,
    PrivacyConfig,
    RecommendSchedule,
    RecommendTrainConfig,
    RetrievalSchedule,
    RetrievalTrainConfig,
    RolloutConfig,
    ScheduleConfig,
    SearchSchedule,
    SearchTrainConfig,
    SyntheticConfig,
    TriggerConfig,
)
from shelfops.data.recipe import limits_from, rules_from
from shelfops.gate.recipe import GateSettings, gate_settings_from
from shelfops.monitor.drift import Thresholds, thresholds_from
from shelfops.monitor.rollout import Policy, policy_from
from shelfops.monitor.triggers import TriggerPolicy, trigger_policy_from
from shelfops.train.classify import ClassifySettings, classify_settings_from
from shelfops.train.loop import Schedule, schedule_from
from shelfops.train.precision import bf16_auto, cpu_flags, native_bf16, use_bf16
from shelfops.train.recommend import recommend_args
from shelfops.train.retrieval import RetrievalSettings, retrieval_settings_from
from shelfops.train.search import SearchSettings, search_settings_from

# ------------------------------------------------------------------ non-default values

#: fields whose values the generator cannot make up (lists, secrets): a valid non-default value
EXPLICIT: dict[tuple[type[BaseModel], str], Any] = {
    (RolloutConfig, "stages"): ["shadow", "interleave", 100],
    (SearchTrainConfig, "train_on"): ["labels"],
    (CatalogueSearchConfig, "retriever"): "models/bi-encoder",
    (CatalogueSearchConfig, "weights"): [0.0, 1.0],
    (CatalogueSearchConfig, "depths"): [10, 40],
    (CatalogueSearchConfig, "blends"): [0.5],
    (PrivacyConfig, "key"): SecretStr("a-key-of-sixteen-chars"),
}


def _valid(model: type[BaseModel], name: str, value: Any) -> bool:
    try:
        model(**{name: value})
    except ValidationError:
        return False
    return True


def _choices(annotation: Any) -> list[Any]:
    """Values of another kind than the default to try, from the field's type."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [c for a in args for c in _choices(a)]
    if typing.get_origin(annotation) is Literal:
        return list(args)
    if annotation is bool:
        return [True, False]
    if annotation is int:
        return [7, 1, 100, 2000]
    if annotation is float:
        return [0.5, 0.2, 7.0, 1e-3, 123.0]
    if annotation is str:
        return ["another"]
    return []


def _bumps(default: Any) -> list[Any]:
    if isinstance(default, bool) or default is None:
        return []
    if isinstance(default, int):
        return [default + 1, default - 1, default * 2]
    if isinstance(default, float):
        return [default * 1.5, default / 2, default + 0.5, default + 0.01, 0.5]
    if isinstance(default, datetime):
        return [default + timedelta(days=1)]
    if isinstance(default, str):
        return [default + "_OTHER"]
    return []


def non_default(model: type[BaseModel]) -> BaseModel:
    """``model`` with every field off its default (nested sections too), validated."""
    values: dict[str, Any] = {}
    for name, f in model.model_fields.items():
        default = f.get_default(call_default_factory=True)
        if (model, name) in EXPLICIT:
            values[name] = EXPLICIT[model, name]
        elif isinstance(default, BaseModel):
            values[name] = non_default(type(default))
        else:
            tries = [v for v in _bumps(default) + _choices(f.annotation) if v != default]
            values[name] = next((v for v in tries if _valid(model, name, v)), None)
            assert values[name] is not None, f"{model.__name__}.{name}: no valid non-default value found"
    out = model(**values)
    for name in model.model_fields:  # every field is off its default
        assert getattr(out, name) != model.model_fields[name].get_default(call_default_factory=True), name
    return out


# ------------------------------------------------------------------ sections and their homes

SAME = "same name"  # the runtime object has an attribute of that name holding the value


def _elsewhere(_why: str) -> None:
    """A field whose value another object gets (the reason names it); nothing to compare here."""
    return None


Check = str | Callable[[Any, Any], Any] | None


def _assert_reaches(c: BaseModel, runtime: Any, how: dict[str, Check]) -> None:
    fields = set(type(c).model_fields)
    assert set(how) == fields, (f"{type(c).__name__}: fields without a runtime home {sorted(fields - set(how))}, "
                                f"mapped but gone {sorted(set(how) - fields)}")
    for name, check in how.items():
        value = getattr(c, name)
        if check == SAME:
            got = runtime[name] if isinstance(runtime, dict) else getattr(runtime, name)
            assert (list(got) if isinstance(got, tuple) else got) == value, name
        elif callable(check):
            assert check(runtime, c), name


SCHEDULES = [ScheduleConfig, SearchSchedule, RetrievalSchedule, RecommendSchedule, ClassifySchedule]


@pytest.mark.parametrize("model", SCHEDULES, ids=lambda m: m.__name__)
def test_every_schedule_field_reaches_the_training_loop(model):
    c = non_default(model)
    s = schedule_from(c)
    _assert_reaches(c, s, {name: SAME for name in model.model_fields})
    assert {f.name for f in dataclasses.fields(Schedule)} == set(model.model_fields)  # and nothing else


def _same_fields(runtime_cls: type, model: type[BaseModel], elsewhere: dict[str, Check]) -> dict[str, Check]:
    """Same-named fields of the runtime dataclass, plus ``elsewhere`` for the rest."""
    names = {f.name for f in dataclasses.fields(runtime_cls)}
    return {**{n: SAME for n in model.model_fields if n in names}, **elsewhere}


CASES: dict[str, tuple[type[BaseModel], Callable[[Any], Any], Callable[[], dict[str, Check]]]] = {
    "train.search": (SearchTrainConfig, search_settings_from, lambda: _same_fields(SearchSettings, SearchTrainConfig, {
        "schedule": _elsewhere("schedule_from: test_every_schedule_field_reaches_the_training_loop"),
        # the catalogue's triples per batch make the training batches; the recipe reads its other
        # fields (mining, validation, the pipeline's grid) from the config itself
        "catalogue": lambda st, c: st.triples_per_batch == c.catalogue.triples_per_batch,
        "train_on": _elsewhere("the recipe: load_pairs(train_on=...)"),
        "augmented": _elsewhere("the recipe: load_pairs(augmented=...)"),
    })),
    "train.retrieval": (RetrievalTrainConfig, retrieval_settings_from, lambda: _same_fields(
        RetrievalSettings, RetrievalTrainConfig, {
            "schedule": _elsewhere("schedule_from"),
            "rerank_depth": _elsewhere("the recipe: the retrieve + re-rank measurement's depth"),
        })),
    "train.classify": (ClassifyTrainConfig, classify_settings_from, lambda: _same_fields(
        ClassifySettings, ClassifyTrainConfig, {"schedule": _elsewhere("schedule_from")})),
    "train.recommend": (RecommendTrainConfig, recommend_args, lambda: {
        **{n: SAME for n in RecommendTrainConfig.model_fields if n != "schedule"},
        "schedule": lambda args, c: args["schedule"] == schedule_from(c.schedule),
    }),
    "gate": (GateConfig, gate_settings_from, lambda: _same_fields(GateSettings, GateConfig, {})),
    "monitor.rollout": (RolloutConfig, policy_from, lambda: _same_fields(Policy, RolloutConfig, {})),
    "monitor.triggers": (TriggerConfig, trigger_policy_from, lambda: _same_fields(TriggerPolicy, TriggerConfig, {})),
    "monitor.drift": (DriftConfig, thresholds_from, lambda: _same_fields(Thresholds, DriftConfig, {
        "embeddings": _elsewhere("the autopilot: whether its windows carry query embeddings"),
    })),
}


@pytest.mark.parametrize("section", list(CASES))
def test_every_field_of_a_section_reaches_its_runtime_object(section):
    model, builder, how = CASES[section]
    c = non_default(model)
    _assert_reaches(c, builder(c), how())


def test_runtime_classes_carry_no_defaults_of_their_own():
    """A default on the runtime side would be a second copy of the config's: every field the
    config sets is required there."""
    for runtime_cls, model in ((Schedule, ScheduleConfig), (SearchSettings, SearchTrainConfig),
                               (RetrievalSettings, RetrievalTrainConfig), (ClassifySettings, ClassifyTrainConfig),
                               (GateSettings, GateConfig), (Policy, RolloutConfig),
                               (TriggerPolicy, TriggerConfig), (Thresholds, DriftConfig)):
        for f in dataclasses.fields(runtime_cls):
            if f.name in model.model_fields:
                assert f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING, (
                    f"{runtime_cls.__name__}.{f.name} has a default of its own")


def test_every_cleaning_and_privacy_field_reaches_the_ingest_rules():
    c = DataConfig(synthetic=SyntheticConfig(), cleaning=non_default(CleaningConfig),
                   privacy=non_default(PrivacyConfig))
    before = datetime.now(timezone.utc)
    runtime = (limits_from(c), rules_from(c))
    after = datetime.now(timezone.utc)
    limits, rules = runtime
    slack = timedelta(hours=c.cleaning.future_slack_hours)
    _assert_reaches(c.cleaning, limits, _same_fields(type(limits), CleaningConfig, {
        "strip_html": lambda _, cc: rules.strip_html == cc.strip_html,
        "earliest_timestamp": lambda _, cc: rules.earliest == cc.earliest_timestamp.replace(tzinfo=timezone.utc),
        "future_slack_hours": lambda _, cc: before + slack <= rules.latest <= after + slack,
    }))
    _assert_reaches(c.privacy, rules, {
        "mask_pii": SAME,
        "key": _elsewhere("data.recipe: the pseudonymisation key (resolve_key)"),
        "key_env": _elsewhere("data.recipe: the pseudonymisation key (resolve_key)"),
    })


def test_a_field_without_a_runtime_home_fails():
    """The coverage check itself: a mapping that misses a field is refused."""
    c = non_default(TriggerConfig)
    how = _same_fields(TriggerPolicy, TriggerConfig, {})
    how.pop("cooldown_s")
    with pytest.raises(AssertionError, match="without a runtime home.*cooldown_s"):
        _assert_reaches(c, trigger_policy_from(c), how)


# ------------------------------------------------------------------ bf16: auto


AVX2_ONLY = "fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma f16c"


@pytest.mark.parametrize(("device", "flags", "cuda", "native"), [
    ("cpu", AVX2_ONLY, False, False),  # torch emulates bf16 here: 0.6 against 29 GFLOP/s fp32 (issue 18)
    ("cpu", AVX2_ONLY + " avx512f avx512_vnni", False, False),
    ("cpu", AVX2_ONLY + " avx512f avx512_bf16", False, True),
    ("cpu", AVX2_ONLY + " amx_tile amx_bf16 amx_int8", False, True),
    ("cpu", "AVX512_BF16", False, True),
    ("cpu", "", False, False),  # no flags line: not Linux x86
    ("cuda", "", True, True),
    ("cuda", AVX2_ONLY + " avx512_bf16", False, False),  # the GPU's, not the CPU's
    ("mps", AVX2_ONLY + " avx512_bf16", False, False),
])
def test_bf16_auto_is_on_only_where_the_device_has_native_bf16(device, flags, cuda, native):
    assert native_bf16(device, cpu_flags=flags, cuda_bf16=cuda) is native


def test_cpu_flags_reads_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512_bf16\n"
                    "bugs\t\t: sysret_ss_attrs\n\nprocessor\t: 1\nflags\t\t: fpu avx2 avx512_bf16\n")
    assert cpu_flags(info) == "fpu avx2 avx512_bf16"
    assert cpu_flags(tmp_path / "absent") == ""


def test_use_bf16_on_off_and_auto_decided_once(monkeypatch):
    assert use_bf16("on", "cpu") and not use_bf16("off", "cpu") and not use_bf16("auto", "mps")
    with pytest.raises(ValueError, match="on, off or auto"):
        use_bf16("true", "cpu")
    bf16_auto.cache_clear()
    try:
        monkeypatch.setattr("shelfops.train.precision.cpu_flags", lambda: AVX2_ONLY + " avx512_bf16")
        assert use_bf16("auto", "cpu")
        monkeypatch.setattr("shelfops.train.precision.cpu_flags", lambda: AVX2_ONLY)
        assert use_bf16("auto", "cpu")  # decided once per process
        bf16_auto.cache_clear()
        assert not use_bf16("auto", "cpu")
    finally:
        bf16_auto.cache_clear()


def test_auto_is_the_default_and_no_preset_forces_bf16():
    from shelfops.config.load import load_config

    assert ScheduleConfig().bf16 == "auto"
    for preset in ("synthetic", "homedepot", "amazon-beauty", "diginetica"):
        t = load_config(preset, [], check_files=False).train
        assert {t.search.schedule.bf16, t.retrieval.schedule.bf16, t.recommend.schedule.bf16,
                t.classify.schedule.bf16} == {"auto"}, preset
