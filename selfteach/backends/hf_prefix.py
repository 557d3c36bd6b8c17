"""Shared-prefix KV-cache reuse for the transformers backend.

Two callers pay for one long prefix many times over; here they pay once:

- generation (`generate_from_shared_prefix`): anytime evaluation continues one reasoning
  trace at many truncation points with the same forced-answer suffix (AnytimeReasoner,
  arXiv 2505.13438; arXiv 2601.11038). Re-running the trace per budget would cost T
  generations; here the trace is prefilled once and every truncation continues from a
  slice of its KV cache, so only the suffix and the short answers are computed.
- scoring (`label_logprobs_shared_prefix`): ICM (arXiv 2506.10139) scores many claims after
  one context of labeled examples. The context's KV cache is computed once (and kept in a
  small LRU, `PrefixKVCache`), copied per batch of suffixes, and only the last position of
  each suffix goes through the LM head (`label_logprobs_last`): for a 262k vocabulary
  (Gemma 3) the head over every position costs more than the transformer itself.

`HFBackend` exposes these as thin methods (the `PrefixGeneration`, `PrefixScoring` and
`LastTokenScoring` capabilities of `selfteach.backends.base`); nothing here is needed by
the rest of the backend.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch

from selfteach.backends.base import Generation, SamplingParams
from selfteach.errors import SelfteachError

if TYPE_CHECKING:
    from selfteach.backends.hf import HFBackend


# ---- generation from a shared prefix -------------------------------------------------------

def full_attention_only(model: Any) -> bool:
    """No sliding-window layers: a KV-cache slice is then exactly the cache of the cut prefix."""
    cfg = model.config.get_text_config(decoder=True)
    types = getattr(cfg, "layer_types", None)
    return not getattr(cfg, "sliding_window", None) or (
        types is not None and set(types) == {"full_attention"}
    )


@torch.inference_mode()
def generate_from_shared_prefix(
    hf: HFBackend,
    prefixes: list[list[int]],
    cuts: list[list[int]],
    suffix: list[int],
    params: SamplingParams,
) -> list[list[Generation]]:
    """Continue `prefixes[i][:c] + suffix` for every cut `c` in `cuts[i]`.

    Each prefix is run through the model once; the continuations for all its cuts are
    batched and start from slices of that KV cache (left-padded to a common length), so
    the cost is one prefill per prefix plus the suffix and the answers. Returns
    `out[i][j]`, one `Generation` for `cuts[i][j]` (`params.n` must be 1). Models with
    sliding-window layers fall back to plain `generate` on the token ids.
    """
    if params.n != 1:
        raise SelfteachError("generate_from_shared_prefix: params.n must be 1")
    for i, (p, cs) in enumerate(zip(prefixes, cuts, strict=True)):
        if any(not 1 <= c <= len(p) for c in cs):
            raise SelfteachError(
                f"generate_from_shared_prefix: cut out of range 1..{len(p)} for prefix {i}"
            )
    if not full_attention_only(hf.model):
        flat = hf.generate([list(p[:c]) + list(suffix) for p, cs in zip(prefixes, cuts, strict=True)
                            for c in cs], params)
        it = iter(flat)
        return [[next(it)[0] for _ in cs] for cs in cuts]
    fulls, offs = [], []
    for p, cs in zip(prefixes, cuts, strict=True):
        full = hf._prompt_ids(list(p))  # may prepend BOS: cuts shift by the same offset
        off = len(full) - len(p)
        fulls.append(full[: max(cs, default=0) + off])
        offs.append(off)
        hf._check_length(len(fulls[-1]) + len(suffix) + params.max_new_tokens)
    kv = prefill_kv(hf, fulls)
    # rows: (prefix index, cut index, tokens kept in cache, uncached tail fed to generate)
    rows = []
    for i, cs in enumerate(cuts):
        for j, c in enumerate(cs):
            keep = c + offs[i]
            if suffix:
                rows.append((i, j, keep, list(suffix)))
            else:  # generate needs one uncached token: feed the prefix's last one
                rows.append((i, j, keep - 1, [fulls[i][keep - 1]]))
    out: list[list[Generation | None]] = [[None] * len(cs) for cs in cuts]
    rows.sort(key=lambda r: -r[2])
    for start in range(0, len(rows), hf.batch_size):
        _continue_batch(hf, rows[start : start + hf.batch_size], fulls, kv, params, out)
    return out  # type: ignore[return-value]


def _continue_batch(
    hf: HFBackend,
    batch: list[tuple[int, int, int, list[int]]],
    fulls: list[list[int]],
    kv: list[list[tuple[torch.Tensor, torch.Tensor]]],
    params: SamplingParams,
    out: list[list[Generation | None]],
) -> None:
    """Generate one batch of rows, each from its prefix's cache cut to `keep` tokens."""
    from transformers import DynamicCache

    pad = hf.tokenizer.pad_token_id
    width = max(r[2] for r in batch)
    tail = len(batch[0][3])
    ids = torch.full((len(batch), width + tail), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width + tail), dtype=torch.long)
    layers = []
    for layer in range(len(kv[0])):
        k0, v0 = kv[batch[0][0]][layer]
        keys = k0.new_zeros((len(batch), k0.shape[0], width, k0.shape[2]))
        vals = v0.new_zeros((len(batch), v0.shape[0], width, v0.shape[2]))
        for r, (i, _, keep, _) in enumerate(batch):
            k, v = kv[i][layer]
            keys[r, :, width - keep:] = k[:, :keep]
            vals[r, :, width - keep:] = v[:, :keep]
        layers.append((keys, vals))
    for r, (i, _, keep, t) in enumerate(batch):  # left padding, as in HFBackend._generate_batch
        ids[r, width - keep: width] = torch.tensor(fulls[i][:keep], dtype=torch.long)
        ids[r, width:] = torch.tensor(t, dtype=torch.long)
        mask[r, width - keep:] = 1
    cache = DynamicCache(ddp_cache_data=layers, config=hf.model.config)
    if params.seed is not None:
        torch.manual_seed(params.seed)
    gen = hf.model.generate(input_ids=ids.to(hf.device), attention_mask=mask.to(hf.device),
                            past_key_values=cache, **hf._generate_kwargs(params))
    hf.usage.calls += 1
    hf.usage.prompt_tokens += tail * len(batch)
    hf.usage.extra["cached_prompt_tokens"] = (hf.usage.extra.get("cached_prompt_tokens", 0)
                                              + sum(r[2] for r in batch))
    new = gen[:, width + tail:].cpu().tolist()
    for r, (i, j, _, _) in enumerate(batch):
        g = hf._finish(new[r], params)
        hf.usage.generated_tokens += g.num_tokens
        out[i][j] = g


