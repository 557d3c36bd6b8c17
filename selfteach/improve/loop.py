"""The self-improvement loop: candidates -> ICM labels -> preference pairs -> DPO, in rounds,
with GRPO(gold) and SFT baselines on the same problems, and a base-vs-improved evaluation.

ICM: Wen et al. 2025, "Unsupervised Elicitation of Language Models", arXiv 2506.10139;
its follow-up applies ICM to a model's own math solutions and trains with DPO (methods.md
section 2). DPO: arXiv 2305.18290. GRPO: arXiv 2402.03300.

Layout of a run directory (every stage is skipped on `--resume` when its output exists):

    config.yaml, env.json, metrics.jsonl        the RunDir basics
    split.json                                  train / eval problem ids
    eval/<model>/outputs.jsonl, result.json     greedy and maj@k per evaluated model
    round1/candidates.jsonl, diversity.json     model samples (resumable per problem)
    round1/claims.jsonl, icm/, labels.json      ICM input and output
    round1/pairs.jsonl, pairs_stats.json        TRL prompt/chosen/rejected
    round1/dpo/model/                           the improved model (next round's generator)
    baselines/grpo/, sft-icm/, sft-gold/        baselines trained from the base model
    summary.json, *.png                         what `selfteach report RUN_DIR` renders

Label-free by construction: gold answers are attached to candidates and claims only for
reporting (`correct`, `Claim.gold`); ICM never reads them and the pairs come from ICM
labels alone. GRPO(gold) and SFT(gold) are the supervised references.
"""

from __future__ import annotations

import gc
import json
import random
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from selfteach.backends.base import Backend, LabelReader, ServedProcess
from selfteach.data.jsonl import write_jsonl
from selfteach.data.records import Claim, Problem
from selfteach.errors import SelfteachError
from selfteach.improve.candidates import diversity_stats, generate_candidates
from selfteach.improve.evaluation import compare, evaluate_model
from selfteach.improve.pairs import build_pairs, claims_from_candidates, require_pairs
from selfteach.runs import RunDir
from selfteach.train.dpo import DPOArgs
from selfteach.train.grpo import GRPOArgs
from selfteach.validate import MAX_LR, MAX_SAMPLES, MAX_TEMPERATURE, MAX_TOKENS, Seed

BASELINES = ("grpo", "sft-icm", "sft-gold")
Labeler = Callable[[list[Claim], LabelReader, RunDir], tuple[dict[str, bool], dict]]


