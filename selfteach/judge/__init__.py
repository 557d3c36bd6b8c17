"""Generative reward model with inference-time scaling (SPCT, arXiv 2504.02495).

Public API:
- `judge_items(backend, items, config)`: k judgments per item, voted (`voting.py`).
- `accuracy_at_k(record, k, meta_k=None)`: RewardBench-style pairwise credit of one item;
  `selfteach.judge.runner.run_judge` / `summarize` do whole data sets (the CLI).
- `selfteach.judge.meta.train_meta` / `MetaRM`: the meta RM for guided voting.
- `selfteach.judge.rft.rft_rows` / `grpo_rows`: SPCT training data for the judge.
- `load_judge_items(spec)`: RewardBench rows {prompt, chosen, rejected, subset} or
  {prompt, responses, best} from JSONL/parquet/save_to_disk, or `builtin:pairs`.
- `selfteach.judge.rewards.judge_rule_reward`, `.judge_reward`: GRPO reward functions.
"""

from selfteach.judge.data import load_judge_items
from selfteach.judge.parse import parse_scores
from selfteach.judge.prompts import JudgePrompt, build_prompt
from selfteach.judge.voting import JudgeConfig, accuracy_at_k, credit, judge_items, vote

__all__ = [
    "JudgeConfig",
    "JudgePrompt",
    "accuracy_at_k",
    "build_prompt",
    "credit",
    "judge_items",
    "load_judge_items",
    "parse_scores",
    "vote",
]
