"""How a claim is shown to the model: one "example block" per claim, label word last.

Wen et al. 2025 (arXiv 2506.10139), section 2: each example is phrased as a claim that
the model completes with a label word, e.g.

    Question: What is the capital of France?
    Claim: The capital of France is Paris.
    I think this claim is True

A few-shot context is labeled blocks joined by `separator`; the scored example is the
same block without its label word. The separator is put in front of the scored block
(not at the end of the context) so that the context ends on a word and the tokenisation
of "context + query" equals "context" + "query" tokenised apart: prefix KV caches are then
exact (see `HFBackend.label_logprobs_shared_prefix`).

Also: helpers that turn comparisons (two responses, both orders) and mutually exclusive
candidates into claims with the `group`/`key` the consistency rules read.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from selfteach.backends.base import label_variants
from selfteach.data.records import Claim
from selfteach.errors import SelfteachError


class Template(BaseModel):
    """Prompt format of one example. Fields of the claim are `{question}` and `{claim}`."""

    model_config = ConfigDict(extra="forbid")

    block: str = Field(
        "Question: {question}\nClaim: {claim}\nI think this claim is",
        description="one example without its label word; the label word follows after a space",
    )
    block_no_question: str = Field("Claim: {claim}\nI think this claim is",
                                   description="the block used for claims whose question is empty")
    separator: str = Field("\n\n", description="between examples")
    true_word: str = Field(
        "True", description="label word for True (all its token variants are summed)"
    )
    false_word: str = Field("False", description="label word for False")

    @field_validator("block", "block_no_question")
    @classmethod
    def _has_claim(cls, v: str) -> str:
        if "{claim}" not in v:
            raise ValueError("template must contain {claim}")
        return v

    def query(self, c: Claim) -> str:
        """The block to score (no label word)."""
        tpl = self.block if c.question.strip() else self.block_no_question
        try:
            return tpl.format(question=c.question.strip(), claim=c.claim.strip())
        except (KeyError, IndexError) as e:
            raise SelfteachError(
                f"template: unknown field {e} (use {{question}} and {{claim}})"
            ) from None

    def example(self, c: Claim, label: bool) -> str:
        """A labeled demonstration block."""
        return f"{self.query(c)} {self.true_word if label else self.false_word}"

    def context(self, blocks: list[str]) -> str:
        return self.separator.join(blocks)

    def suffix(self, c: Claim, has_context: bool) -> str:
        """What follows the context when scoring `c`."""
        return (self.separator if has_context else "") + self.query(c)

    def labels(self) -> dict[str, list[str]]:
        """Label name -> surface variants (" True", "True", " true", ...), for label_logprobs."""
        v = label_variants([self.true_word, self.false_word])
        return {"True": v[self.true_word.strip()], "False": v[self.false_word.strip()]}


# ---- turning other data into claims -----------------------------------------------------
def comparison_claims(
    pid: str,
    prompt: str,
    response_a: str,
    response_b: str,
    gold_a_better: bool | None = None,
    criterion: str = "more helpful",
) -> list[Claim]:
    """Both orders of one pairwise comparison as two claims sharing group `pid`.

    Keys "a>b" / "b>a" tell the asymmetry rule which claim is which order; exactly one of
    the two is True (paper section 2.2, Alpaca pairwise).
    """
    out = []
    for key, first, second, gold in (("a>b", response_a, response_b, gold_a_better),
                                     ("b>a", response_b, response_a,
                                      None if gold_a_better is None else not gold_a_better)):
        text = (f"Response 1: {first.strip()}\nResponse 2: {second.strip()}\n"
                f"Response 1 is {criterion} than Response 2.")
        out.append(
            Claim(id=f"{pid}:{key}", question=prompt, claim=text, group=pid, key=key, gold=gold)
        )
    return out


def exclusive_claims(qid: str, question: str, candidates: list[str], gold_index: int | None = None,
                     claim_format: str = "The answer is {candidate}.") -> list[Claim]:
    """One claim per candidate answer of one question, sharing group `qid` (at most one
    can be True)."""
    return [Claim(id=f"{qid}:{i}", question=question, claim=claim_format.format(candidate=cand),
                  group=qid, key=str(cand), gold=None if gold_index is None else i == gold_index)
            for i, cand in enumerate(candidates)]
