"""SASRec (Kang & McAuley, ICDM 2018): next-item prediction with causal self-attention.

* Input: item indices ``[batch x L]``, right-aligned (the latest item in the last column),
  0 = padding. Positions are counted from the right end (column ``j`` of a width-``W``
  input gets position ``max_len - W + j``), so the same history gives the same output
  whether it is padded to ``max_len`` or only to the longest row of its batch.
* ``layers`` pre-LN blocks: ``x + drop(attn(LN(x)))`` then ``x + drop(FFN(LN(x)))``, a
  final LayerNorm. Attention is causal and never looks at a padding key (a padding query
  looks only at itself, so no row is all-masked and nothing is NaN).
* Scores: the output at a position dotted with every item embedding (the input item
  table is shared with the output layer); the padding column is never a candidate.
* Losses (``loss``): ``"ce"`` softmax cross-entropy over all items (the strongest on
  Beauty); ``"bce"`` one sampled negative per position (the original paper);
  ``"sampled_ce"`` cross-entropy of the target against ``negatives`` sampled items per
  sequence. Negatives come with the batch, so the loop stays deterministic and
  resumable.
* :func:`init_from_vectors` sets item rows from pretrained text vectors (PCA to
  ``hidden``, rescaled to the init std), so a new item with a title is not cold.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from shelfops.errors import ConfigError

LOSSES = ("ce", "bce", "sampled_ce")
INIT_STD = 0.02


class _Block(nn.Module):
    def __init__(self, hidden: int, heads: int, dropout: float, ffn_mult: int, act: str) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.ln1 = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.ln2 = nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(
            nn.Linear(hidden, ffn_mult * hidden),
            nn.GELU() if act == "gelu" else nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(ffn_mult * hidden, hidden),
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, h = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, n, 3, self.heads, h // self.heads).unbind(2)
        a = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
        )
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, n, h)))
        return x + self.drop(self.ffn(self.ln2(x)))


class SASRec(nn.Module):
    def __init__(
        self,
        n_items: int,
        *,
        hidden: int = 64,
        layers: int = 2,
        heads: int = 2,
        dropout: float = 0.5,
        max_len: int = 50,
        loss: str = "ce",
        activation: str = "gelu",
        ffn_mult: int = 4,
    ) -> None:
        super().__init__()
        problems = []
        if n_items < 2:
            problems.append(f"n_items must be >= 2 (padding + one item), got {n_items}")
        if hidden % heads:
            problems.append(f"hidden ({hidden}) must be divisible by heads ({heads})")
        if loss not in LOSSES:
            problems.append(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}")
        if activation not in ("gelu", "relu"):
            problems.append(f"activation must be gelu or relu, got {activation!r}")
        if problems:
            raise ConfigError(problems, "SASRec")
        self.n_items, self.hidden, self.max_len, self.loss = n_items, hidden, max_len, loss
        self.item_emb = nn.Embedding(n_items, hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, hidden)
        self.emb_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            _Block(hidden, heads, dropout, ffn_mult, activation) for _ in range(layers)
        )
        self.ln_out = nn.LayerNorm(hidden)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=INIT_STD)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.Embedding) and m.padding_idx is not None:
            with torch.no_grad():
                m.weight[m.padding_idx].zero_()

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        """Hidden states ``[batch x L x hidden]`` of right-aligned item sequences."""
        seq = seq[:, -self.max_len :]
        n = seq.shape[1]
        pos = torch.arange(self.max_len - n, self.max_len, device=seq.device)
        x = self.emb_drop(self.item_emb(seq) + self.pos_emb(pos))
        real = seq > 0
        causal = torch.ones(n, n, dtype=torch.bool, device=seq.device).tril()
        eye = torch.eye(n, dtype=torch.bool, device=seq.device)
        mask = (causal & real[:, None, :]) | eye  # [B, query, key]
        mask = mask[:, None]
        for block in self.blocks:
            x = block(x, mask)
        return self.ln_out(x)

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """Score of every item for each hidden state; padding column = -inf."""
        s = hidden @ self.item_emb.weight.T
        return s.index_fill(-1, torch.zeros(1, dtype=torch.long, device=s.device), -math.inf)

    def forward(
        self,
        seq: torch.Tensor,
        targets: torch.Tensor | None = None,
        negatives: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Hidden states, or with ``targets`` (``[B x L]``, 0 = no target) the mean loss.

        ``negatives``: ``[B x L]`` for "bce", ``[B x K]`` (shared by a row's positions)
        for "sampled_ce"; unused by "ce".
        """
        h = self.encode(seq)
        if targets is None:
            return h
        targets = targets[:, -h.shape[1] :]
        m = targets > 0
        emb = self.item_emb.weight
        if self.loss == "ce":  # every real item is a class; padding (column 0) is not
            return full_softmax_ce(h[m], emb[1:], targets[m] - 1)
        if negatives is None:
            raise ConfigError([f"loss {self.loss!r} needs negatives in the batch"], "SASRec")
        pos = (h * emb[targets]).sum(-1)
        if self.loss == "bce":
            neg = (h * emb[negatives[:, -h.shape[1] :]]).sum(-1)
            return (F.softplus(-pos[m]) + F.softplus(neg[m])).mean()
        neg = torch.einsum("blh,bkh->blk", h, emb[negatives])
        neg = neg.masked_fill(negatives[:, None, :] == targets[:, :, None], -math.inf)
        logits = torch.cat((pos[..., None], neg), -1)[m]
        return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=h.device))


