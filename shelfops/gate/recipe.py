"""Stage ④ gate, top to bottom:

    candidate folder (as it ships) [+ production folder] + the candidate's dataset
    -> golden queries (seeded sample of test queries, each with its judged pool + BM25 hits)
    -> outputs: candidate variant, its fp32 reference, production
    -> every check (checks.py, pure): quality non-regression, parity with fp32, determinism,
       ranking consistency vs production, behavioural probes, serving smoke in a fresh process
    -> gate.json + gate.html (all failures together, the most-changed queries for review)

Quality is compared as each version serves: a release answers from the catalogue it was
built on, so judged items outside production's snapshot (products launched since) rank
last for production, as its users would see them.

A retrained candidate (a different fp32 model from production's) is expected to move
rankings: its consistency check shows the churn per query and only blocks a wholesale
reshuffle; an exact variant of the production model (its fp32 ONNX export) must keep its
rankings. An approximate variant (int8, pruned, distilled: ``optimize.variants.is_approximate``)
is held to what the optimize stage chose it by: its NDCG within
``approximate_max_quality_drop`` of its own fp32 model (``quality_vs_reference``, paired
bootstrap) and its rankings within the churn bound, not to strict parity.
"""

from __future__ import annotations

import html
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from shelfops.artifacts import file_sha256, read_manifest
from shelfops.config.schema import GateConfig
from shelfops.errors import ConfigError
from shelfops.gate import checks as gate_checks
from shelfops.optimize.evalsets import golden_candidates, sample_queries
from shelfops.optimize.shipped import load_shipped
from shelfops.optimize.variants import is_approximate
from shelfops.train.classify import load_items
from shelfops.train.pairs import load_pairs
from shelfops.train.search import pool_metrics

Say = Callable[[str], None]


@dataclass
class GateSettings:
    """The config's ``gate:`` section (``GateConfig``, the one source of defaults): build it
    with :func:`gate_settings_from`."""

    golden: int
    depth: int
    max_queries: int
    min_queries: int  # the pilot sample that sizes the rest (_quality_sample)
    power: float | None  # None: score every sampled test query
    title_probes: int
    quality_margin: float
    parity_min_pass_rate: float
    consistency_min_pass_rate: float  # same fp32 model (an optimized variant of production)
    churn_min_pass_rate: float  # retrained model or approximate variant: only a wholesale reshuffle blocks
    approximate_max_quality_drop: float  # approximate variant vs its own fp32 model, relative
    determinism_atol_fp32: float
    determinism_atol_int8: float  # dynamic int8 quantises activations per batch
    n_boot: int
    seed: int


def gate_settings_from(c: GateConfig) -> GateSettings:
    """The gate's settings of a config's ``gate:`` section, field for field."""
    return GateSettings(**c.model_dump())


def _pair_scores(s, qs: list[str], ts: list[str], *, reference: bool = False,
                 batch_size: int | None = None) -> np.ndarray:
    """Relevance of (query, text) pairs: cross-encoder scores, or bi-encoder cosines."""
    if s.spec.task == "search":
        return s.run(qs, ts, reference=reference, batch_size=batch_size)
    uniq = list(dict.fromkeys(qs + ts))
    emb = s.run(uniq, None, reference=reference, batch_size=batch_size)
    pos = {t: i for i, t in enumerate(uniq)}
    return (emb[[pos[q] for q in qs]] * emb[[pos[t] for t in ts]]).sum(1)


def score_groups(s, queries: list[str], cands: list[list[str]], **kw) -> list[np.ndarray]:
    qs = [q for q, c in zip(queries, cands) for _ in c]
    flat = _pair_scores(s, qs, [t for c in cands for t in c], **kw)
    bounds = np.cumsum([0] + [len(c) for c in cands])
    return [flat[bounds[i]:bounds[i + 1]] for i in range(len(cands))]


def _per_query_ndcg(s, test: pl.DataFrame, lo: float, servable: np.ndarray | None = None, *,
                    reference: bool = False) -> np.ndarray:
    """Per-query NDCG@10 as the version serves (or its fp32 reference): pairs it cannot show
    (``servable`` False: the item is outside its catalogue) rank last."""

    sc = _pair_scores(s, test["query"].to_list(), test["text"].to_list(), reference=reference)
    if servable is not None:
        sc = np.where(servable, sc, sc.min() - 1e6)
    return pool_metrics(test, sc, lo=lo)["ndcg@10"]


