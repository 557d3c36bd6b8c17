"""Cost of anytime evaluation: 8 budgets from one trace vs regenerating per budget.

Requirement (issue 7, docs/methods.md s.5): evaluating T = 8 budgets must cost at most
1.5x one full generation (the trace to the largest budget). Measured in one run on the
same prompts (greedy, SmolLM2-135M, built-in arithmetic problems):

- full:      the trace alone, to b_T (the reference, 1.0x);
- shared KV: the trace + 8 forced answers continued from its KV cache
             (`HFBackend.generate_from_shared_prefix`), what `eval anytime` does;
- token ids: the trace + 8 forced answers from re-read token-id prompts (prefill per
             budget, no decoding of the trace again): what a server without prefix
             caching would do;
- naive:     regenerate the trace to each budget, then force the answer.

Agreement checks that the fast path gives the same answers as the naive one.

Run: `python -m benchmarks.bench_anytime` (or `python -m benchmarks.run_all bench_anytime`).
"""

from __future__ import annotations

import time

BUDGETS = [16, 32, 48, 64, 96, 128, 192, 256]


def main(model: str = "smollm2-135m", n_items: int = 4, budgets: list[int] | None = None,
         answer_tokens: int = 24) -> list[dict]:
    from selfteach.backends.base import SamplingParams
    from selfteach.backends.hf import HFBackend
    from selfteach.data.builtin import builtin_problems
    from selfteach.evaluate.anytime import PLAIN_SUFFIX, build_prompt_ids, force_answers

    budgets = budgets or BUDGETS
    be = HFBackend(model, batch_size=16)
    probs = builtin_problems("arithmetic", n=n_items, seed=1)
    prompts = [build_prompt_ids(be, p.question) for p in probs]
    suffix = be.tokenize(PLAIN_SUFFIX)
    ans = SamplingParams(max_new_tokens=answer_tokens, stop=["\n\n"])
    trace_params = SamplingParams(max_new_tokens=budgets[-1])
    be.generate(prompts[:1], SamplingParams(max_new_tokens=4))  # warm-up

    def timed(fn):
        be.usage.reset()
        t = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - t, be.usage.as_dict()

    traces, t_full, u_full = timed(lambda: [g[0] for g in be.generate(prompts, trace_params)])
    kv, t_kv, u_kv = timed(
        lambda: force_answers(be, prompts, traces, budgets, suffix, ans, shared_prefix=True)
    )
    ids, t_ids, u_ids = timed(
        lambda: force_answers(be, prompts, traces, budgets, suffix, ans, shared_prefix=False)
    )

    def naive():
        out = [[None] * len(budgets) for _ in prompts]
        for j, b in enumerate(budgets):
            tr = [g[0] for g in be.generate(prompts, SamplingParams(max_new_tokens=b))]
            res = force_answers(be, prompts, tr, [b], suffix, ans, shared_prefix=False)
            for i in range(len(prompts)):
                # a trace that ended before b is answered as is, as in the fast path
                out[i][j] = res[i][0].text if res[i][0] is not None else tr[i].text
        return out

    nv, t_naive, u_naive = timed(naive)
    fast = [[a.text if a is not None else traces[i].text for a in row] for i, row in enumerate(kv)]
    agree = sum(
        x == y for r1, r2 in zip(fast, nv, strict=True) for x, y in zip(r1, r2, strict=True)
    )
    total = len(prompts) * len(budgets)
    same_ids = all(a is b or (a is not None and b is not None and a.token_ids == b.token_ids)
                   for r1, r2 in zip(kv, ids, strict=True) for a, b in zip(r1, r2, strict=True))
    forced = sum(a is not None for row in kv for a in row)
    common = (
        f"{len(prompts)} prompts, budgets {','.join(map(str, budgets))}, "
        f"answers <= {answer_tokens} tokens"
    )
    g_full = u_full["generated_tokens"]
    runs = [
        ("full generation (trace to b_T)", t_full, g_full, f"reference; {common}"),
        (
            "8 budgets, shared KV cache",
            t_full + t_kv,
            g_full + u_kv["generated_tokens"],
            f"trace + {forced} forced answers from the KV cache; "
            f"same tokens as the token-id path: {same_ids}",
        ),
        (
            "8 budgets, token-id prompts",
            t_full + t_ids,
            g_full + u_ids["generated_tokens"],
            "trace + forced answers, each prefix re-read (prefill) without a cache",
        ),
        (
            "8 budgets, naive regenerate",
            t_naive,
            u_naive["generated_tokens"],
            f"trace regenerated per budget; answers equal to the shared-KV path: {agree}/{total}",
        ),
    ]
    rows = [
        {
            "name": name,
            "seconds": round(secs, 2),
            "x_full": round(secs / t_full, 2),
            "generated_tokens": gen,
            "note": note,
        }
        for name, secs, gen, note in runs
    ]
    return rows


if __name__ == "__main__":
    from rich.console import Console
    from rich.table import Table

    rows = main()
    table = Table(title="bench_anytime")
    for c in rows[0]:
        table.add_column(c)
    for r in rows:
        table.add_row(*[str(v) for v in r.values()])
    Console().print(table)
