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

from selfteach.backends import hf_prefix
from selfteach.backends.base import (
    Backend,
    ChatTemplate,
    ContextLimit,
    Generation,
    HiddenStates,
    LastTokenScoring,
    OnDevice,
    PrefixGeneration,
    PrefixScoring,
    Prompt,
    SamplingParams,
    TokenContinuation,
    Usage,
)
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


class HFBackend(
    Backend,
    TokenContinuation,
    PrefixGeneration,
    PrefixScoring,
    LastTokenScoring,
    HiddenStates,
    ChatTemplate,
    ContextLimit,
    OnDevice,
):
    """`Backend` over a transformers causal LM, with every optional capability of
    `selfteach.backends.base` (the shared-prefix ones live in `selfteach.backends.hf_prefix`)."""

    continues_token_prompts = True  # `TokenContinuation`: token-id prompts are continued exactly

    def __init__(
        self,
        model: str = "smollm2-135m",
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int = 16,
        max_batch_tokens: int = 16384,
        model_obj=None,
        tokenizer=None,
    ):
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
                raise SelfteachError(
                    f"model {model!r}: cannot load ({str(e).splitlines()[0]})"
                ) from None
            self.model.to(self.device)
        self.model.eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.max_length = int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)
        # label_logprobs_shared_prefix's contexts
        self.prefix_cache = hf_prefix.PrefixKVCache(size=8)

    # ---- tokens -----------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def _prompt_ids(self, prompt: Prompt) -> list[int]:
        ids = list(prompt) if isinstance(prompt, list) else self.tokenize(prompt)
        bos = self.tokenizer.bos_token_id
        # Models trained with a BOS token (Gemma) degrade badly without it.
        if (
            bos is not None
            and getattr(self.tokenizer, "add_bos_token", False)
            and (not ids or ids[0] != bos)
        ):
            ids = [bos] + ids
        return ids

    @property
    def chat_template(self) -> str | None:
        return getattr(self.tokenizer, "chat_template", None) or None

    def chat_prompt(self, user: str, system: str | None = None) -> str:
        if not self.chat_template:
            return user
        msgs = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": user}
        ]
        return self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)

    # ---- scoring ----------------------------------------------------------------------
    def _batches(self, lengths: list[int]) -> Iterator[list[int]]:
        """Index batches, longest first, capped by batch_size and padded-token budget."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        batch: list[int] = []
        for i in order:
            if batch and (
                len(batch) >= self.batch_size
                or lengths[batch[0]] * (len(batch) + 1) > self.max_batch_tokens
            ):
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
            raise SelfteachError(
                f"prompt of {n} tokens exceeds the model's context of {self.max_length}"
            )

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

    def label_logprobs(
        self, prompts: list[str], labels: dict[str, list[str]]
    ) -> list[dict[str, float]]:
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
            out.append(
                {
                    lab: float(torch.logsumexp(d[ids], 0)) if ids else -math.inf
                    for lab, ids in single.items()
                }
            )
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
            out.append(
                {self.tokenizer.decode([int(i)]): float(v) for v, i in zip(vals, idx, strict=True)}
            )
        return out

    # ---- generation -------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, prompts: Sequence[Prompt],
                 params: SamplingParams) -> list[list[Generation]]:
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

    def _generate_batch(
        self, seqs: list[list[int]], params: SamplingParams
    ) -> list[list[Generation]]:
        pad = self.tokenizer.pad_token_id
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):  # left padding
            ids[r, width - len(s):] = torch.tensor(s)
            mask[r, width - len(s):] = 1
        if params.seed is not None:
            torch.manual_seed(params.seed)
        out = self.model.generate(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            num_return_sequences=params.n,
            **self._generate_kwargs(params),
        )
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
        kwargs = dict(
            max_new_tokens=params.max_new_tokens,
            do_sample=params.temperature > 0,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.model.generation_config.eos_token_id or self.tokenizer.eos_token_id,
        )
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

    def _stop_criteria(self, stop: tuple[str, ...]):
        """Stop-string criteria built once per stop set: building them scans the whole
        vocabulary (1-4 s on CPU per `generate` call with `stop_strings=`)."""
        from transformers import StoppingCriteriaList, StopStringCriteria

        cache = self.__dict__.setdefault("_stop_criteria_cache", {})
        if stop not in cache:
            cache[stop] = StoppingCriteriaList([StopStringCriteria(self.tokenizer, list(stop))])
        return cache[stop]

    @torch.inference_mode()
    def hidden_states(self, seqs: list[list[int]], batch_size: int = 8) -> list[torch.Tensor]:
        """`HiddenStates`: final hidden states of the base model per token sequence, [len, hidden]
        float32 on the CPU (right-padded batches of `batch_size`)."""
        out: list[torch.Tensor] = []
        for start in range(0, len(seqs), batch_size):
            batch = seqs[start : start + batch_size]
            ids, mask = self._right_padded(batch)
            h = self.model.base_model(input_ids=ids.to(self.device),
                                      attention_mask=mask.to(self.device)).last_hidden_state.float().cpu()
            self.usage.calls += 1
            self.usage.prompt_tokens += int(mask.sum())
            out += [h[r, : len(s)] for r, s in enumerate(batch)]
        return out

    # ---- shared-prefix KV-cache reuse: selfteach.backends.hf_prefix --------------------
    def generate_from_shared_prefix(
        self,
        prefixes: list[list[int]],
        cuts: list[list[int]],
        suffix: list[int],
        params: SamplingParams,
    ) -> list[list[Generation]]:
        """`PrefixGeneration`: see `hf_prefix.generate_from_shared_prefix`."""
        return hf_prefix.generate_from_shared_prefix(self, prefixes, cuts, suffix, params)

    def label_logprobs_last(
        self, prompts: list[str], labels: dict[str, list[str]]
    ) -> list[dict[str, float]]:
        """`LastTokenScoring`: see `hf_prefix.label_logprobs_last`."""
        return hf_prefix.label_logprobs_last(self, prompts, labels)

    def label_logprobs_shared_prefix(self, prefix: str, suffixes: list[str],
                                     labels: dict[str, list[str]]) -> list[dict[str, float]]:
        """`PrefixScoring`: see `hf_prefix.label_logprobs_shared_prefix`."""
        return hf_prefix.label_logprobs_shared_prefix(self, prefix, suffixes, labels)

    def clear_prefix_cache(self) -> None:
        """Drop the cached prefix KV states (they hold memory)."""
        self.prefix_cache.clear()
