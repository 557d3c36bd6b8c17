"""Meta reward model: a scalar model that rates sampled judgments, for meta-RM-guided
voting (SPCT, arXiv 2504.02495, section 4: "a meta RM ... trained to identify the
correctness of principles and critiques"; only the top k_meta samples vote).

Label of a judgment (the paper's rule): 1 if its scores rank the known-best response
strictly first, else 0 (unparsable judgments are 0).

Model: a linear head on a frozen backbone, trained with logistic loss (a sequence
classification head whose backbone is frozen). The feature of a judgment is the
backbone's final hidden state at the last token concatenated with its mean over tokens,
reading the judge's query followed by the judgment, truncated from the left to
`max_tokens` so the scores line is always seen. The paper fine-tunes the whole model; a
frozen backbone keeps training to one forward pass per judgment on a CPU (noted as a
difference). Features are standardised; classes are re-weighted to balance.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field

from selfteach.backends.base import Backend, HiddenStates, require
from selfteach.data.records import judged_item
from selfteach.errors import SelfteachError
from selfteach.judge.parse import ranks_best_first
from selfteach.judge.voting import meta_text
from selfteach.stats import auroc
from selfteach.validate import MAX_BATCH, MAX_LR, MAX_STEPS, MAX_TOKENS, Seed


class MetaConfig(BaseModel):
    """Settings of `selfteach judge train-meta`."""

    model_config = ConfigDict(allow_inf_nan=False)

    backbone: str = Field(
        "smollm2-135m", description="model whose hidden states the head reads (alias/dir/...)"
    )
    max_tokens: int = Field(
        768, ge=16, le=MAX_TOKENS, description="keep the last N tokens of query + judgment"
    )
    epochs: int = Field(
        300, ge=1, le=MAX_STEPS, description="full-batch optimisation steps of the head"
    )
    lr: float = Field(0.01, gt=0, le=MAX_LR, description="AdamW learning rate of the head")
    weight_decay: float = Field(0.1, ge=0, description="L2 regularisation of the head")
    val_frac: float = Field(
        0.2, ge=0, lt=1, description="held-out share of items for the reported AUROC"
    )
    batch_size: int = Field(
        8, ge=1, le=MAX_BATCH, description="judgments per feature-extraction forward pass"
    )
    seed: Seed = Field(0, description="split and init seed")


def labeled_judgments(records: list[dict]) -> list[tuple[str, str, int]]:
    """(item id, meta input text, label) for every sample of records with a known best."""
    out = []
    for rec in records:
        if rec.get("best") is None or rec.get("mode", "multi") != "multi" or rec.get("error"):
            continue
        item = judged_item(rec)
        for s in rec["samples"]:
            rank = ranks_best_first(s.get("scores"), rec["best"])
            out.append((str(rec["id"]), meta_text(item, s), int(rank)))
    return out


@torch.inference_mode()
def features(
    backend: Backend, texts: list[str], max_tokens: int, batch_size: int = 8
) -> torch.Tensor:
    """[len(texts), 2*hidden]: last-token and mean final hidden state of the backbone."""
    model: HiddenStates = require(backend, HiddenStates, "meta RM")
    seqs = [backend.tokenize(t)[-max_tokens:] for t in texts]
    states = model.hidden_states(seqs, batch_size=batch_size)
    return torch.stack([torch.cat([h[-1], h.mean(0)]) for h in states])


def _fit(x: torch.Tensor, y: torch.Tensor, cfg: MetaConfig) -> torch.nn.Linear:
    torch.manual_seed(cfg.seed)
    head = torch.nn.Linear(x.shape[1], 1)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    pos = float(y.sum())
    pos_weight = torch.tensor((len(y) - pos) / max(pos, 1.0))
    for _ in range(cfg.epochs):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            head(x).squeeze(-1), y, pos_weight=pos_weight
        )
        loss.backward()
        opt.step()
    return head


class MetaRM:
    """A trained meta RM: `score(texts)` gives a logit per judgment (higher = more likely
    right). Load with `MetaRM.load(dir, backend=...)`; pass the judge's backend when it is
    the same model as the backbone, to avoid loading it twice."""

    def __init__(
        self,
        backend: Backend,
        head: torch.nn.Linear,
        mean: torch.Tensor,
        std: torch.Tensor,
        info: dict,
    ):
        self.backend, self.head, self.mean, self.std, self.info = backend, head, mean, std, info

    @torch.inference_mode()
    def score(self, texts: list[str]) -> list[float]:
        x = (features(self.backend, texts, self.info["max_tokens"]) - self.mean) / self.std
        return [float(v) for v in self.head(x).squeeze(-1)]

    def save(self, out: str | Path) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        blob = {
            **self.info,
            "weight": self.head.weight.detach()[0].tolist(),
            "bias": float(self.head.bias.detach()[0]),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
        }
        path = out / "meta_rm.json"
        path.write_text(json.dumps(blob), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path, backend: Backend | None = None) -> MetaRM:
        p = Path(path)
        p = p / "meta_rm.json" if p.is_dir() else p
        if not p.is_file():
            raise SelfteachError(
                f"{p}: meta RM not found (train one with `selfteach judge train-meta`)"
            )
        try:
            blob = json.loads(p.read_text(encoding="utf-8"))
            weight, bias = torch.tensor(blob.pop("weight")), float(blob.pop("bias"))
            mean, std = torch.tensor(blob.pop("mean")), torch.tensor(blob.pop("std"))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise SelfteachError(f"{p}: not a meta RM file ({type(e).__name__}: {e})") from None
        if (
            backend is None
            or backend.name != blob["backbone"]
            or not isinstance(backend, HiddenStates)
        ):
            from selfteach.backends import load_backend

            backend = load_backend(blob["backbone"], "hf")
        head = torch.nn.Linear(len(weight), 1)
        with torch.no_grad():
            head.weight.copy_(weight[None])
            head.bias.fill_(bias)
        return cls(backend, head, mean, std, blob)


def train_meta(records: list[dict], cfg: MetaConfig, backend: Backend | None = None) -> MetaRM:
    """Fit the meta RM on judged records (from `judge run`/`judge eval` outputs)."""
    data = labeled_judgments(records)
    if not data:
        raise SelfteachError(
            "no usable judgments: records need a known 'best' and multi-mode samples"
        )
    labels = [y for _, _, y in data]
    if len(set(labels)) < 2:
        which = "right" if labels[0] else "wrong"
        raise SelfteachError(
            f"all {len(labels)} judgments are {which}: the meta RM needs both right and wrong ones"
        )
    if backend is None:
        from selfteach.backends import load_backend

        backend = load_backend(cfg.backbone, "hf")
    x = features(backend, [t for _, t, _ in data], cfg.max_tokens, cfg.batch_size)
    y = torch.tensor(labels, dtype=torch.float32)
    ids = sorted({i for i, _, _ in data})
    g = torch.Generator().manual_seed(cfg.seed)
    val_ids = {
        ids[j]
        for j in torch.randperm(len(ids), generator=g)[: int(len(ids) * cfg.val_frac)].tolist()
    }
    val = torch.tensor([i in val_ids for i, _, _ in data])
    metrics: dict = {"n": len(data), "n_right": int(y.sum()), "n_items": len(ids)}
    if val.any() and (~val).any() and len(set(y[~val].tolist())) == 2:
        mean, std = x[~val].mean(0), x[~val].std(0) + 1e-6
        head = _fit((x[~val] - mean) / std, y[~val], cfg)
        with torch.no_grad():
            sv = head((x[val] - mean) / std).squeeze(-1).tolist()
        metrics.update(val_auroc=auroc(sv, y[val].int().tolist()), n_val=int(val.sum()))
    mean, std = x.mean(0), x.std(0) + 1e-6
    head = _fit((x - mean) / std, y, cfg)
    with torch.no_grad():
        st = head((x - mean) / std).squeeze(-1).tolist()
    metrics["train_auroc"] = auroc(st, labels)
    info = {"backbone": cfg.backbone, "max_tokens": cfg.max_tokens, "metrics": metrics}
    return MetaRM(backend, head, mean, std, info)
