"""transformers backend: a hub id, a local directory or a GGUF file, on CPU or GPU.

fp32 on CPU (bf16 autocast is slower there for these models, see platform notes), bf16 on
GPU. Scoring batches right-padded sequences sorted by length; generation batches
left-padded prompts. Sampling is seeded per call, so the same seed gives the same output
on the same device and batch composition.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch

from selfteach.backends.base import Generation, Prompt, SamplingParams, Usage
from selfteach.backends.devices import pick_device
from selfteach.errors import SelfteachError


def pick_dtype(device: str, dtype: str | None = None) -> torch.dtype:
    if dtype and dtype != "auto":
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}[dtype]
    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def split_context(context: str, continuation: str) -> tuple[str, str]:
    """Move trailing whitespace of the context to the continuation (lm-eval-harness rule):
    "...is " + "True" is scored as "...is" + " True", the tokens a model actually emits."""
    stripped = context.rstrip()
    return stripped, context[len(stripped):] + continuation


class HFBackend:
    """`Backend` over a transformers causal LM. See `selfteach.backends.base.Backend`."""

    def __init__(self, model: str = "smollm2-135m", device: str | None = None, dtype: str | None = None,
                 batch_size: int = 16, max_batch_tokens: int = 16384, model_obj=None, tokenizer=None):
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        from selfteach.backends.models import resolve

        hf_logging.disable_progress_bar()  # no "Loading weights" bars in our output

        self.name = model
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, dtype)
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.usage = Usage()
        if model_obj is not None:
            self.model, self.tokenizer = model_obj, tokenizer
        else:
            path = resolve(model)
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(str(path))
                self.model = AutoModelForCausalLM.from_pretrained(str(path), dtype=self.dtype)
            except OSError as e:
                raise SelfteachError(f"model {model!r}: cannot load ({str(e).splitlines()[0]})") from None
            self.model.to(self.device)
        self.model.eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.max_length = int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)

    # ---- tokens -----------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def _prompt_ids(self, prompt: Prompt) -> list[int]:
        ids = list(prompt) if isinstance(prompt, list) else self.tokenize(prompt)
        bos = self.tokenizer.bos_token_id
        # Models trained with a BOS token (Gemma) degrade badly without it.
        if bos is not None and getattr(self.tokenizer, "add_bos_token", False) and (not ids or ids[0] != bos):
            ids = [bos] + ids
        return ids

    def chat_prompt(self, user: str, system: str | None = None) -> str:
        if not getattr(self.tokenizer, "chat_template", None):
            return user
        msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        return self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)

    # ---- scoring ----------------------------------------------------------------------
    def _batches(self, lengths: list[int]) -> Iterator[list[int]]:
        """Index batches, longest first, capped by batch_size and padded-token budget."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        batch: list[int] = []
        for i in order:
            if batch and (len(batch) >= self.batch_size or lengths[batch[0]] * (len(batch) + 1) > self.max_batch_tokens):
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    def _right_padded(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Input ids (right-padded) and attention mask for a batch of token sequences."""
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, : len(s)] = torch.tensor(s)
            mask[r, : len(s)] = 1
        return ids, mask

    @torch.inference_mode()
    def _forward_logprobs(self, seqs: list[list[int]], want: list[list[int]]) -> list[torch.Tensor]:
        """For each sequence, log-softmax rows at the positions in `want` (position p holds
        the distribution of token p+1). Rows come back as float32 CPU tensors."""
        out: list[torch.Tensor | None] = [None] * len(seqs)
        for batch in self._batches([len(s) for s in seqs]):
            ids, mask = self._right_padded([seqs[i] for i in batch])
            hidden = self.model.get_decoder()(input_ids=ids.to(self.device),
                                              attention_mask=mask.to(self.device)).last_hidden_state
            self.usage.calls += 1
            self.usage.prompt_tokens += int(mask.sum())
            # The LM head only at the wanted positions: for a 262k vocabulary (Gemma 3) the
            # head over every position costs more than the whole transformer.
            rows = torch.cat([hidden[r, want[i]] for r, i in enumerate(batch)])
            lp = torch.log_softmax(self._head(rows), dim=-1).cpu()
            for i, part in zip(batch, torch.split(lp, [len(want[i]) for i in batch]), strict=True):
                out[i] = part
        return out  # type: ignore[return-value]

    def _head(self, hidden: torch.Tensor) -> torch.Tensor:
        """fp32 logits from hidden states (with final soft-capping where the model has it)."""
        logits = self.model.get_output_embeddings()(hidden).float()
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        return torch.tanh(logits / cap) * cap if cap else logits

    def _check_length(self, n: int) -> None:
        if n > self.max_length:
            raise SelfteachError(f"prompt of {n} tokens exceeds the model's context of {self.max_length}")

    def score(self, prompts: list[str], continuations: list[list[str]]) -> list[list[float]]:
        seqs, want, targets, owner = [], [], [], []
        for pi, (prompt, conts) in enumerate(zip(prompts, continuations, strict=True)):
            for ci, cont in enumerate(conts):
                ctx, cont2 = split_context(prompt, cont)
                ctx_ids, cont_ids = self._prompt_ids(ctx), self.tokenize(cont2)
                if not cont_ids:
                    raise SelfteachError(f"empty continuation {cont!r}")
                seq = ctx_ids + cont_ids
                self._check_length(len(seq))
                seqs.append(seq)
                want.append(list(range(len(ctx_ids) - 1, len(seq) - 1)))
                targets.append(cont_ids)
                owner.append((pi, ci))
        rows = self._forward_logprobs(seqs, want)
        result = [[0.0] * len(c) for c in continuations]
        for (pi, ci), lp, tgt in zip(owner, rows, targets, strict=True):
            result[pi][ci] = float(lp[torch.arange(len(tgt)), torch.tensor(tgt)].sum())
        return result

    def next_token_logprobs(self, prompts: list[str]) -> list[torch.Tensor]:
        """Full next-token log-prob vectors (vocab-sized) after each prompt."""
        seqs = [self._prompt_ids(p) for p in prompts]
        for s in seqs:
            self._check_length(len(s))
        rows = self._forward_logprobs(seqs, [[len(s) - 1] for s in seqs])
        return [r[0] for r in rows]

    def label_logprobs(self, prompts: list[str], labels: dict[str, list[str]]) -> list[dict[str, float]]:
        single: dict[str, list[int]] = {}
        multi: dict[str, list[str]] = {}
        for label, variants in labels.items():
            ids: list[int] = []
            for v in variants:
                toks = self.tokenize(v)
                if len(toks) == 1:
                    if toks[0] not in ids:
                        ids.append(toks[0])
                else:
                    multi.setdefault(label, []).append(v)
            single[label] = ids
        dists = self.next_token_logprobs(prompts)
        out = []
        for d in dists:
            out.append({lab: float(torch.logsumexp(d[ids], 0)) if ids else -math.inf for lab, ids in single.items()})
        if multi:  # variants that span several tokens are scored in full and added
            names = [(lab, v) for lab, vs in multi.items() for v in vs]
            scores = self.score(prompts, [[v for _, v in names]] * len(prompts))
            for row, srow in zip(out, scores, strict=True):
                for (lab, _), s in zip(names, srow, strict=True):
                    row[lab] = float(torch.logaddexp(torch.tensor(row[lab]), torch.tensor(s)))
        return out

    def top_logprobs(self, prompts: list[str], k: int = 20) -> list[dict[str, float]]:
        out = []
        for d in self.next_token_logprobs(prompts):
            vals, idx = torch.topk(d, k)
            out.append({self.tokenizer.decode([int(i)]): float(v) for v, i in zip(vals, idx, strict=True)})
        return out

    # ---- generation -------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[list[Generation]]:
        seqs = [self._prompt_ids(p) for p in prompts]
        for s in seqs:
            self._check_length(len(s) + params.max_new_tokens)
        results: list[list[Generation]] = [[] for _ in prompts]
        per_batch = max(1, self.batch_size // params.n)
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
        for start in range(0, len(order), per_batch):
            batch = order[start : start + per_batch]
            gens = self._generate_batch([seqs[i] for i in batch], params)
            for i, g in zip(batch, gens, strict=True):
                results[i] = g
        return results

    def _generate_batch(self, seqs: list[list[int]], params: SamplingParams) -> list[list[Generation]]:
        pad = self.tokenizer.pad_token_id
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):  # left padding
            ids[r, width - len(s):] = torch.tensor(s)
            mask[r, width - len(s):] = 1
        if params.seed is not None:
            torch.manual_seed(params.seed)
        out = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                  num_return_sequences=params.n, **self._generate_kwargs(params))
        self.usage.calls += 1
        self.usage.prompt_tokens += int(mask.sum()) * params.n
        new = out[:, width:].cpu().tolist()
        gens: list[list[Generation]] = []
        for r in range(len(seqs)):
            gens.append([self._finish(new[r * params.n + j], params) for j in range(params.n)])
        self.usage.generated_tokens += sum(g.num_tokens for row in gens for g in row)
        return gens

    def _generate_kwargs(self, params: SamplingParams) -> dict:
        """`model.generate` arguments for `params` (greedy or temperature/top-p sampling;
        stop strings through criteria built once per stop set)."""
        kwargs = dict(max_new_tokens=params.max_new_tokens, do_sample=params.temperature > 0,
                      pad_token_id=self.tokenizer.pad_token_id,
                      eos_token_id=self.model.generation_config.eos_token_id or self.tokenizer.eos_token_id)
        if params.temperature > 0:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs.update(stopping_criteria=self._stop_criteria(tuple(params.stop)))
        return kwargs

    def _finish(self, ids: list[int], params: SamplingParams) -> Generation:
        """Cut at EOS/padding and at the first stop string; report why it ended."""
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) | {self.tokenizer.eos_token_id}
        reason = "length"
        for j, t in enumerate(ids):
            if t in eos_ids:
                ids, reason = ids[:j], "stop"
                break
        text = self.detokenize(ids)
        if params.stop:
            cut = min((text.find(s) for s in params.stop if s in text), default=-1)
            if cut >= 0:
                text, reason = text[:cut], "stop"
                # keep the shortest token prefix that still covers the kept text (binary search:
                # decoded length grows with the prefix)
                lo, hi = 0, len(ids)
                while lo < hi:
                    mid = (lo + hi) // 2
                    if len(self.detokenize(ids[:mid])) >= len(text):
                        hi = mid
                    else:
                        lo = mid + 1
                ids = ids[:lo]
        return Generation(text=text, token_ids=ids, finish_reason=reason)

    # ---- anytime evaluation: forced answers from a shared prefix ----------------------
    # Additive block for selfteach.evaluate.anytime (issue 7); nothing above depends on it.
    # AnytimeReasoner (arXiv 2505.13438) / arXiv 2601.11038 protocol: one trace, many
    # truncation points, each continued with the same forced-answer suffix. Re-running the
    # trace per budget would cost T generations; here the trace is prefilled once and every
    # truncation reuses its KV cache, so only the suffix and the short answers are computed.
    def _full_attention_only(self) -> bool:
        cfg = self.model.config.get_text_config(decoder=True)
        types = getattr(cfg, "layer_types", None)
        return not getattr(cfg, "sliding_window", None) or (types is not None and set(types) == {"full_attention"})

    @torch.inference_mode()
    def generate_from_shared_prefix(self, prefixes: list[list[int]], cuts: list[list[int]], suffix: list[int],
                                    params: SamplingParams) -> list[list[Generation]]:
        """Continue `prefixes[i][:c] + suffix` for every cut `c` in `cuts[i]`.

        Each prefix is run through the model once; the continuations for all its cuts are
        batched and start from slices of that KV cache (left-padded to a common length), so
        the cost is one prefill per prefix plus the suffix and the answers. Returns
        `out[i][j]`, one `Generation` for `cuts[i][j]` (`params.n` must be 1). Models with
        sliding-window layers fall back to plain `generate` on the token ids.
        """
        from transformers import DynamicCache

        if params.n != 1:
            raise SelfteachError("generate_from_shared_prefix: params.n must be 1")
        for i, (p, cs) in enumerate(zip(prefixes, cuts, strict=True)):
            if any(not 1 <= c <= len(p) for c in cs):
                raise SelfteachError(f"generate_from_shared_prefix: cut out of range 1..{len(p)} for prefix {i}")
        if not self._full_attention_only():
            flat = self.generate([list(p[:c]) + list(suffix) for p, cs in zip(prefixes, cuts, strict=True)
                                  for c in cs], params)
            it = iter(flat)
            return [[next(it)[0] for _ in cs] for cs in cuts]
        fulls, offs = [], []
        for p, cs in zip(prefixes, cuts, strict=True):
            full = self._prompt_ids(list(p))  # may prepend BOS: cuts shift by the same offset
            off = len(full) - len(p)
            fulls.append(full[: max(cs, default=0) + off])
            offs.append(off)
            self._check_length(len(fulls[-1]) + len(suffix) + params.max_new_tokens)
        kv = self._prefill_kv(fulls)
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
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start : start + self.batch_size]
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
            for r, (i, _, keep, t) in enumerate(batch):  # left padding, as in _generate_batch
                ids[r, width - keep: width] = torch.tensor(fulls[i][:keep], dtype=torch.long)
                ids[r, width:] = torch.tensor(t, dtype=torch.long)
                mask[r, width - keep:] = 1
            cache = DynamicCache(ddp_cache_data=layers, config=self.model.config)
            if params.seed is not None:
                torch.manual_seed(params.seed)
            gen = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                      past_key_values=cache, **self._generate_kwargs(params))
            self.usage.calls += 1
            self.usage.prompt_tokens += tail * len(batch)
            self.usage.extra["cached_prompt_tokens"] = (self.usage.extra.get("cached_prompt_tokens", 0)
                                                        + sum(r[2] for r in batch))
            new = gen[:, width + tail:].cpu().tolist()
            for r, (i, j, _, _) in enumerate(batch):
                g = self._finish(new[r], params)
                self.usage.generated_tokens += g.num_tokens
                out[i][j] = g
        return out  # type: ignore[return-value]

    def _stop_criteria(self, stop: tuple[str, ...]):
        """Stop-string criteria built once per stop set: building them scans the whole
        vocabulary (1-4 s on CPU per `generate` call with `stop_strings=`)."""
        from transformers import StoppingCriteriaList, StopStringCriteria

        cache = self.__dict__.setdefault("_stop_criteria_cache", {})
        if stop not in cache:
            cache[stop] = StoppingCriteriaList([StopStringCriteria(self.tokenizer, list(stop))])
        return cache[stop]

    def _prefill_kv(self, seqs: list[list[int]]) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
        """One forward pass per batch of sequences (right-padded); per sequence and layer the
        (keys, values) of its real tokens, shaped [heads, len, head_dim]."""
        from transformers import DynamicCache

        out: list = [None] * len(seqs)
        for batch in self._batches([len(s) for s in seqs]):
            ids, mask = self._right_padded([seqs[i] for i in batch])
            cache = DynamicCache(config=self.model.config)
            self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device), past_key_values=cache,
                       use_cache=True, logits_to_keep=1)
            self.usage.calls += 1
            self.usage.prompt_tokens += int(mask.sum())
            for r, i in enumerate(batch):
                n = len(seqs[i])
                out[i] = [(layer.keys[r, :, :n].clone(), layer.values[r, :, :n].clone()) for layer in cache.layers]
        return out

    # ==== ICM (selfteach.elicit): last-position scoring and shared-prefix KV reuse =========
    # Additive block for label elicitation. `label_logprobs` above computes the LM head at
    # every position, which for a 262k-vocabulary model (Gemma 3) costs more than the
    # transformer itself; ICM only needs the next-token distribution after each prompt.
    # `label_logprobs_shared_prefix` reads a long shared context once (use_cache) and scores
    # many short suffixes against copies of its KV cache, so a context of |D| few-shot
    # examples is paid for once instead of once per scored example.

    def _icm_label_ids(self, labels: dict[str, list[str]]) -> dict[str, list[int]] | None:
        """Ids of the variants of each label that are one token for this tokenizer (" True",
        "True", " true", ...; all of them are summed). Variants that span several tokens
        (" TRUE" in some vocabularies) are left out here: scoring them needs a forward pass
        per variant and their mass is negligible. None when a label has no one-token
        variant (callers then fall back to `label_logprobs`)."""
        out: dict[str, list[int]] = {}
        for label, variants in labels.items():
            ids: list[int] = []
            for v in variants:
                toks = self.tokenize(v)
                if len(toks) == 1 and toks[0] not in ids:
                    ids.append(toks[0])
            if not ids:
                return None
            out[label] = ids
        return out

    def _icm_head(self, hidden: torch.Tensor, label_ids: dict[str, list[int]]) -> list[dict[str, float]]:
        """Log of the summed probability of each label's variants, from last hidden rows."""
        lp = torch.log_softmax(self._head(hidden), dim=-1).cpu()
        return [{lab: float(torch.logsumexp(row[ids], 0)) for lab, ids in label_ids.items()} for row in lp]

    @torch.inference_mode()
    def _icm_run(self, seqs: list[list[int]], label_ids: dict[str, list[int]], past=None,
                 past_len: int = 0) -> list[dict[str, float]]:
        """Right-padded batches through the decoder (optionally after a cached prefix of
        `past_len` tokens, copied per batch); label log-probs after each sequence's last token."""

        decoder = self.model.get_decoder()
        pad = self.tokenizer.pad_token_id
        out: list[dict[str, float] | None] = [None] * len(seqs)
        # batches are capped by max_batch_tokens counting the prefix, which bounds the
        # memory of the per-batch copies of the cache as well
        for batch in self._batches([len(s) + past_len for s in seqs]):
            self._icm_run_batch(decoder, seqs, batch, label_ids, past, past_len, pad, out)
        return out  # type: ignore[return-value]

    def _icm_run_batch(self, decoder, seqs, batch, label_ids, past, past_len, pad, out) -> None:
        import copy

        width = max(len(seqs[i]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
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
        hidden = decoder(input_ids=ids.to(self.device), attention_mask=mask.to(self.device), **kwargs).last_hidden_state
        self.usage.calls += 1
        self.usage.prompt_tokens += sum(len(seqs[i]) for i in batch)
        last = hidden[torch.arange(len(batch)), torch.tensor([len(seqs[i]) - 1 for i in batch])]
        for i, row in zip(batch, self._icm_head(last, label_ids), strict=True):
            out[i] = row

    def label_logprobs_last(self, prompts: list[str], labels: dict[str, list[str]]) -> list[dict[str, float]]:
        """Same result as `label_logprobs`, computing the LM head at the last position only."""
        label_ids = self._icm_label_ids(labels)
        if label_ids is None:
            return self.label_logprobs(prompts, labels)
        seqs = [self._prompt_ids(p) for p in prompts]
        for s in seqs:
            self._check_length(len(s))
        return self._icm_run(seqs, label_ids)

    @torch.inference_mode()
    def _icm_prefix_cache(self, prefix_ids: list[int]):
        """KV cache of a prefix, kept in a small LRU (ICM reuses a few contexts many times)."""
        store = self.__dict__.setdefault("_icm_prefix_store", {})
        key = tuple(prefix_ids)
        if key in store:
            store[key] = store.pop(key)  # most recently used last
            self.usage.extra["reused_prefix_tokens"] = self.usage.extra.get("reused_prefix_tokens", 0) + len(key)
            return store[key]
        out = self.model.get_decoder()(input_ids=torch.tensor([prefix_ids], device=self.device), use_cache=True)
        self.usage.calls += 1
        self.usage.prompt_tokens += len(prefix_ids)
        store[key] = out.past_key_values
        while len(store) > int(self.__dict__.get("icm_prefix_cache_size", 8)):
            store.pop(next(iter(store)))
        return store[key]

    def clear_prefix_cache(self) -> None:
        """Drop the cached prefix KV states (they hold memory)."""
        self.__dict__.pop("_icm_prefix_store", None)

    def label_logprobs_shared_prefix(self, prefix: str, suffixes: list[str],
                                     labels: dict[str, list[str]]) -> list[dict[str, float]]:
        """`label_logprobs([prefix + s for s in suffixes], labels)`, reading `prefix` once.

        The prefix is tokenised on its own (end it at a token boundary such as "\\n\\n"),
        its KV cache is computed once (and kept in a small LRU keyed by its tokens, so
        repeated calls with the same context cost only the suffixes), copied for each
        batch of suffixes, and only the last position of each suffix goes through the LM
        head. Usage counts the prefix tokens once and every suffix token.
        """
        label_ids = self._icm_label_ids(labels)
        if label_ids is None or not prefix:
            return (self.label_logprobs_last if label_ids is not None else self.label_logprobs)(
                [prefix + s for s in suffixes], labels)
        prefix_ids = self._prompt_ids(prefix)
        seqs = [self.tokenize(s) for s in suffixes]
        for s in seqs:
            if not s:
                raise SelfteachError("label_logprobs_shared_prefix: empty suffix")
            self._check_length(len(prefix_ids) + len(s))
        past = self._icm_prefix_cache(prefix_ids)
        return self._icm_run(seqs, label_ids, past=past, past_len=len(prefix_ids))
