"""Self-improvement without labels: model candidates -> ICM labels -> preference pairs -> DPO
(with GRPO(gold) and SFT baselines). See `selfteach.improve.loop`."""

from selfteach.improve.candidates import diversity_stats, generate_candidates
from selfteach.improve.evaluation import compare, evaluate_model
from selfteach.improve.loop import ImproveConfig, run_improve
from selfteach.improve.pairs import build_pairs, claims_from_candidates

__all__ = [
    "ImproveConfig",
    "run_improve",
    "generate_candidates",
    "diversity_stats",
    "claims_from_candidates",
    "build_pairs",
    "evaluate_model",
    "compare",
]
