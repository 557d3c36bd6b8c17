"""Evidence for issue 2: does the openai backend over a real llama-server reproduce the hf
backend on SmolLM2-135M? The 50 built-in capital claims of tests/test_server_integration.py
(label argmax, largest |log P| gap) and 5 greedy 32-token generations, against the F32
re-encoding of the GGUF and against the original Q4_1 file.

    python -m benchmarks.evidence_backends      # ~2 min on 2 busy cores
"""

from __future__ import annotations

from selfteach.backends.base import DEFAULT_LABEL_VARIANTS, SamplingParams


def main() -> list[dict]:
    from selfteach.backends.hf import HFBackend
    from selfteach.backends.llama_server import LlamaServer
    from selfteach.backends.openai import OpenAIBackend
    from selfteach.data.loaders import load_claims

    claims = load_claims("builtin:capitals", limit=50)
    prompts = [f"Claim: {c.claim}\nI think this claim is" for c in claims]
    hf = HFBackend("smollm2-135m")
    local = hf.label_logprobs(prompts, DEFAULT_LABEL_VARIANTS)
    questions = (
        "What is the capital of France?",
        "Name a color.",
        "Write a haiku about rain.",
        "What is 2 + 3?",
    )
    gen_prompts = [hf.chat_prompt(q) for q in questions] + ["The capital of Italy is"]
    params = SamplingParams(max_new_tokens=32)
    hf_ids = [g[0].token_ids for g in hf.generate(gen_prompts, params)]
    hf_gold = sum((r["True"] > r["False"]) == c.gold for r, c in zip(local, claims, strict=True))
    rows = []
    for f32 in (True, False):
        with LlamaServer("smollm2-135m", f32=f32) as server, OpenAIBackend(server.url) as remote:
            served = remote.label_logprobs(prompts, DEFAULT_LABEL_VARIANTS)
            ids = [g[0].token_ids for g in remote.generate(gen_prompts, params)]
        agree = sum(
            max(a, key=a.get) == max(b, key=b.get) for a, b in zip(local, served, strict=True)
        )
        gap = max(abs(a[k] - b[k]) for a, b in zip(local, served, strict=True) for k in a)
        gold = sum((r["True"] > r["False"]) == c.gold for r, c in zip(served, claims, strict=True))
        rows.append(
            {
                "name": f"hf vs llama-server {'F32' if f32 else 'Q4_1'}",
                "argmax_agree": f"{agree}/50",
                "max_gap_nats": gap,
                "acc_hf": f"{hf_gold}/50",
                "acc_server": f"{gold}/50",
                "greedy_identical": f"{sum(a == b for a, b in zip(hf_ids, ids, strict=True))}/5",
                "note": "label log-probs with DEFAULT_LABEL_VARIANTS; 32-token greedy generations",
            }
        )
    return rows


if __name__ == "__main__":
    from benchmarks.run_all import markdown

    print(markdown(main()))