def _reference_margin(ref_q: np.ndarray, st: GateSettings) -> float:
    return st.approximate_max_quality_drop * float(np.nanmean(ref_q))


def _quality_sample(cand, prod, test: pl.DataFrame, lo: float, st: GateSettings, approx: bool,
                    known: set[str] | None) -> tuple[dict[str, np.ndarray], dict]:
    """Per-query NDCG@10 of the candidate, of production as it serves (``known``: the items its
    catalogue holds) and, for an approximate variant, of its fp32 reference, on as many test
    queries as the decisions need. A pilot of ``min_queries`` (in a seeded random order) says how
    spread the per-query differences are; :func:`checks.queries_needed` turns that into the
    queries each non-inferiority test needs at ``power``, and the rest up to that many are scored.
    ``power`` None: every sampled test query."""
    queries = test["query"].unique(maintain_order=True).to_list()
    order = [queries[i] for i in np.random.default_rng(st.seed + 2).permutation(len(queries))]
    source = []

    def measure(qs: list[str]) -> dict[str, np.ndarray]:
        f = test.filter(pl.col("query").is_in(qs))
        # a candidate that ships its fp32 model as trained is that model: the train stage's scores are its own
        out = {"candidate": (_reference_ndcg(cand, f, lo)[0] if cand.variant is cand.reference
                             else _per_query_ndcg(cand, f, lo))}
        if prod is not None:
            servable = f["item_id"].is_in(list(known)).to_numpy() if known is not None else None
            out["production"] = _per_query_ndcg(prod, f, lo, None if servable is None or servable.all()
                                                else servable)
        if approx:
            out["reference"], src = _reference_ndcg(cand, f, lo)
            source.append(src)
        return out

    n = len(order) if st.power is None else min(st.min_queries, len(order))
    got, need = measure(order[:n]), n
    if st.power is not None and n < len(order):
        needs = ([gate_checks.queries_needed(got["candidate"] - got["production"], margin=st.quality_margin,
                                             power=st.power)] if prod is not None else [])
        if approx:
            needs.append(gate_checks.queries_needed(got["candidate"] - got["reference"],
                                                    margin=_reference_margin(got["reference"], st), power=st.power))
        need = max(needs, default=n)
        if need > n:
            more = measure(order[n:need])
            got = {k: np.concatenate([v, more[k]]) for k, v in got.items()}
    sizing = {"pilot": n, "needed": need, "used": min(max(n, need), len(order)), "available": len(order),
              "power": st.power, **({"reference_scores": source[-1]} if source else {})}
    return got, sizing


def _reference_ndcg(s, test: pl.DataFrame, lo: float) -> tuple[np.ndarray, str]:
    """Per-query NDCG@10 of the candidate's fp32 model: from the scores the train stage stored
    for every test pair (``test_scores.parquet``, checksummed with the folder: the same weights
    scored them) when they cover these pairs, else scored now. The gate still runs the model
    itself on the golden set, the probes and in a fresh process."""

    stored = s.folder / "test_scores.parquet"
    if stored.exists():
        sc = pl.read_parquet(stored, columns=["query", "item_id", "model"]).unique(["query", "item_id"])
        got = (test.with_row_index("_row").join(sc, on=["query", "item_id"], how="left")
               .sort("_row")["model"])
        if len(got) == len(test) and got.null_count() == 0:
            return pool_metrics(test, got.to_numpy().astype(np.float64), lo=lo)["ndcg@10"], \
                "stored by the train stage (test_scores.parquet)"
    return _per_query_ndcg(s, test, lo, reference=True), "scored now"


def catalogue_of(folder: Path) -> set[str] | None:
    """Item ids of the data snapshot a release was built on (what it can serve), if on this machine."""
    data = read_manifest(folder).extra.get("data")
    path = Path(data) / "items.parquet" if data else None
    return set(pl.read_parquet(path, columns=["item_id"])["item_id"].to_list()) if path and path.exists() \
        else None


def _serves_unbatched(s) -> bool:
    """An optimized variant tuned to batch 1 (the optimize stage does this for one whose outputs
    depend on padding) is served one input per model call, so batching cannot change its answers."""
    return s.variant is not s.reference and int(s.serving.get("max_batch", 32)) == 1