class ImproveConfig(BaseModel):
    """Settings of `selfteach improve` (recorded in config.yaml)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str = Field(
        "smollm2-135m", description="model to improve (generates candidates, is trained)"
    )
    label_model: str | None = Field(
        None,
        description="model whose ICM labels train `model` (transfer); "
        "default: the model being improved labels itself",
    )
    problems: str = Field(
        "builtin:arithmetic",
        description="data spec of the problems (answers optional "
        "for training; the eval split needs them)",
    )
    eval_problems: str | None = Field(
        None,
        description="separate eval data spec; default: hold out "
        "`eval_size` problems from `problems`",
    )
    fields: dict[str, str] = Field(default_factory=dict, description="field mapping for JSONL data")
    train_size: int | None = Field(
        None, ge=1, description="use at most this many training problems"
    )
    eval_size: int = Field(
        50, ge=1, description="held-out eval problems (when eval_problems is not given)"
    )
    rounds: int = Field(
        1,
        ge=1,
        le=100,
        description="ICM+DPO rounds; each round's model generates and labels the next",
    )
    samples: int = Field(8, ge=2, le=MAX_SAMPLES, description="candidate solutions per problem")
    temperatures: list[Annotated[float, Field(ge=0, le=MAX_TEMPERATURE)]] = Field(
        [0.3, 0.6, 0.9], min_length=1, description="the samples are spread over these temperatures")
    max_new_tokens: int = Field(
        128, ge=1, le=MAX_TOKENS, description="cap on tokens per candidate and per eval answer"
    )
    gen_batch_size: int = Field(8, ge=1, description="problems per generation batch")
    pairs_per_problem: int = Field(5, ge=1, description="cap on (True, False) pairs per problem")
    on_one_class: Literal["stop", "margin-median"] = Field(
        "stop",
        description="when ICM labels every candidate one class (a known ICM failure mode): "
        "stop with the "
        "counts, or relabel by ICM's own margins, True above the median margin (still label-free)",
    )
    icm: dict[str, Any] = Field(
        default_factory=dict, description="ICMConfig fields (see selfteach.elicit)"
    )
    dpo: DPOArgs = Field(
        default_factory=lambda: DPOArgs(epochs=2, learning_rate=5e-6, batch_size=4),
        description="DPO settings (model is set per round)",
    )
    baselines: list[str] = Field(
        list(BASELINES),
        description="baselines from the base model: grpo (gold-answer "
        "reward), sft-icm (SFT on ICM-True candidates), sft-gold (SFT on gold solutions, "
        "or on gold-verified candidates when the data has none)",
    )
    grpo: GRPOArgs = Field(
        default_factory=lambda: GRPOArgs(learning_rate=1e-6),
        description="GRPO baseline settings; num_generations defaults to `samples` (same "
        "sampling budget as the candidates)",
    )
    grpo_prompts_per_step: int = Field(
        2,
        ge=1,
        description="GRPO baseline: prompts per optimizer step (batch = this x num_generations)",
    )
    sft_learning_rate: float = Field(
        1e-5, gt=0, le=MAX_LR, description="learning rate of the SFT baselines"
    )
    sft_epochs: float = Field(2.0, gt=0, description="epochs of the SFT baselines")
    eval_samples: int = Field(
        4,
        ge=1,
        le=MAX_SAMPLES,
        description="k for maj@k (sampled at eval_temperature); 1 = greedy only",
    )
    eval_temperature: float = Field(
        0.7, ge=0, le=MAX_TEMPERATURE, description="temperature of the maj@k samples"
    )
    seed: Seed = Field(0, description="seed for the split, sampling, pairs and training")
    serve: bool = Field(
        False,
        description="generate, label and evaluate on a llama.cpp server (trained "
        "checkpoints are converted to GGUF and served in turn)",
    )


# ---- labels ------------------------------------------------------------------------------
def icm_labeler(config: dict[str, Any], progress: bool = True) -> Labeler:
    """Label claims with ICM (selfteach.elicit.icm) using the math consistency rule."""

    def label(
        claims: list[Claim], backend: LabelReader, run: RunDir
    ) -> tuple[dict[str, bool], dict]:
        from selfteach.elicit import ICMConfig, icm

        result = icm(
            claims,
            backend,
            task="math",
            config=ICMConfig(**config) if config else None,
            run=run,
            progress=progress,
        )
        return dict(result.labels), {**result.metrics, "margins": dict(result.margins)}

    return label


# ---- the loop ----------------------------------------------------------------------------
def split_problems(cfg: ImproveConfig) -> tuple[list[Problem], list[Problem]]:
    """(train, eval). The eval split must have gold answers; training problems need none."""
    from selfteach.data.loaders import load_problems

    problems = load_problems(cfg.problems, fields=cfg.fields, seed=cfg.seed)
    if cfg.eval_problems:
        train = problems
        evals = load_problems(cfg.eval_problems, fields=cfg.fields, seed=cfg.seed)[: cfg.eval_size]
    else:
        with_gold = [p for p in problems if p.answer is not None]
        if len(with_gold) < cfg.eval_size:
            raise SelfteachError(
                f"{cfg.problems}: the eval split needs {cfg.eval_size} problems with gold answers, "
                f"found {len(with_gold)}; give --eval-problems FILE or a smaller --eval-size"
            )
        order = list(range(len(with_gold)))
        random.Random(cfg.seed).shuffle(order)
        eval_ids = {with_gold[i].id for i in order[: cfg.eval_size]}
        evals = [p for p in problems if p.id in eval_ids]
        train = [p for p in problems if p.id not in eval_ids]
    missing = [p.id for p in evals if p.answer is None]
    if missing:
        raise SelfteachError(
            f"{cfg.eval_problems}: {len(missing)} eval problems have no gold answer (first id "
            f"{missing[0]!r}); the evaluation split needs answers (training problems do not)"
        )
    if cfg.train_size:
        train = train[: cfg.train_size]
    if not train:
        raise SelfteachError(
            f"{cfg.problems}: no training problems left after holding out {len(evals)} for eval"
        )
    return train, evals


class Improver:
    """Runs the stages of one `improve` run directory; each stage is cached for --resume."""

    def __init__(
        self, cfg: ImproveConfig, run: RunDir, labeler: Labeler | None = None, progress: bool = True
    ):
        self.cfg, self.run, self.progress = cfg, run, progress
        self.labeler = labeler or icm_labeler(cfg.icm, progress)
        self._backends: dict[str, Backend] = {}
        self.timings: dict[str, float] = {}

    # backends are cached by model spec; freed when the spec is no longer needed
    def backend(self, spec: str) -> Backend:
        if spec not in self._backends:
            from selfteach.backends import load_backend

            self._backends[spec] = load_backend(spec, serve=self.cfg.serve,
                                                batch_size=max(8, self.cfg.gen_batch_size))
        return self._backends[spec]

    def release(self, keep: Collection[str] = frozenset()) -> None:
        for spec in list(self._backends):
            if spec not in keep:
                backend = self._backends.pop(spec)
                # a served model: stop its server, free its cores
                if isinstance(backend, ServedProcess):
                    backend.close()
        gc.collect()

    def stage(self, name: str, done_file: Path, fn: Callable[[], Any]) -> Any:
        """Run `fn` unless `done_file` exists (resume); log its wall time."""
        if done_file.exists():
            return json.loads(done_file.read_text()) if done_file.suffix == ".json" else None
        t0 = time.time()
        out = fn()
        self.timings[name] = round(time.time() - t0, 1)
        self.run.log_metrics({"event": "stage", "stage": name, "seconds": self.timings[name]})
        return out

    def evaluate(self, name: str, spec: str, problems: list[Problem]) -> dict:
        path = self.run.path / "eval" / name
        done = path / "result.json"

        def go() -> dict:
            res = evaluate_model(
                self.backend(spec),
                problems,
                samples=self.cfg.eval_samples,
                temperature=self.cfg.eval_temperature,
                max_new_tokens=self.cfg.max_new_tokens,
                seed=self.cfg.seed,
                batch_size=self.cfg.gen_batch_size,
                run_path=path,
                progress=self.progress,
            )
            res["model"] = spec
            RunDir(path).write_json("result.json", res)
            return res

        res = self.stage(f"eval {name}", done, go)
        self.run.log_metrics({"event": "eval", "model": name, "greedy": res["greedy"]["mean"],
                              "maj": res.get("maj", {}).get("mean")})
        return res

    def round(self, r: int, train: list[Problem], model_spec: str) -> dict:
        """One ICM+DPO round from `model_spec`; returns the round record (incl. the new model
        dir)."""
        cfg, rdir = self.cfg, self.run.path / f"round{r}"
        rrun = RunDir(rdir)
        rdir.mkdir(parents=True, exist_ok=True)
        label_spec = cfg.label_model or model_spec
        questions = {p.id: p.question for p in train}
        record: dict[str, Any] = {
            "round": r,
            "generator": model_spec,
            "labeler": label_spec,
            "labeler_name": cfg.label_model or (cfg.model if r == 1 else f"round {r - 1} model"),
        }

        cands = (
            generate_candidates(
                self.backend(model_spec),
                train,
                n=cfg.samples,
                temperatures=cfg.temperatures,
                max_new_tokens=cfg.max_new_tokens,
                seed=cfg.seed + r,
                batch_size=cfg.gen_batch_size,
                run=rrun,
                progress=self.progress,
            )
            if not (rdir / "diversity.json").exists()
            else rrun.read("candidates.jsonl")
        )
        record["diversity"] = diversity_stats(cands)
        rrun.write_json("diversity.json", record["diversity"])

        def label() -> dict:
            claims = claims_from_candidates(cands, questions)
            write_jsonl(rdir / "claims.jsonl", claims)
            icm_cfg = {"task": "math", "model": label_spec, **cfg.icm}
            icm_run = RunDir.create(rdir / "icm", icm_cfg, resume=True, seed=cfg.seed)
            labels, metrics = self.labeler(claims, self.backend(label_spec), icm_run)
            out = {"labels": labels, "metrics": metrics}
            rrun.write_json("labels.json", out)
            return out

        labeled = self.stage(f"round{r} icm", rdir / "labels.json", label)
        labels = {k: bool(v) for k, v in labeled["labels"].items()}
        if cfg.on_one_class == "margin-median" and len(set(labels.values())) == 1:
            labels = margin_median_labels(labels, labeled["metrics"].get("margins") or {})
            record["relabeled"] = "margin-median"
        record["icm"] = labeled["metrics"]
        record["icm_label_accuracy"] = _label_accuracy(cands, labels)

        pairs, pstats = build_pairs(cands, labels, cap=cfg.pairs_per_problem, seed=cfg.seed + r)
        record["pairs"] = pstats
        rrun.write_json("pairs_stats.json", pstats)
        write_jsonl(rdir / "pairs.jsonl", pairs)
        require_pairs(pairs, pstats)
        self.run.log_metrics({"event": "pairs", "round": r, **pstats})

        model_dir = rdir / "dpo" / "model"

        def dpo() -> dict:
            from selfteach.train.dpo import train_dpo

            # free memory before training
            self.release(keep={label_spec} if cfg.label_model else set())
            args = cfg.dpo.model_copy(update={"model": model_spec, "seed": cfg.seed})
            res = train_dpo(pairs, args, out=rdir / "dpo", resume=True)  # continues a killed run
            out = {"model_dir": str(res.model_dir), "metrics": res.metrics, "pairs": len(pairs)}
            RunDir(rdir / "dpo").write_json("result.json", out)
            return out

        record["dpo"] = self.stage(f"round{r} dpo", rdir / "dpo" / "result.json", dpo)
        record["model_dir"] = str(model_dir)
        record["candidates"] = cands
        record["labels"] = labels
        return record

    def baseline(self, name: str, train: list[Problem], round1: dict) -> dict | None:
        """A baseline trained from the base model on the same training problems."""
        cfg, bdir = self.cfg, self.run.path / "baselines" / name
        done = bdir / "result.json"

        def go() -> dict | None:
            self.release()
            if name == "grpo":
                from selfteach.train.grpo import train_grpo

                gold = [p for p in train if p.answer is not None]
                if not gold:
                    return {"skipped": "no training problem has a gold answer"}
                g = (
                    cfg.grpo.num_generations
                    if "num_generations" in cfg.grpo.model_fields_set
                    else cfg.samples
                )
                args = cfg.grpo.model_copy(
                    update={
                        "model": cfg.model,
                        "seed": cfg.seed,
                        "num_generations": g,
                        "batch_size": g * cfg.grpo_prompts_per_step,
                        "max_completion_length": cfg.max_new_tokens,
                        "reward": "gold-answer",
                    }
                )
                res = train_grpo(gold, args, out=bdir, resume=True)
                out = {
                    "model_dir": str(res.model_dir),
                    "metrics": res.metrics,
                    "examples": len(gold),
                    "labels": "gold answers (reward)",
                }
            else:
                rows = sft_rows(name, train, round1)
                if not rows:
                    return {"skipped": f"no {name} training examples"}
                from selfteach.train.sft import train_sft

                sft = train_sft(
                    cfg.model,
                    rows,
                    bdir,
                    objective="nll",
                    resume=True,
                    progress=False,
                    learning_rate=cfg.sft_learning_rate,
                    epochs=cfg.sft_epochs,
                    seed=cfg.seed,
                    batch_size=cfg.dpo.batch_size,
                )
                out = {"model_dir": sft["model_dir"], "metrics": sft, "examples": len(rows),
                       "labels": "ICM labels" if name == "sft-icm" else "gold answers"}
            RunDir(bdir).write_json("result.json", out)
            return out

        return self.stage(f"baseline {name}", done, go)


def sft_rows(name: str, train: list[Problem], round1: dict) -> list[dict]:
    """SFT data: ICM-True candidates (label-free), or gold solutions / gold-verified candidates."""
    from selfteach.improve.pairs import is_degenerate

    rows, seen = [], set()
    cands = round1["candidates"]
    if name == "sft-gold":
        prompts = {c["problem_id"]: c["prompt"] for c in cands}
        with_sol = [(p.id, sol) for p in train if (sol := p.solution) and p.id in prompts]
        if with_sol:
            return [{"prompt": prompts[pid], "completion": sol.strip()} for pid, sol in with_sol]
        # rejection sampling with the gold answer (RFT)
        keep = [c for c in cands if c.get("correct")]
    elif name == "sft-icm":
        keep = [c for c in cands if round1["labels"].get(c["id"])]
    else:
        raise SelfteachError(f"--baselines {name!r}: choose from {', '.join(BASELINES)}")
    for c in keep:
        key = (c["problem_id"], c["text"].strip())
        if key in seen or is_degenerate(c["text"]):
            continue
        seen.add(key)
        rows.append({"prompt": c["prompt"], "completion": c["text"].strip()})
    return rows


def margin_median_labels(labels: dict[str, bool], margins: dict[str, float]) -> dict[str, bool]:
    """True where ICM's final margin log P(True) - log P(False) is above the median margin:
    a balanced split by the model's own confidence, used only when ICM's labeling is
    one-class. Ties at the median go to False."""
    if not margins:
        raise SelfteachError("--on-one-class margin-median: the labeler returned no margins")
    ms = sorted(margins[i] for i in labels if i in margins)
    median = ms[len(ms) // 2] if len(ms) % 2 else (ms[len(ms) // 2 - 1] + ms[len(ms) // 2]) / 2
    return {i: margins.get(i, median) > median for i in labels}


def _label_accuracy(cands: list[dict], labels: dict[str, bool]) -> dict | None:
    """ICM labels vs gold correctness (reporting only)."""
    scored = [
        (labels[c["id"]], bool(c["correct"]))
        for c in cands
        if c["id"] in labels and c.get("correct") is not None
    ]
    if not scored:
        return None
    from selfteach.stats import mean_ci

    true_share = sum(lab for lab, _ in scored) / len(scored)
    return {
        "accuracy": mean_ci([float(lab == g) for lab, g in scored]),
        "n": len(scored),
        "labeled_true_share": true_share,
        "gold_true_share": sum(g for _, g in scored) / len(scored),
    }


def run_improve(cfg: ImproveConfig, out: str | Path, resume: bool = False, progress: bool = True,
                labeler: Labeler | None = None) -> dict:
    """Run (or resume) the whole loop; returns the summary dict (also written to summary.json)."""
    for b in cfg.baselines:
        if b not in BASELINES:
            raise SelfteachError(f"--baselines {b!r}: choose from {', '.join(BASELINES)}")
    train, evals = split_problems(cfg)
    run = RunDir.create(out, cfg, resume=resume, seed=cfg.seed)
    run.write_json("split.json", {"train": [p.id for p in train], "eval": [p.id for p in evals]})
    imp = Improver(cfg, run, labeler=labeler, progress=progress)

    results: dict[str, dict] = {"base": imp.evaluate("base", cfg.model, evals)}
    rounds, spec, skipped = [], cfg.model, {}
    for r in range(1, cfg.rounds + 1):
        rec = imp.round(r, train, spec)
        spec = rec["model_dir"]
        imp.release(keep={cfg.label_model} if cfg.label_model else set())
        results[f"icm-dpo-r{r}"] = imp.evaluate(f"icm-dpo-r{r}", spec, evals)
        rounds.append(rec)
    for name in cfg.baselines:
        res = imp.baseline(name, train, rounds[0])
        if res and "model_dir" in res:
            results[name] = imp.evaluate(name, res["model_dir"], evals) | {"train": res}
        elif res:
            skipped[name] = res.get("skipped", "skipped")
    imp.release()
    from selfteach.improve.report import write_summary

    return write_summary(run, cfg, train, evals, rounds, results, compare, skipped)