class _FullSoftmaxCE(torch.autograd.Function):
    """mean(logsumexp(h @ E^T) - (h @ E^T)[target]), a few hundred rows at a time.

    The ``[rows x items]`` logits never exist whole: the forward keeps only each row's
    log-sum-exp, the backward recomputes one chunk of logits at a time. On a CPU this
    is memory-bound work, so chunks that stay in cache are 1.3-2.5x faster than
    ``cross_entropy(h @ E.T, t)``; the matmuls run in ``dtype`` (bf16 under autocast).
    """

    @staticmethod
    def forward(ctx, h, emb, target, chunk: int, dtype: torch.dtype):
        n = h.shape[0]
        lse = torch.empty(n, device=h.device)
        hit = torch.empty(n, device=h.device)
        hd, ed = h.to(dtype), emb.to(dtype)
        for i in range(0, n, chunk):
            logits = (hd[i : i + chunk] @ ed.T).float()
            lse[i : i + chunk] = torch.logsumexp(logits, 1)
            hit[i : i + chunk] = logits.gather(1, target[i : i + chunk, None])[:, 0]
        ctx.save_for_backward(h, emb, target, lse)
        ctx.chunk, ctx.dtype = chunk, dtype
        return (lse - hit).mean()

    @staticmethod
    def backward(ctx, grad):
        h, emb, target, lse = ctx.saved_tensors
        chunk, dtype, n = ctx.chunk, ctx.dtype, h.shape[0]
        hd, ed = h.to(dtype), emb.to(dtype)
        gh = torch.empty(h.shape, device=h.device)
        ge = torch.zeros(emb.shape, device=h.device)
        for i in range(0, n, chunk):
            hc = hd[i : i + chunk]
            p = (hc @ ed.T).float().sub_(lse[i : i + chunk, None]).exp_()
            p[torch.arange(len(hc), device=p.device), target[i : i + chunk]] -= 1
            p = p.mul_(grad / n).to(dtype)
            gh[i : i + chunk] = (p @ ed).float()
            ge += (p.T @ hc).float()
        return gh.to(h.dtype), ge.to(emb.dtype), None, None, None


def full_softmax_ce(h: torch.Tensor, emb: torch.Tensor, target: torch.Tensor,
                    chunk: int = 256) -> torch.Tensor:
    """Softmax cross-entropy of ``h @ emb.T`` against ``target`` (mean over rows), with
    the matmuls in bf16 when autocast is on for ``h``'s device, else in fp32."""
    dev = h.device.type
    dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else torch.float32
    with torch.autocast(dev, enabled=False):
        return _FullSoftmaxCE.apply(h.float(), emb.float(), target, chunk, dtype)


@torch.no_grad()
def init_from_vectors(
    model: SASRec, rows: torch.Tensor, vectors: torch.Tensor, *, std: float = INIT_STD
) -> int:
    """Set ``model.item_emb`` rows ``rows`` from ``vectors`` (``[len(rows) x d]``).

    The vectors are centred and reduced to ``hidden`` dimensions by PCA (SVD of the
    centred matrix; fewer components when there are fewer vectors or dims, the rest of
    each row stays random), then scaled so the projected block has standard deviation
    ``std``. Other rows (items without text, padding) are left alone. Returns the number
    of components used.
    """
    rows = torch.as_tensor(rows, dtype=torch.long)
    x = torch.as_tensor(vectors, dtype=torch.float32)
    if len(rows) != len(x) or (len(rows) and int(rows.min()) < 1):
        raise ConfigError(["init_from_vectors: one vector per row, rows >= 1 (0 is padding)"])
    if len(rows) < 2:
        return 0
    x = x - x.mean(0, keepdim=True)
    q = min(model.hidden, x.shape[1], len(x) - 1)
    _, _, v = torch.linalg.svd(x, full_matrices=False)
    z = x @ v[:q].T
    z = z * (std / z.std().clamp(min=1e-12))
    w = model.item_emb.weight
    w[rows.to(w.device), :q] = z.to(w.device, w.dtype)
    return q
