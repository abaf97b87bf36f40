"""The VQA prompt: what the user turn says around the question (placeholders are added by ``fusion.processor``)."""
from __future__ import annotations

from typing import Any

from fusion.processor import GroundedExample
from grounding.region_store import ImageRegions


def question_text(question: str) -> str:
    """The task text of one question."""
    return f"Question: {question.strip()}"


def vqa_example(row: dict[str, Any], image: Any, regions: ImageRegions | None, with_answer: bool) -> GroundedExample:
    """A ``VQASample`` record -> a processor example (the answer is the target when ``with_answer``)."""
    return GroundedExample(
        text=question_text(row["question"]),
        images=[image],
        regions=regions,
        target=row["answer"] if with_answer else None,
        key=str(row["qid"]),
    )