def prefill_kv(
    hf: HFBackend, seqs: list[list[int]]
) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """One forward pass per batch of sequences (right-padded); per sequence and layer the
    (keys, values) of its real tokens, shaped [heads, len, head_dim]."""
    from transformers import DynamicCache

    out: list = [None] * len(seqs)
    for batch in hf._batches([len(s) for s in seqs]):
        ids, mask = hf._right_padded([seqs[i] for i in batch])
        cache = DynamicCache(config=hf.model.config)
        hf.model(
            input_ids=ids.to(hf.device),
            attention_mask=mask.to(hf.device),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        hf.usage.calls += 1
        hf.usage.prompt_tokens += int(mask.sum())
        for r, i in enumerate(batch):
            n = len(seqs[i])
            layers: list[Any] = list(cache.layers)  # full-attention layers: keys and values
            out[i] = [
                (layer.keys[r, :, :n].clone(), layer.values[r, :, :n].clone()) for layer in layers
            ]
    return out


# ---- label scoring at the last position, after a shared prefix --------------------------------

class PrefixKVCache:
    """KV caches of recent prefixes, keyed by their token ids (least recently used dropped
    first): ICM reuses a few contexts many times."""

    def __init__(self, size: int = 8):
        self.size = size
        self._store: dict[tuple[int, ...], Any] = {}

    @torch.inference_mode()
    def get(self, hf: HFBackend, prefix_ids: list[int]) -> Any:
        key = tuple(prefix_ids)
        if key in self._store:
            self._store[key] = self._store.pop(key)  # most recently used last
            hf.usage.extra["reused_prefix_tokens"] = hf.usage.extra.get(
                "reused_prefix_tokens", 0
            ) + len(key)
            return self._store[key]
        out = hf.model.get_decoder()(
            input_ids=torch.tensor([prefix_ids], device=hf.device), use_cache=True
        )
        hf.usage.calls += 1
        hf.usage.prompt_tokens += len(prefix_ids)
        self._store[key] = out.past_key_values
        while len(self._store) > self.size:
            self._store.pop(next(iter(self._store)))
        return self._store[key]

    def clear(self) -> None:
        self._store.clear()


def one_token_label_ids(hf: HFBackend, labels: dict[str, list[str]]) -> dict[str, list[int]] | None:
    """Ids of the variants of each label that are one token for this tokenizer (" True",
    "True", " true", ...; all of them are summed). Variants that span several tokens
    (" TRUE" in some vocabularies) are left out here: scoring them needs a forward pass
    per variant and their mass is negligible. None when a label has no one-token
    variant (callers then fall back to `label_logprobs`)."""
    out: dict[str, list[int]] = {}
    for label, variants in labels.items():
        ids: list[int] = []
        for v in variants:
            toks = hf.tokenize(v)
            if len(toks) == 1 and toks[0] not in ids:
                ids.append(toks[0])
        if not ids:
            return None
        out[label] = ids
    return out


def _label_rows(
    hf: HFBackend, hidden: torch.Tensor, label_ids: dict[str, list[int]]
) -> list[dict[str, float]]:
    """Log of the summed probability of each label's variants, from last hidden rows."""
    lp = torch.log_softmax(hf._head(hidden), dim=-1).cpu()
    return [
        {lab: float(torch.logsumexp(row[ids], 0)) for lab, ids in label_ids.items()} for row in lp
    ]


@torch.inference_mode()
def _score_last(
    hf: HFBackend,
    seqs: list[list[int]],
    label_ids: dict[str, list[int]],
    past: Any = None,
    past_len: int = 0,
) -> list[dict[str, float]]:
    """Right-padded batches through the decoder (optionally after a cached prefix of
    `past_len` tokens, copied per batch); label log-probs after each sequence's last token."""
    out: list[dict[str, float] | None] = [None] * len(seqs)
    # batches are capped by max_batch_tokens counting the prefix, which bounds the
    # memory of the per-batch copies of the cache as well
    for batch in hf._batches([len(s) + past_len for s in seqs]):
        _score_last_batch(hf, seqs, batch, label_ids, past, past_len, out)
    return out  # type: ignore[return-value]


def _score_last_batch(
    hf: HFBackend,
    seqs: list[list[int]],
    batch: list[int],
    label_ids: dict[str, list[int]],
    past: Any,
    past_len: int,
    out: list[dict[str, float] | None],
) -> None:
    width = max(len(seqs[i]) for i in batch)
    ids = torch.full((len(batch), width), hf.tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(batch), past_len + width), dtype=torch.long)
    mask[:, :past_len] = 1
    for r, i in enumerate(batch):
        ids[r, : len(seqs[i])] = torch.tensor(seqs[i])
        mask[r, past_len : past_len + len(seqs[i])] = 1
    kwargs = {}
    if past is not None:
        cache = copy.deepcopy(past)
        cache.batch_repeat_interleave(len(batch))
        kwargs = {"past_key_values": cache, "use_cache": True}
    hidden = hf.model.get_decoder()(input_ids=ids.to(hf.device), attention_mask=mask.to(hf.device),
                                    **kwargs).last_hidden_state
    hf.usage.calls += 1
    hf.usage.prompt_tokens += sum(len(seqs[i]) for i in batch)
    last = hidden[torch.arange(len(batch)), torch.tensor([len(seqs[i]) - 1 for i in batch])]
    for i, row in zip(batch, _label_rows(hf, last, label_ids), strict=True):
        out[i] = row


