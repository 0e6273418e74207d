"""Next-item recommendation: SASRec on leave-one-out sequences, evaluated the S3-Rec way.

    dataset folder -> item vocabulary + sequences -> (text init) -> fit on training
    sequences, early stopping on validation NDCG@10 -> test metrics + PopRec baselines
    -> model folder (model.json, model.safetensors, items.parquet) -> live sessions

Protocol (S3-Rec / ICLRec code, which later papers copy):

* Training: each user's training sequence (all but the last two interactions), input
  ``s[:-1]``, targets ``s[1:]``, right-aligned in windows of ``max_len`` (a longer
  sequence gives several windows, the latest first). The same training data serves
  model selection and the final test.
* Validation (early stopping): history = the training sequence, target = the validation
  item. Test: history = training sequence + validation item.
* Full ranking over every item. As in the S3-Rec/ICLRec code
  (``rating_pred[train_matrix > 0] = 0`` with ``train_matrix`` = the items before the
  target), the items already in the user's history are masked, and so is padding;
  unlike that code the target itself is never masked (a repeat stays reachable; no
  Beauty test target repeats an earlier item, so there it makes no difference). The
  unmasked variant is reported too (``model_unmasked``).
* Sampled ranking for context: the target against 99 items the user never touched
  (``sample_negatives``, seed 0).
* Baselines in the same run: PopRec counted over training interactions only (the honest
  one) and, for reference, over all interactions (valid and test targets included,
  which is what the published PopRec row reproduces). Baselines are ranked with
  optimistic ties, the model with pessimistic ties.

Item index 0 is padding; item ``i >= 1`` is ``items[i - 1]`` of the vocabulary.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from shelfops.config.schema import RecommendTrainConfig
from shelfops.errors import DataError, ModelError
from shelfops.eval import metrics as eval_metrics
from shelfops.train.baselines import popularity_scorer, popularity_scores
from shelfops.train.checkpoint import load_model, save_model
from shelfops.train.encoder import TextEncoder, load_backbone, load_tokenizer, resolve_encoder
from shelfops.train.loop import Schedule, fit, schedule_from, seed_everything
from shelfops.train.sasrec import SASRec, init_from_vectors
from shelfops.train.search import embed_texts

KS = (5, 10, 20)


def recommend_args(c: RecommendTrainConfig) -> dict[str, Any]:
    """``train.recommend`` (``RecommendTrainConfig``, the one source of defaults) as the keyword
    arguments of :func:`train_recommend`, every field of it; the recipe and the Beauty bench
    both train through this."""
    return dict(hidden=c.hidden, layers=c.layers, heads=c.heads, dropout=c.dropout, max_len=c.max_len,
                batch_size=c.batch_size, loss=c.loss, negatives=c.negatives, init_from_text=c.init_from_text,
                eval_every_epochs=c.eval_every_epochs, schedule=schedule_from(c.schedule))


# ------------------------------------------------------------------------------------ data


@dataclass
class Sequences:
    items: list[str]  # vocabulary: index i + 1 <-> items[i]
    titles: list[str | None]
    train: list[np.ndarray]  # every user's training sequence (item indices), for training
    users: list[str]  # users with valid and test targets (rows below)
    seen: list[np.ndarray]  # their full training sequences
    valid_target: np.ndarray
    test_target: np.ndarray
    train_interactions: np.ndarray
    unknown: int = 0  # interactions whose item is not in a given vocabulary (dropped)

    @property
    def n_items(self) -> int:  # padding included
        return len(self.items) + 1

    def test_history(self) -> list[np.ndarray]:
        return [np.append(s, v) for s, v in zip(self.seen, self.valid_target)]

    def all_interactions(self) -> np.ndarray:
        return np.concatenate((self.train_interactions, self.valid_target, self.test_target))


def _read(path: Path, columns: list[str] | None = None) -> pl.DataFrame:
    if not path.exists():
        raise DataError(f"{path} not found: run `shelfops data ingest` with leave_one_out splits",
                        path=str(path))
    return pl.read_parquet(path, columns=columns)


def load_sequences(data_dir: Path, vocab: list[str] | None = None) -> Sequences:
    """Read a dataset folder's items and leave-one-out splits as item-index arrays.

    Without ``vocab`` the vocabulary is ``items.parquet`` (in its order) plus any item id
    seen only in the splits. With ``vocab`` (a trained model's), unknown items are dropped
    from histories and unknown targets become 0 (counted in ``unknown``).
    """
    d = Path(data_dir)
    items_df = _read(d / "items.parquet")
    splits = d / "splits"
    train = _read(splits / "sequences_train.parquet", ["user_id", "item_id", "position"])
    train = train.sort("user_id", "position")
    valid = _read(splits / "sequences_valid.parquet", ["user_id", "item_id"])
    test = _read(splits / "sequences_test.parquet", ["user_id", "item_id"])
    ev = valid.join(test, on="user_id", how="inner", suffix="_test").sort("user_id")
    ids = items_df["item_id"].cast(pl.String).to_list()
    titles_col = items_df["title"].to_list() if "title" in items_df.columns else [None] * len(ids)
    title_of = dict(zip(ids, titles_col))
    if vocab is None:
        known = set(ids)
        extra = sorted(
            (set(train["item_id"].to_list()) | set(ev["item_id"].to_list())
             | set(ev["item_id_test"].to_list())) - known
        )
        vocab = ids + extra
    index = {iid: i + 1 for i, iid in enumerate(vocab)}
    titles = [title_of.get(i) for i in vocab]
    titles = [t.strip() if isinstance(t, str) and t.strip() else None for t in titles]

    def idx(values: list[str]) -> np.ndarray:
        return np.fromiter((index.get(v, 0) for v in values), dtype=np.int64, count=len(values))

    grouped = train.group_by("user_id", maintain_order=True).agg("item_id")
    seq_of = {u: idx(s) for u, s in zip(grouped["user_id"].to_list(), grouped["item_id"].to_list())}
    unknown = sum(int((s == 0).sum()) for s in seq_of.values())
    seq_of = {u: s[s > 0] for u, s in seq_of.items()}
    users = ev["user_id"].to_list()
    valid_t, test_t = idx(ev["item_id"].to_list()), idx(ev["item_id_test"].to_list())
    unknown += int((valid_t == 0).sum() + (test_t == 0).sum())
    empty = np.zeros(0, dtype=np.int64)
    return Sequences(
        items=list(vocab), titles=titles, train=[s for s in seq_of.values() if len(s)],
        users=users, seen=[seq_of.get(u, empty) for u in users],
        valid_target=valid_t, test_target=test_t,
        train_interactions=np.concatenate(list(seq_of.values()) or [empty]), unknown=unknown,
    )


def right_aligned(seqs: list[np.ndarray], width: int) -> np.ndarray:
    """``[len(seqs) x width]`` int64, each row's last ``width`` items at the right, 0 before."""
    out = np.zeros((len(seqs), width), dtype=np.int64)
    for r, s in enumerate(seqs):
        s = s[-width:]
        if len(s):
            out[r, width - len(s):] = s
    return out


def training_windows(train: list[np.ndarray], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and next-item targets ``[windows x max_len]``: ``s[:-1]`` -> ``s[1:]``,
    cut into windows of ``max_len`` from the end (a sequence of 1 item gives none)."""
    inputs, targets = [], []
    for s in train:
        end = len(s) - 1
        while end > 0:
            start = max(0, end - max_len)
            inputs.append(s[start:end])
            targets.append(s[start + 1 : end + 1])
            end = start
    if not inputs:
        raise DataError("no training sequence has two or more items: nothing to learn from")
    return right_aligned(inputs, max_len), right_aligned(targets, max_len)


def make_batches(inputs: np.ndarray, targets: np.ndarray, *, batch_size: int, loss: str,
                 negatives: int, n_items: int, seed: int, bucket: int = 50):
    """``batches(epoch)``: a seeded shuffle of the windows; within each run of ``bucket``
    batches the windows are grouped by length, so a batch is cut to its longest row with
    little padding (the batch order is shuffled again). Negatives for "bce" ([B x L],
    never the position's target) and "sampled_ce" ([B x negatives]) are drawn here, so a
    resumed run sees the same ones."""
    lengths = (inputs > 0).sum(1)
    cache: dict[int, list[dict[str, torch.Tensor]]] = {}

    def batches(epoch: int) -> list[dict[str, torch.Tensor]]:
        if epoch in cache:
            return cache[epoch]
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(inputs))
        groups = []  # similar lengths together (most rows are short), then shuffled
        for c in range(0, len(order), batch_size * bucket):
            part = order[c : c + batch_size * bucket]
            part = part[np.argsort(lengths[part], kind="stable")]
            groups += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
        out = []
        for g in rng.permutation(len(groups)):
            ix = np.sort(groups[g])
            w = max(int(lengths[ix].max()), 1)
            b = {"seq": torch.from_numpy(inputs[ix, -w:]), "tgt": torch.from_numpy(targets[ix, -w:])}
            if loss == "bce":
                neg = rng.integers(1, n_items, size=(len(ix), w))
                clash = neg == b["tgt"].numpy()
                neg[clash] = neg[clash] % (n_items - 1) + 1
                b["neg"] = torch.from_numpy(neg)
            elif loss == "sampled_ce":
                b["neg"] = torch.from_numpy(rng.integers(1, n_items, size=(len(ix), negatives)))
            out.append(b)
        cache.clear()
        cache[epoch] = out
        return out

    return batches


def sequence_loss(net: torch.nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
    return net(b["seq"], b["tgt"], b.get("neg"))


# ------------------------------------------------------------------------------- text init


def item_text_vectors(titles: list[str | None], encoder_path: str | None, cache_dir: Path,
                      *, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(item indices with a title, their encoder embeddings), cached in ``cache_dir``
    under a hash of the encoder path and the titles."""

    path = resolve_encoder(encoder_path)
    rows = np.array([i + 1 for i, t in enumerate(titles) if t], dtype=np.int64)
    texts = [titles[i - 1] for i in rows]
    key = hashlib.sha256("\0".join([path, *texts]).encode()).hexdigest()[:20]
    cache_dir.mkdir(parents=True, exist_ok=True)
    f = cache_dir / f"item-text-{key}.npy"
    if f.exists():
        return rows, np.load(f, allow_pickle=False)

    enc = TextEncoder(load_backbone(path), "mean")
    vecs = embed_texts(enc, load_tokenizer(path), texts, max_length=64,
                       progress="recommend: item titles" if progress else None)
    tmp = cache_dir / f".{f.name}.tmp.npy"
    np.save(tmp, vecs, allow_pickle=False)
    tmp.replace(f)
    return rows, vecs


# ------------------------------------------------------------------------------ evaluation


@torch.no_grad()
def last_hidden(model: SASRec, histories: list[np.ndarray], batch_size: int = 1024) -> torch.Tensor:
    """The model's state after each history (``[n x hidden]``, on the model's device);
    batches of similar length, each padded to its longest row."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    lens = np.array([min(len(h), model.max_len) for h in histories])
    order = np.argsort(lens, kind="stable")
    out = torch.empty(len(histories), model.hidden, device=dev)
    for i in range(0, len(order), batch_size):
        ix = order[i : i + batch_size]
        seq = right_aligned([histories[j] for j in ix], max(int(lens[ix].max()), 1))
        out[torch.as_tensor(ix, device=dev)] = model.encode(torch.from_numpy(seq).to(dev))[:, -1]
    model.train(was)
    return out


def _scorer(model: SASRec, hidden: torch.Tensor):
    emb = model.item_emb.weight.detach()
    return lambda rows: hidden[torch.as_tensor(rows, device=hidden.device)] @ emb.T


def full_metrics(model: SASRec, histories: list[np.ndarray], targets: np.ndarray,
                 exclude: list[np.ndarray] | None, ks=KS) -> dict[str, np.ndarray]:
    """Per-user HR@k / NDCG@k / MRR of the target over all items (padding masked)."""
    scorer = _scorer(model, last_hidden(model, histories))
    return eval_metrics.full_rank_metrics(scorer, targets, exclude, ks, exclude_padding=True)


def sampled_negatives(seqs: Sequences, n: int = 99, seed: int = 0) -> np.ndarray:
    """``n`` untouched items per test user (fewer when a small catalogue has fewer)."""
    touched = [np.concatenate((h, [t])) for h, t in zip(seqs.test_history(), seqs.test_target)]
    free = seqs.n_items - 1 - max(len(np.unique(t[t > 0])) for t in touched)
    if min(n, free) < 1:
        return np.zeros((len(touched), 0), dtype=np.int64)
    return eval_metrics.sample_negatives(seqs.n_items, touched, min(n, free), seed, exclude_padding=True)


def evaluate_test(model: SASRec, seqs: Sequences, *, bootstrap: int = 1000,
                  negatives: np.ndarray | None = None) -> dict[str, Any]:
    """Test metrics of the model and the PopRec baselines (see the module docstring);
    per-user arrays under ``per_user``."""
    hist, tgt = seqs.test_history(), seqs.test_target
    hidden = last_hidden(model, hist)
    scorer = _scorer(model, hidden)
    per = {
        "model": eval_metrics.full_rank_metrics(scorer, tgt, hist, KS, exclude_padding=True),
        "model_unmasked": eval_metrics.full_rank_metrics(scorer, tgt, None, KS, exclude_padding=True),
    }
    pops = {"poprec_train": popularity_scores(seqs.train_interactions, seqs.n_items),
            "poprec_all": popularity_scores(seqs.all_interactions(), seqs.n_items)}
    for name, pop in pops.items():
        per[name] = eval_metrics.full_rank_metrics(popularity_scorer(pop), tgt, hist, KS,
                                                   exclude_padding=True, ties="optimistic")
    neg = sampled_negatives(seqs) if negatives is None else negatives
    emb = model.item_emb.weight.detach()

    def sampled_model(rows, cand):
        h = hidden[torch.as_tensor(rows, device=hidden.device)]
        return (h[:, None, :] * emb[torch.as_tensor(cand, device=emb.device)]).sum(-1)

    sampled = {}
    if neg.shape[1]:
        sampled["model"] = eval_metrics.sampled_rank_metrics(sampled_model, tgt, neg, (1, 5, 10))
        for name, pop in pops.items():
            sampled[name] = eval_metrics.sampled_rank_metrics(lambda r, c, p=pop: p[c], tgt, neg, (1, 5, 10),
                                                              ties="optimistic")
    n = bootstrap
    return {
        "model": eval_metrics.summarize(per["model"], n_boot=n),
        "model_unmasked": eval_metrics.summarize(per["model_unmasked"], n_boot=n),
        "sampled": {"negatives": int(neg.shape[1]),
                    **{k: eval_metrics.summarize(v, n_boot=n) for k, v in sampled.items()}},
        "baselines": {k: eval_metrics.summarize(per[k], n_boot=n) for k in pops},
        "comparisons": eval_metrics.compare(per["model"]["ndcg@10"], per["poprec_train"]["ndcg@10"], n_boot=n),
        "per_user": per,
    }


# -------------------------------------------------------------------------------- training


@dataclass
class RecommendResult:
    model: SASRec
    items: list[str]
    popularity: np.ndarray  # training interactions per item index (padding 0)
    hyperparameters: dict[str, Any]  # SASRec(...) arguments
    training: dict[str, Any]
    metrics: dict[str, Any]
    fit: dict[str, Any]
    history: list[dict[str, Any]]
    timings: dict[str, float]
    counts: dict[str, int] = field(default_factory=dict)


def train_recommend(
    data_dir: Path,
    *,
    hidden: int,
    layers: int,
    heads: int,
    dropout: float,
    max_len: int,
    batch_size: int,
    loss: str,
    negatives: int,
    init_from_text: bool,
    encoder_path: str | None,
    eval_every_epochs: int,
    schedule: Schedule,
    workdir: Path,
    bootstrap: int,
    progress: bool = True,
    activation: str = "gelu",
    ffn_mult: int = 4,
    text_cache: Path | None = None,
) -> RecommendResult:
    """Train SASRec on a leave-one-out dataset folder and evaluate it with baselines.

    The settings of ``train.recommend`` come from the config: ``recommend_args(cfg.recommend)``
    (``encoder_path`` from ``train.encoder``, ``bootstrap`` from ``train.bootstrap``).

    ``workdir`` holds the resumable training state (``fit/``) and the item-title
    embedding cache (``item_text/``, or ``text_cache``). ``schedule.eval_every`` (steps),
    when unset, becomes ``eval_every_epochs`` epochs; patience counts evaluations.
    """
    t0 = time.perf_counter()
    workdir = Path(workdir)
    seqs = load_sequences(data_dir)
    if not len(seqs.users):
        raise DataError(f"{data_dir}: no user has validation and test targets")
    arch = dict(hidden=hidden, layers=layers, heads=heads, dropout=dropout, max_len=max_len,
                loss=loss, activation=activation, ffn_mult=ffn_mult)
    seed_everything(schedule.seed)
    model = SASRec(seqs.n_items, **arch)
    timings: dict[str, float] = {"data_s": time.perf_counter() - t0}
    text_info: dict[str, Any] = {}
    if init_from_text:
        t = time.perf_counter()
        rows, vecs = item_text_vectors(seqs.titles, encoder_path, text_cache or workdir / "item_text",
                                       progress=progress)
        comps = init_from_vectors(model, torch.from_numpy(rows), torch.from_numpy(vecs))
        text_info = {"items_with_text": len(rows), "pca_components": comps}
        timings["text_init_s"] = time.perf_counter() - t
    inputs, targets = training_windows(seqs.train, max_len)
    batches = make_batches(inputs, targets, batch_size=batch_size, loss=loss, negatives=negatives,
                           n_items=seqs.n_items, seed=schedule.seed)
    per_epoch = len(batches(0))
    if schedule.eval_every is None:
        schedule = replace(schedule, eval_every=per_epoch * eval_every_epochs)
    valid_hist = seqs.seen

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        pu = full_metrics(m, valid_hist, seqs.valid_target, valid_hist, ks=(10,))
        return {"ndcg@10": float(pu["ndcg@10"].mean()), "hr@10": float(pu["hr@10"].mean())}

    t = time.perf_counter()
    fitres = fit(model, batches=batches, loss_fn=sequence_loss, evaluate=evaluate, metric="ndcg@10",
                 schedule=schedule, workdir=workdir / "fit", progress=progress, desc="recommend")
    timings["fit_s"] = time.perf_counter() - t
    timings["epoch_s"] = timings["fit_s"] / max(fitres.epochs, 1e-9)
    t = time.perf_counter()
    ev = evaluate_test(model, seqs, bootstrap=bootstrap)
    timings["test_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    ev.pop("per_user")
    ev["validation_best_ndcg@10"] = fitres.best_metric
    counts = {"items": len(seqs.items), "train_users": len(seqs.train),
              "train_interactions": len(seqs.train_interactions), "training_windows": len(inputs),
              "eval_users": len(seqs.users), "steps_per_epoch": per_epoch}
    training = {"batch_size": batch_size, "negatives": negatives, "init_from_text": init_from_text,
                "encoder": encoder_path, "eval_every_epochs": eval_every_epochs,
                "schedule": {k: v for k, v in vars(schedule).items()}, **text_info}
    return RecommendResult(
        model=model.cpu().eval(), items=seqs.items,
        popularity=popularity_scores(seqs.train_interactions, seqs.n_items), hyperparameters=arch,
        training=training, metrics=ev, fit=fitres.to_dict(), history=fitres.history,
        timings={k: round(v, 2) for k, v in timings.items()}, counts=counts,
    )


# ------------------------------------------------------------------------------- save/load


def save(result: RecommendResult, folder: Path) -> None:
    """``model.json`` + ``model.safetensors`` + ``items.parquet`` (item_id, index,
    train_count); no pickle anywhere."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_model(result.model, folder / "model.safetensors")
    pl.DataFrame({
        "item_id": result.items,
        "index": np.arange(1, len(result.items) + 1, dtype=np.int64),
        "train_count": np.asarray(result.popularity[1:], dtype=np.int64),
    }).write_parquet(folder / "items.parquet")
    spec = {"task": "recommend", "model": "sasrec", "n_items": len(result.items) + 1,
            "padding_index": 0, "hyperparameters": result.hyperparameters,
            "training": result.training}
    (folder / "model.json").write_text(json.dumps(spec, indent=2, default=str))


class Recommender:
    """A trained SASRec for live sessions: the latest events in, the next items out."""

    def __init__(self, model: SASRec, items: list[str], popularity: np.ndarray | None = None):
        self.model = model.eval()
        self.items = list(items)
        self.index = {iid: i + 1 for i, iid in enumerate(self.items)}
        pop = np.zeros(len(self.items) + 1, np.float32) if popularity is None else popularity
        self.popularity = torch.as_tensor(np.asarray(pop, dtype=np.float32))

    @classmethod
    def load(cls, folder: Path) -> Recommender:
        folder = Path(folder)
        p = folder / "model.json"
        if not p.exists():
            raise ModelError(f"{folder} holds no model (no model.json)")
        spec = json.loads(p.read_text())
        if spec.get("task") != "recommend":
            raise ModelError(f"{folder} holds a {spec.get('task')!r} model, not a recommender")
        model = SASRec(int(spec["n_items"]), **spec["hyperparameters"])
        load_model(model, folder / "model.safetensors")
        items = pl.read_parquet(folder / "items.parquet").sort("index")
        if items["index"].to_list() != list(range(1, len(items) + 1)):
            raise ModelError(f"{folder}/items.parquet: indices must be 1..n")
        pop = np.concatenate(([0.0], items["train_count"].to_numpy().astype(np.float32)))
        return cls(model, items["item_id"].cast(pl.String).to_list(), pop)

    @classmethod
    def from_result(cls, result: RecommendResult) -> Recommender:
        return cls(result.model, result.items, result.popularity)

    def _indices(self, history: list[str]) -> np.ndarray:
        return np.array([self.index[i] for i in history if i in self.index], dtype=np.int64)

    @torch.no_grad()
    def scores(self, histories: list[list[str]]) -> torch.Tensor:
        """``[n x n_items]`` scores (column 0, padding, is -inf). A history with no known
        item gets the training popularity counts instead of model scores."""
        idx = [self._indices(h) for h in histories]
        dev = next(self.model.parameters()).device
        out = self.model.scores(last_hidden(self.model, idx))
        empty = torch.tensor([len(i) == 0 for i in idx], device=dev)
        if empty.any():
            pop = self.popularity.to(dev).clone()
            pop[0] = -torch.inf
            out[empty] = pop
        return out

    def recommend_batch(self, histories: list[list[str]], k: int = 10,
                        exclude_seen: bool = True) -> list[list[tuple[str, float]]]:
        if not histories:
            return []
        s = self.scores(histories)
        if exclude_seen:
            for r, h in enumerate(histories):
                seen = self._indices(h)
                if len(seen):
                    s[r, torch.as_tensor(seen, device=s.device)] = -torch.inf
        vals, ix = s.topk(min(int(k), s.shape[1]), dim=1)
        return [[(self.items[int(i) - 1], float(v)) for v, i in zip(vr, ir) if v > -torch.inf]
                for vr, ir in zip(vals.cpu(), ix.cpu())]

    def recommend(self, history_item_ids: list[str], k: int = 10,
                  exclude_seen: bool = True) -> list[tuple[str, float]]:
        """The top ``k`` next items for one session's events (oldest first); unknown ids
        are ignored; with ``exclude_seen`` items already in the history are never returned."""
        return self.recommend_batch([list(history_item_ids)], k, exclude_seen)[0]


def evaluate_folder(model_dir: Path, data_dir: Path, *, bootstrap: int = 1000) -> dict[str, Any]:
    """A saved model on another dataset folder's test split (full ranking, history items
    masked). Items unknown to the model are dropped from histories; a user whose test
    target is unknown counts as a miss."""
    rec = Recommender.load(model_dir)
    seqs = load_sequences(data_dir, vocab=rec.items)
    known = seqs.test_target > 0
    hist = seqs.test_history()
    per = {k: np.zeros(len(known)) for k in [f"{m}@{k}" for k in KS for m in ("hr", "ndcg")] + ["mrr"]}
    if known.any():
        rows = np.flatnonzero(known)
        h = [hist[r][hist[r] > 0] for r in rows]
        got = full_metrics(rec.model, h, seqs.test_target[rows], h)
        for k, v in got.items():
            per[k][rows] = v
    summary: dict[str, Any] = eval_metrics.summarize(per, n_boot=bootstrap)
    summary["unknown_test_targets"] = int((~known).sum())
    return summary
