"""Table of `selfteach elicit --baselines` runs with 95% bootstrap intervals (issue 12).

    python -m benchmarks.icm_families runs/ev/capitals-hf runs/ev/authors-hf ...

Reads each run directory's icm_result.json (per-claim baseline labels and scores) and
labels.jsonl (ICM labels and final-context margins). Intervals resample *subjects*
(claim groups), since the two or more claims of one subject are not independent; the last
columns are the paired differences ICM - zero-shot and ICM - (zero-shot + rule) over the
same resamples.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from selfteach.stats import auroc, percentile_interval

ROWS = [
    ("zero-shot", "zero_shot"),
    ("zero-shot + rule", "zero_shot_rule"),
    ("random few-shot", "random_fewshot"),
    ("ICM", "icm"),
    ("golden", "golden"),
    ("golden + rule", "golden_rule"),
]


def _load(run: Path) -> tuple[list[bool], list[str], dict[str, dict[str, list]], dict]:
    res = json.loads((run / "icm_result.json").read_text())
    rows = [json.loads(x) for x in (run / "labels.jsonl").read_text().splitlines()]
    gold = [bool(r["gold"]) for r in rows]
    groups = [r["group"] or r["id"] for r in rows]
    per = {
        k: {"labels": v["labels"], "scores": v["scores"]}
        for k, v in res["baselines"].items()
        if "labels" in v
    }
    per["icm"] = {"labels": [r["label"] for r in rows], "scores": [r["margin"] for r in rows]}
    return gold, groups, per, res["metrics"]


def _stats(gold, idx, per) -> dict[str, tuple[float, float | None]]:
    g = [gold[i] for i in idx]
    out = {}
    for k, v in per.items():
        acc = float(np.mean([v["labels"][i] == gold[i] for i in idx]))
        au = auroc([v["scores"][i] for i in idx], g)
        out[k] = (acc, None if np.isnan(au) else au)
    return out


def _ci(draws) -> tuple[float, float]:
    lo, hi = percentile_interval(draws)
    return round(lo, 3), round(hi, 3)


def table(run: Path, n_boot: int = 2000, seed: int = 0) -> dict:
    gold, groups, per, metrics = _load(run)
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    keys = list(members)
    point = _stats(gold, range(len(gold)), per)
    rng = np.random.default_rng(seed)
    boots: dict[str, list] = {k: [] for k in per}
    for _ in range(n_boot):
        idx = [i for g in rng.choice(len(keys), len(keys)) for i in members[keys[g]]]
        for k, v in _stats(gold, idx, per).items():
            boots[k].append(v)
    out = {
        "run": str(run),
        "claims": len(gold),
        "subjects": len(keys),
        "steps": metrics["steps"],
        "seconds": metrics["seconds"],
        "warnings": metrics["warnings"],
        "balance": metrics["balance"],
        "acceptance": metrics["acceptance"],
        "I": metrics["I"],
    }
    for k in per:
        accs = np.array([b[0] for b in boots[k]])
        aus = np.array([b[1] for b in boots[k] if b[1] is not None])
        out[k] = {
            "acc": point[k][0],
            "acc_ci": _ci(accs),
            "auroc": point[k][1],
            "auroc_ci": _ci(aus),
        }
    for base in ("zero_shot", "zero_shot_rule"):
        if base in per:
            d = np.array([a[0] - b[0] for a, b in zip(boots["icm"], boots[base], strict=True)])
            out[f"icm_minus_{base}"] = (round(point["icm"][0] - point[base][0], 3),
                                        _ci(d))
    return out


def markdown_row(t: dict) -> str:
    cells = []
    for _, k in ROWS:
        if k in t:
            cells.append(f"{t[k]['acc']:.3f} [{t[k]['acc_ci'][0]:.2f}, {t[k]['acc_ci'][1]:.2f}] / "
                         f"{t[k]['auroc']:.2f}")
        else:
            cells.append("-")
    d = t.get("icm_minus_zero_shot_rule")
    cells.append("-" if d is None else f"{d[0]:+.3f} [{d[1][0]:+.2f}, {d[1][1]:+.2f}]")
    return "| " + " | ".join(cells) + f" | {t['steps']} | {t['seconds']:.0f} s |"


def main(argv: list[str]) -> None:
    print(
        "| run | " + " | ".join(n for n, _ in ROWS) + " | ICM - (zero-shot + rule) | steps | time |"
    )
    for a in argv:
        t = table(Path(a))
        print(f"| {Path(a).name} " + markdown_row(t))
        print(
            json.dumps({k: t[k] for k in ("warnings", "balance", "acceptance", "I")}),
            file=sys.stderr,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
