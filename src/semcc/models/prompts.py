"""The caption prompts of Semantic-CC, paper Sec. IV-C: the four instructions ``P`` of Eq. 7 and MiniGPT-4's
template in which the visual tokens of Eq. 7-8 replace ``<ImageHere>`` (:mod:`semcc.models.cc_head` lays them out;
:mod:`semcc.models.caption_decoding` generates from them)."""

from __future__ import annotations

__all__ = ["DEFAULT_INSTRUCTIONS", "IMAGE_PLACEHOLDER", "PROMPT_TEMPLATE"]

#: The four instruction prompts of Sec. IV-C (the same strings as ``semcc.data.text.INSTRUCTIONS``; models/
#: does not import data/, a test keeps the two equal).
DEFAULT_INSTRUCTIONS: tuple[str, ...] = (
    "Describe the difference between the new remote sensing image and the old one in detail.",
    "What is the main change between the two remote sensing scenes? Describe it in detail.",
    "Please provide a detailed description of the difference between these two remote sensing pictures.",
    "Can you describe what has been changed between these two remote sensing pictures for me?",
)

#: MiniGPT-4's instruction template; ``<ImageHere>`` is replaced by the visual tokens.
PROMPT_TEMPLATE = "###Human: <Img><ImageHere></Img> {instruction} ###Assistant: "
IMAGE_PLACEHOLDER = "<ImageHere>"
