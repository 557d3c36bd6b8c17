"""Logical consistency rules: I(D) in U(D) = alpha * P(D) - I(D).

Wen et al. 2025 (arXiv 2506.10139), section 2.1 ("logical consistency"). A rule relates
only claims that share a `group` (solutions of one problem, both orders of one
comparison, candidates for one question), so the search's sampling weights stay
meaningful: a rule that related every claim to every other would give every example the
same 100x weight (one of the traps of the public re-implementations).

Groups and keys come from the data (`Claim.group`, `Claim.key`) or are derived from the
claim text (math: key = extracted final answer). They never come from `Claim.gold`.

Rules:
- `none`: plain task, no pairs.
- `math`: solutions of one problem with different final answers cannot both be True;
  with the same final answer they must share a label.
- `comparison`: "A better than B" and "B better than A" are not both True and not both
  False (the two claims of one group, keys "a>b" and "b>a" or any two distinct keys).
- `exclusive`: candidate answers to one question: at most one True.
"""

from __future__ import annotations

import itertools
from collections import defaultdict

from selfteach.data.records import Claim
from selfteach.errors import SelfteachError

Labels = dict[int, bool]  # claim index -> label (only labeled claims)
ASSIGNMENTS = [(True, True), (True, False), (False, True), (False, False)]


class Rule:
    """Base: no pairs are related. Subclasses define `violates` for a related pair."""

    name = "none"

    def __init__(self, claims: list[Claim]):
        self.claims = claims
        groups: dict[str, list[int]] = defaultdict(list)
        for i, c in enumerate(claims):
            if c.group is not None:
                groups[c.group].append(i)
        self.groups = dict(groups)
        self.group_of = {i: c.group for i, c in enumerate(claims)}

    def relates(self) -> bool:
        return False

    def violates(self, i: int, yi: bool, j: int, yj: bool) -> bool:
        return False

    def consistent_assignments(self, i: int, j: int) -> list[tuple[bool, bool]]:
        """Every (y_i, y_j) that satisfies the rule for this pair, (False, False) included
        where it is consistent (the paper's ConsistencyFix tries all of them)."""
        return [(a, b) for a, b in ASSIGNMENTS if not self.violates(i, a, j, b)]

    def related(self, i: int) -> list[int]:
        """Claims this rule can relate to claim i (same group), i excluded."""
        if not self.relates():
            return []
        g = self.group_of[i]
        return [j for j in self.groups.get(g, []) if j != i] if g is not None else []

    def violations(self, labels: Labels) -> list[tuple[int, int]]:
        """All violating pairs (i < j) among labeled claims."""
        if not self.relates():
            return []
        out = []
        by_group: dict[str, list[int]] = defaultdict(list)
        for i in labels:
            g = self.group_of[i]
            if g is not None:
                by_group[g].append(i)
        for members in by_group.values():
            for i, j in itertools.combinations(sorted(members), 2):
                if self.violates(i, labels[i], j, labels[j]):
                    out.append((i, j))
        return out

    def count(self, labels: Labels) -> int:
        """I(D): the number of violating pairs."""
        return len(self.violations(labels))

    def zero_shot_rule(self, margins: dict[int, float]) -> tuple[Labels, dict[int, float]]:
        """The "zero-shot + rule" baseline (docs/methods.md s.1): the rule applied to zero-shot
        margins m_i = log P(True) - log P(False), label-free, one model pass, no search.
        Returns (labels, scores): labels satisfy the rule (I = 0); a score ranks the claims
        for AUROC and is >= 0 exactly for the claims labeled True (ties aside). Here (no
        rule): the zero-shot labels, m_i >= 0."""
        return {i: m >= 0 for i, m in margins.items()}, dict(margins)

    def _one_per_group(self, margins: dict[int, float]) -> tuple[Labels, dict[int, float]]:
        """The highest-margin claim of each group of 2+ claims True, the others False (ties:
        the first claim). Score: m_i - the largest other margin of its group. Ungrouped or
        single claims: threshold 0 on m_i."""
        labels, scores = Rule.zero_shot_rule(self, margins)
        for members in self.groups.values():
            if len(members) < 2:
                continue
            best = max(members, key=lambda i: (margins[i], -i))
            for i in members:
                scores[i] = margins[i] - max(margins[j] for j in members if j != i)
                labels[i] = i == best
        return labels, scores


class NoRule(Rule):
    name = "none"


