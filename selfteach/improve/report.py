"""summary.json and plots of an `improve` run, for `selfteach report RUN_DIR`.

Tables: accuracy of base / ICM+DPO (per round) / GRPO(gold) / SFT variants with bootstrap
intervals and the paired difference to base; ICM label quality per round (accuracy vs gold
where gold exists, label balance, pairs). Plots: accuracy with intervals, and each
trainer's curves (copied to the top level, where the report looks for PNGs).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from selfteach.runs import RunDir

METHOD_NAMES = {
    "base": "base model",
    "grpo": "GRPO (gold-answer reward)",
    "sft-icm": "SFT on ICM-True candidates",
    "sft-gold": "SFT on gold (solutions or gold-verified candidates)",
}


def _ci(x: dict | None) -> str:
    if not x or x.get("mean") is None or (isinstance(x["mean"], float) and math.isnan(x["mean"])):
        return "-"
    return f"{x['mean']:.3f} [{x['lo']:.3f}, {x['hi']:.3f}]"


def _signed(x: dict | None) -> str:
    if not x or x.get("n", 0) == 0:
        return "-"
    return f"{x['mean']:+.3f} [{x['lo']:+.3f}, {x['hi']:+.3f}]"


def method_name(key: str) -> str:
    if key.startswith("icm-dpo-r"):
        return f"ICM+DPO round {key.removeprefix('icm-dpo-r')}"
    return METHOD_NAMES.get(key, key)


def write_summary(
    run: RunDir,
    cfg,
    train,
    evals,
    rounds: list[dict],
    results: dict[str, dict],
    compare,
    skipped: dict[str, str] | None = None,
) -> dict:
    base = results["base"]
    k = base.get("k", 1)
    acc_rows = []
    for key, res in results.items():
        tr = res.get("train", {})
        if key.startswith("icm-dpo-r"):
            rec = rounds[int(key.removeprefix("icm-dpo-r")) - 1]
            labels = "none (ICM labels" + (f" from {cfg.label_model})" if cfg.label_model else ")")
            n_train = f"{rec['pairs']['pairs']} pairs"
        elif key == "base":
            labels, n_train = "-", "-"
        else:
            labels = {
                "grpo": "gold answers",
                "sft-icm": "none (ICM labels)",
                "sft-gold": "gold answers",
            }[key]
            n_train = f"{tr.get('examples', '-')} {'prompts' if key == 'grpo' else 'examples'}"
        acc_rows.append(
            [
                method_name(key),
                labels,
                n_train,
                _ci(res["greedy"]),
                "-" if key == "base" else _signed(compare(base, res, 0)),
                _ci(res.get("maj")),
                "-" if key == "base" or "maj" not in res else _signed(compare(base, res, 1)),
            ]
        )
    columns = [
        "method",
        "labels used",
        "trained on",
        "greedy accuracy",
        "greedy vs base",
        f"maj@{k}",
        f"maj@{k} vs base",
    ]
    if k == 1:  # greedy only: no maj@k columns
        columns, acc_rows = columns[:5], [r[:5] for r in acc_rows]
    tables = [
        {
            "name": f"Accuracy on {len(evals)} held-out problems "
            "(95% bootstrap intervals; deltas are paired)",
            "columns": columns,
            "rows": acc_rows,
        }
    ]
    label_rows = []
    for rec in rounds:
        la, p, d = rec.get("icm_label_accuracy"), rec["pairs"], rec["diversity"]
        label_rows.append(
            [
                rec["round"],
                rec.get("labeler_name", Path(str(rec["labeler"])).name),
                d.get("candidates"),
                f"{d.get('mean_distinct_answers', 0):.2f}",
                "-"
                if d.get("share_problems_right_and_wrong") is None
                else f"{d['share_problems_right_and_wrong']:.2f}",
                "-" if d.get("candidate_accuracy") is None else f"{d['candidate_accuracy']:.3f}",
                _ci(la["accuracy"]) if la else "- (no gold)",
                f"{p['labeled_true']}/{p['labeled']}",
                "-" if la is None else f"{la['gold_true_share']:.2f}",
                p["pairs"],
                f"{p['pairs_correct_order']}/{p['pairs_with_gold']}"
                if p["pairs_with_gold"]
                else "-",
            ]
        )
    tables.append(
        {
            "name": "ICM labels and pairs per round (gold used for reporting only)",
            "columns": [
                "round",
                "labeler",
                "candidates",
                "distinct answers / problem",
                "problems with right and wrong",
                "candidate accuracy",
                "ICM label accuracy vs gold",
                "labeled True",
                "gold True share",
                "pairs",
                "pairs with correct > wrong",
            ],
            "rows": label_rows,
        }
    )
    notes = [
        f"model {cfg.model}"
        + (f", labels from {cfg.label_model}" if cfg.label_model else "")
        + f"; {len(train)} training problems, {len(evals)} eval problems from "
        f"{cfg.eval_problems or cfg.problems}",
        f"candidates: {cfg.samples} per problem over temperatures {cfg.temperatures}, "
        f"max {cfg.max_new_tokens} new tokens; pairs capped at {cfg.pairs_per_problem} per problem",
        f"DPO: beta {cfg.dpo.beta}, lr {cfg.dpo.learning_rate}, {cfg.dpo.epochs} epochs, "
        f"{'LoRA' if cfg.dpo.lora else 'full fine-tuning'}; GRPO: loss {cfg.grpo.loss_type}, "
        f"lr {cfg.grpo.learning_rate}, same problems and samples per problem; "
        f"SFT: NLL, lr {cfg.sft_learning_rate}",
        "greedy = temperature 0"
        + (
            f"; maj@{k} = majority of {k} samples at temperature {cfg.eval_temperature}"
            if k > 1
            else ""
        ),
    ]
    for name, why in (skipped or {}).items():
        notes.append(f"baseline {method_name(name)} not trained: {why}")
    for rec in rounds:
        if rec.get("relabeled"):
            notes.append(
                f"round {rec['round']}: ICM labeled every candidate one class (accuracy vs gold "
                f"{rec['icm'].get('accuracy')}); labels were re-split at the median ICM margin "
                "(--on-one-class margin-median); the label accuracy above is of the re-split labels"
            )
        if rec.get("icm"):
            short = {
                k2: v for k2, v in rec["icm"].items() if isinstance(v, int | float | str | bool)
            }
            notes.append(f"round {rec['round']} ICM metrics: {short}")
    summary = {
        "title": f"selfteach improve: {cfg.model} on {cfg.problems}",
        "tables": tables,
        "notes": notes,
    }
    run.write_json("summary.json", summary)
    run.write_json("results.json", {key: {k2: v for k2, v in res.items() if k2 != "items"}
                                    for key, res in results.items()})
    _plot_accuracy(run.path / "accuracy.png", results, k)
    _copy_curves(run.path, rounds, results)
    return summary


def _plot_accuracy(path: Path, results: dict[str, dict], k: int) -> None:
    from selfteach.report.plots import plot_bars

    names = list(results)
    plot_bars(path, [method_name(n) for n in names],
              {label: [results[n].get(metric) for n in names]
               for metric, label in (("greedy", "greedy"), ("maj", f"maj@{k}"))},
              "accuracy", "held-out accuracy (95% bootstrap CI)")


def _copy_curves(root: Path, rounds: list[dict], results: dict[str, dict]) -> None:
    for rec in rounds:
        src = root / f"round{rec['round']}" / "dpo" / "train_curves.png"
        if src.exists():
            shutil.copyfile(src, root / f"curves_dpo_round{rec['round']}.png")
    for name in ("grpo", "sft-icm", "sft-gold"):
        for fname in ("train_curves.png", "diagnostics.png"):
            src = root / "baselines" / name / fname
            if src.exists():
                shutil.copyfile(src, root / f"curves_{name}.png")
                break