def _determinism(s, a: list[str], b: list[str] | None, st: GateSettings) -> gate_checks.GateResult:
    """Repeat, batch sizes 1/8/32 and max-length padding, as the variant serves: one tuned to
    batch 1 is checked on repeats only, since it never shares or pads a batch."""
    atol = st.determinism_atol_int8 if s.variant.precision == "int8" else st.determinism_atol_fp32
    unbatched = _serves_unbatched(s)
    first = s.run(a, b)
    return gate_checks.determinism(first, s.run(a, b), {bs: s.run(a, b, batch_size=bs)
                                                        for bs in ((1,) if unbatched else (1, 8, 32))},
                                   None if unbatched else _padded_outputs(s, a, b, 32), atol=atol)


def _padded_outputs(s, a: list[str], b: list[str] | None, bs: int) -> np.ndarray:
    """Outputs with every batch padded to the model's maximum length (padding invariance)."""
    out = []
    for i in range(0, len(a), bs):
        args = (a[i:i + bs], b[i:i + bs]) if b is not None else (a[i:i + bs],)
        enc = dict(s.tok(*[list(x) for x in args], truncation=True, max_length=s.spec.max_length,
                         padding="max_length", return_tensors="pt"))
        if "token_type_ids" not in enc:
            import torch

            enc["token_type_ids"] = torch.zeros_like(enc["input_ids"])
        out.append(s.variant(enc))
    return np.concatenate(out)


def serving_smoke(folder: Path, probe: tuple[str, str | None]) -> gate_checks.GateResult:
    """Load the artifact in a fresh Python process (as a server would) and score one input."""
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "shelfops.gate.smoke", str(folder), probe[0]] + ([probe[1]] if probe[1] else [])
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    secs = time.perf_counter() - t0
    ok, out = p.returncode == 0, None
    if ok:
        try:
            out = json.loads(p.stdout.strip().splitlines()[-1])
            ok = bool(out.get("finite"))
        except (ValueError, IndexError):
            ok = False
    details = [] if ok else [f"the artifact did not load and answer in a fresh process "
                             f"(exit {p.returncode}): {p.stderr.strip()[-400:]}"]
    return gate_checks.GateResult("serving_smoke", ok, {"seconds": round(secs, 2), "answer": out,
                                                        "exit_code": p.returncode}, {"must_answer": True}, details)