class MathRule(Rule):
    """Verification of solutions: `key` is the final answer, `group` the problem."""

    name = "math"

    def __init__(self, claims: list[Claim]):
        super().__init__(claims)
        from selfteach.data.answers import extract_answer

        self.keys: dict[int, str | None] = {}
        for i, c in enumerate(claims):
            key = c.key if c.key is not None else extract_answer(c.claim)
            self.keys[i] = None if key is None else str(key).strip()

    def relates(self) -> bool:
        return True

    def violates(self, i: int, yi: bool, j: int, yj: bool) -> bool:
        ki, kj = self.keys[i], self.keys[j]
        if ki is None or kj is None:  # no final answer: nothing to compare
            return False
        if ki == kj:
            return yi != yj
        return yi and yj

    def zero_shot_rule(self, margins: dict[int, float]) -> tuple[Labels, dict[int, float]]:
        """Per problem, claims sharing a final answer share a label and at most one answer is
        True: the answer with the largest summed margin S is True if S >= 0 (a problem the
        model got wrong every time must be able to stay all-False), the others False. This
        is the rule-consistent labeling with the largest sum of signed margins. Score of a
        claim with answer k: min(S_k, S_k - max of the other answers' S)."""
        labels, scores = Rule.zero_shot_rule(self, margins)
        for members in self.groups.values():
            keyed = {i: k for i in members if (k := self.keys[i]) is not None}
            sums: dict[str, float] = {}
            for i, k in keyed.items():
                sums[k] = sums.get(k, 0.0) + margins[i]
            if not sums:
                continue
            best = max(sums, key=sums.__getitem__)  # ties: the answer seen first
            for i, k in keyed.items():
                others = [v for kk, v in sums.items() if kk != k]
                scores[i] = min(sums[k], sums[k] - max(others)) if others else sums[k]
                labels[i] = k == best and sums[k] >= 0
        return labels, scores


class ComparisonRule(Rule):
    """Asymmetry: the two orders of one comparison get opposite labels."""

    name = "comparison"

    def relates(self) -> bool:
        return True

    def violates(self, i: int, yi: bool, j: int, yj: bool) -> bool:
        return yi == yj

    def zero_shot_rule(self, margins: dict[int, float]) -> tuple[Labels, dict[int, float]]:
        """Exactly one of the two orders is True: the one with the larger margin."""
        return self._one_per_group(margins)


class ExclusiveRule(Rule):
    """Mutually exclusive candidates: at most one True per group."""

    name = "exclusive"

    def relates(self) -> bool:
        return True

    def violates(self, i: int, yi: bool, j: int, yj: bool) -> bool:
        return yi and yj

    def zero_shot_rule(self, margins: dict[int, float]) -> tuple[Labels, dict[int, float]]:
        """The highest-margin candidate of each group True, the others False, whatever the
        sign of its margin: a question's candidate set is taken to hold its answer (as the
        built-in tasks do), and a threshold on an uncalibrated margin is what this baseline
        avoids (a model that answers "False" to everything still ranks the candidates)."""
        return self._one_per_group(margins)


RULES: dict[str, type[Rule]] = {"binary": NoRule, "math": MathRule, "comparison": ComparisonRule,
                                "exclusive": ExclusiveRule}
TASKS = tuple(RULES)


def make_rule(task: str, claims: list[Claim]) -> Rule:
    """The rule of a task, after checking the claims fit it."""
    if task not in RULES:
        raise SelfteachError(f"task {task!r}: unknown (choose {', '.join(TASKS)})")
    validate_claims(claims, task)
    return RULES[task](claims)


def validate_claims(claims: list[Claim], task: str) -> None:
    """Bad input -> one-line SelfteachError naming the claim and field."""
    if not claims:
        raise SelfteachError("claims: no claims to label")
    seen: set[str] = set()
    for c in claims:
        if not c.claim or not c.claim.strip():
            raise SelfteachError(f"claim {c.id!r}: field 'claim' is empty")
        if c.id in seen:
            raise SelfteachError(f"claim {c.id!r}: duplicate id")
        seen.add(c.id)
    groups: dict[str, list[Claim]] = defaultdict(list)
    for c in claims:
        if c.group is not None:
            if not str(c.group).strip():
                raise SelfteachError(f"claim {c.id!r}: field 'group' is empty")
            groups[c.group].append(c)
    if task == "comparison":
        if not groups:
            raise SelfteachError(
                "task comparison: claims need a 'group' (one group = both orders of one pair)"
            )
        for c in claims:
            if c.group is None:
                raise SelfteachError(
                    f"claim {c.id!r}: task comparison needs field 'group' (the pair id)"
                )
        for g, members in groups.items():
            if len(members) != 2:
                raise SelfteachError(
                    f"claim {members[0].id!r}: comparison group {g!r} has {len(members)} claim(s); "
                    "it must hold exactly the two orders of one pair (the other refers to nothing)"
                )
    if task in ("math", "exclusive") and not groups:
        raise SelfteachError(f"task {task}: no claim has a 'group', so the rule relates nothing; "
                             "set group (problem / question id) or use --task binary")
