"""Zero-shot read-out of fact claims under different label words (issue 12, ICM on 0.5B).

For each built-in family (first 64 claims, as `elicit --limit 64`): zero-shot accuracy,
AUROC of the margin log P(TRUE) - log P(FALSE), zero-shot + rule (exclusive) accuracy, and
the probability mass the two label words get (summed over their variants), for each pair
of label words in the ICM template. One model load; run under the model lock:

    flock /tmp/selfteach-model.lock python -m benchmarks.probe_label_words
"""

from __future__ import annotations

import json
import math
import os
import time

from selfteach.backends import load_backend
from selfteach.data.loaders import load_claims
from selfteach.elicit.rules import make_rule
from selfteach.elicit.search import accuracy, auroc
from selfteach.elicit.templates import Template

FAMILIES = os.environ.get("PROBE_FAMILIES", "capitals,authors,elements")
WORDS = [("True", "False"), ("correct", "incorrect")]


def main() -> None:
    model = os.environ.get("PROBE_MODEL", "qwen2.5-coder-0.5b")
    be = load_backend(model)
    for fam in FAMILIES.split(","):
        claims = load_claims(f"builtin:{fam}", limit=64, seed=0)
        rule = make_rule("exclusive", claims)
        for tw, fw in WORDS:
            t0 = time.time()
            tpl = Template(true_word=tw, false_word=fw)
            rows = be.label_logprobs([tpl.query(c) for c in claims], tpl.labels())
            m = {i: r["True"] - r["False"] for i, r in enumerate(rows)}
            mass = sum(math.exp(r["True"]) + math.exp(r["False"]) for r in rows) / len(rows)
            zl = {i: v >= 0 for i, v in m.items()}
            rl, sc = rule.zero_shot_rule(m)
            print(json.dumps({"family": fam, "words": f"{tw}/{fw}", "claims": len(claims),
                              "zero_shot_acc": round(accuracy(zl, claims), 3), "zero_shot_auroc": round(auroc(m, claims), 3),
                              "share_true": round(sum(zl.values()) / len(zl), 3),
                              "rule_acc": round(accuracy(rl, claims), 3), "rule_auroc": round(auroc(sc, claims), 3),
                              "label_mass": round(mass, 4), "seconds": round(time.time() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main()