def run_gate(candidate: Path, out: Path, *, production: Path | None = None, data_dir: Path | None = None,
             settings: GateSettings, say: Say = print) -> dict:
    st = settings
    candidate = Path(candidate)
    cm = read_manifest(candidate)
    data_dir = Path(data_dir or cm.extra.get("data") or "")
    if not (data_dir / "manifest.json").exists():
        raise ConfigError([f"gate: dataset {data_dir} not found; pass --data DIR"])
    cand = load_shipped(candidate).offline()
    prod = load_shipped(production).offline() if production is not None else None
    task = cand.spec.task
    if prod is not None and prod.spec.task != task:
        raise ConfigError([f"gate: candidate is a {task} model, production a {prod.spec.task} model"])
    results: list[gate_checks.GateResult] = []
    rng = np.random.default_rng(st.seed)
    same_model = prod is not None and _fp32_sha(candidate) == _fp32_sha(production)
    # an approximate variant (int8, pruned, ...) changes the function a little: it proves its quality
    # against its own fp32 model and may reorder near-ties within the churn bound (see optimize.policy)
    approx = cand.variant is not cand.reference and is_approximate(cand.variant.name, cand.variant.precision)
    consistency_rate = st.consistency_min_pass_rate if same_model and not approx else st.churn_min_pass_rate
    parity_kw = (dict(min_overlap=gate_checks.CHURN_MIN_OVERLAP, min_tau=gate_checks.CHURN_MIN_TAU,
                      min_pass_rate=st.churn_min_pass_rate) if approx
                 else dict(min_pass_rate=st.parity_min_pass_rate))
    info: dict = {"candidate": str(candidate.resolve()), "variant": cand.name, "task": task,
                  "approximate_variant": approx,
                  "production": str(Path(production).resolve()) if production else None,
                  "production_variant": prod.name if prod else None, "same_fp32_model": same_model,
                  "data": str(data_dir.resolve())}
    say(f"gate: {task} candidate {candidate} ({cand.name})"
        + (f" against {production} ({prod.name})" if prod else " (no production version yet)"))

    golden = None
    if task in ("search", "retrieval"):
        data = load_pairs(data_dir, augmented=False)
        lo = cand.spec.extra.get("grade_min", data.grade_min)
        test = data.test.filter(pl.col("query").is_in(sample_queries(data.test, st.max_queries, st.seed)))
        gq = sample_queries(test, st.golden, st.seed + 1)
        cands = golden_candidates(gq, test, data.items, st.depth)
        info.update(golden_queries=len(gq), test_queries=test["query"].n_unique())
        c_groups = score_groups(cand, gq, cands)
        golden = {"task": task, "queries": gq, "candidates": cands, "scores": [g.tolist() for g in c_groups]}
        known = catalogue_of(production) if prod is not None else None
        outside = int((~test["item_id"].is_in(list(known))).sum()) if known is not None else 0
        if outside:
            info["test_pairs_outside_production_catalogue"] = outside
        q, sizing = _quality_sample(cand, prod, test, lo, st, approx, known)
        info["candidate_ndcg@10"] = float(np.nanmean(q["candidate"]))
        info["quality_sample"] = sizing
        if prod is not None:  # 1. quality (each as it serves: on its own catalogue), 4. ranking consistency
            results.append(gate_checks.quality_non_regression(q["candidate"], q["production"],
                                                              margin=st.quality_margin, n_boot=st.n_boot,
                                                              metric="ndcg@10"))
            p_groups = score_groups(prod, gq, cands)
            results.append(gate_checks.ranking_consistency(gq, p_groups, c_groups,
                                                           min_pass_rate=consistency_rate))
        if cand.variant is not cand.reference:  # 2. parity with its own fp32 reference
            r_groups = score_groups(cand, gq, cands, reference=True)
            results.append(gate_checks.parity_with_reference(r_groups, c_groups, **parity_kw))
        if approx:
            results.append(gate_checks.quality_non_regression(
                q["candidate"], q["reference"], margin=_reference_margin(q["reference"], st),
                n_boot=st.n_boot, metric="ndcg@10", name="quality_vs_reference", against="reference"))
        # 3. determinism on a slice of the golden inputs
        qs = [q for q, c in zip(gq, cands) for _ in c][:96]
        ts = [t for c in cands for t in c][:96]
        a, b = (qs, ts) if task == "search" else (qs + ts, None)
        results.append(_determinism(cand, a, b, st))
        # 5. behavioural probes
        upper = score_groups(cand, [q.upper() for q in gq], cands)
        spaced = score_groups(cand, ["  " + "  ".join(q.split()) + " " for q in gq], cands)
        results.append(gate_checks.case_whitespace_invariance(c_groups + c_groups, upper + spaced))
        typos = [gate_checks.typo(q, rng) for q in gq]
        results.append(gate_checks.typo_robustness(c_groups, score_groups(cand, typos, cands)))
        titles = data.items.filter(pl.col("title").is_not_null()).sample(
            min(st.title_probes, len(data.items)), seed=st.seed)
        t_q = titles["title"].to_list()
        t_c = golden_candidates(t_q, test.head(0), data.items, st.depth)
        own = titles["text"].to_list()
        t_c = [list(dict.fromkeys([o] + c))[: st.depth] for o, c in zip(own, t_c)]
        ranks = [int(np.where(np.argsort(-g, kind="stable") == 0)[0][0]) for g in score_groups(cand, t_q, t_c)]
        results.append(gate_checks.exact_title_top_k(ranks))
        probe = (gq[0], cands[0][0] if task == "search" else None)
    elif task == "classify":
        sp = load_items(data_dir, level=cand.spec.extra.get("level"), min_class_size=1, seed=13)
        test = sp["test"].head(st.max_queries)
        texts, y = test["text"].to_list(), test["label"].to_list()
        lab = cand.spec.labels
        c_out = cand.run(texts)
        correct = np.array([lab[i] == t for i, t in zip(c_out.argmax(1), y)], float)
        info["candidate_accuracy"] = float(correct.mean())
        g = min(st.golden, len(texts))
        if prod is not None:
            p_out = prod.run(texts)
            p_correct = np.array([prod.spec.labels[i] == t for i, t in zip(p_out.argmax(1), y)], float)
            results.append(gate_checks.quality_non_regression(correct, p_correct, margin=st.quality_margin,
                                                              n_boot=st.n_boot, metric="accuracy"))
            if prod.spec.labels == lab:
                results.append(gate_checks.ranking_consistency(test["item_id"].cast(pl.Utf8).to_list()[:g],
                                                               list(p_out[:g]), list(c_out[:g]), k=3,
                                                               min_pass_rate=consistency_rate))
        if cand.variant is not cand.reference:
            r_out = cand.run(texts[:g], reference=True)
            results.append(gate_checks.parity_with_reference(list(r_out), list(c_out[:g]), k=3, **parity_kw))
        if approx:
            r_all = cand.run(texts, reference=True)
            r_correct = np.array([lab[i] == t for i, t in zip(r_all.argmax(1), y)], float)
            results.append(gate_checks.quality_non_regression(
                correct, r_correct, margin=st.approximate_max_quality_drop * float(r_correct.mean()),
                n_boot=st.n_boot, metric="accuracy", name="quality_vs_reference", against="reference"))
        results.append(_determinism(cand, texts[:96], None, st))
        base = c_out[:g].argmax(1)
        up = cand.run([t.upper() for t in texts[:g]]).argmax(1)
        ty = cand.run([gate_checks.typo(t, rng) for t in texts[:g]]).argmax(1)
        results.append(gate_checks.behavioural({"case_invariant_label": list(base == up),
                                                "typo_invariant_label": list(base == ty)}, min_pass_rate=0.9))
        probe = (texts[0], None)
    else:
        raise ConfigError([f"gate: task {task!r} is not gated yet (search, retrieval, classify are)"])
    results.append(serving_smoke(candidate, probe))

    report = {**gate_checks.summarize(results), **info,
              "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "candidate_manifest_sha256": file_sha256(candidate / "manifest.json")}
    report["consistency_pass_rate"] = next((r.numbers.get("pass_rate") for r in results
                                            if r.name == "parity_with_reference"), None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gate.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "gate.html").write_text(gate_html(report))
    if golden is not None:  # what the gated version answered: the scheduled consistency checks' reference
        (out / "golden.json").write_text(json.dumps(golden))
    for r in results:
        say(f"gate: {'[green]pass[/]' if r.passed else '[red]FAIL[/]'} {r.name}: "
            + ", ".join(f"{k}={_short(v)}" for k, v in r.numbers.items()
                        if not isinstance(v, (list, dict)))[:220]
            + ("" if r.passed else f"  <- {'; '.join(r.details)[:300]}"))
    return report


def _short(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _fp32_sha(folder: Path) -> str | None:
    m = read_manifest(folder)
    return m.outputs.get("model.safetensors")


def gate_html(rep: dict) -> str:
    """One self-contained page: verdict, every check with numbers, the most-changed queries."""
    esc = html.escape
    rows = []
    for r in rep["results"]:
        nums = ", ".join(f"{k}={_short(v)}" for k, v in r["numbers"].items() if not isinstance(v, (list, dict)))
        rows.append(f"<tr class={'pass' if r['passed'] else 'fail'}><td>{esc(r['name'])}</td>"
                    f"<td>{'pass' if r['passed'] else 'FAIL'}</td><td>{esc(nums)}</td>"
                    f"<td>{esc(json.dumps(r['thresholds']))}</td><td>{esc('; '.join(r['details']))}</td></tr>")
    moved = next((r["numbers"].get("most_changed") for r in rep["results"]
                  if r["name"] == "ranking_consistency"), None) or []
    moved_rows = "".join(f"<tr><td>{esc(str(m.get('name')))}</td><td>{_short(m.get('overlap'))}</td>"
                         f"<td>{_short(m.get('rbo'))}</td><td>{_short(m.get('tau'))}</td></tr>" for m in moved)
    verdict = "PASSED" if rep["passed"] else "FAILED: " + ", ".join(rep["failed"])
    return f"""<!doctype html><html><head><meta charset=utf-8><title>shelfops gate</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px}}
table{{border-collapse:collapse}}.pass td:nth-child(2){{color:#070}}.fail td:nth-child(2){{color:#b00;font-weight:bold}}</style>
</head><body><h1>Gate report: <span id=verdict>{esc(verdict)}</span></h1>
<p>candidate {esc(str(rep.get('candidate')))} ({esc(str(rep.get('variant')))}) against
{esc(str(rep.get('production') or 'no production version'))}</p>
<table><tr><th>check</th><th>result</th><th>numbers</th><th>thresholds</th><th>details</th></tr>
{''.join(rows)}</table>
<h2>Queries whose results changed most</h2>
<table><tr><th>query</th><th>top-10 overlap</th><th>RBO</th><th>Kendall tau</th></tr>{moved_rows}</table>
</body></html>"""