def label_logprobs_last(
    hf: HFBackend, prompts: list[str], labels: dict[str, list[str]]
) -> list[dict[str, float]]:
    """`label_logprobs` from the one-token variants, the LM head at the last position only."""
    label_ids = one_token_label_ids(hf, labels)
    if label_ids is None:
        return hf.label_logprobs(prompts, labels)
    seqs = [hf._prompt_ids(p) for p in prompts]
    for s in seqs:
        hf._check_length(len(s))
    return _score_last(hf, seqs, label_ids)


def label_logprobs_shared_prefix(hf: HFBackend, prefix: str, suffixes: list[str],
                                 labels: dict[str, list[str]]) -> list[dict[str, float]]:
    """`label_logprobs([prefix + s for s in suffixes], labels)`, reading `prefix` once.

    The prefix is tokenised on its own (end it at a token boundary such as "\\n\\n"),
    its KV cache is computed once (and kept in `hf.prefix_cache`, so repeated calls with
    the same context cost only the suffixes), copied for each batch of suffixes, and only
    the last position of each suffix goes through the LM head. Usage counts the prefix
    tokens once and every suffix token.
    """
    label_ids = one_token_label_ids(hf, labels)
    if label_ids is None or not prefix:
        texts = [prefix + s for s in suffixes]
        return (
            label_logprobs_last(hf, texts, labels)
            if label_ids is not None
            else hf.label_logprobs(texts, labels)
        )
    prefix_ids = hf._prompt_ids(prefix)
    seqs = [hf.tokenize(s) for s in suffixes]
    for s in seqs:
        if not s:
            raise SelfteachError("label_logprobs_shared_prefix: empty suffix")
        hf._check_length(len(prefix_ids) + len(s))
    past = hf.prefix_cache.get(hf, prefix_ids)
    return _score_last(hf, seqs, label_ids, past=past, past_len=len(prefix_ids))
