"""The strategy table (semcc.strategies, Sec. III-F / Table IV): its names exist where they are used."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from semcc.models import SemanticCC, build_semantic_cc
from semcc.strategies import LOSSES, PARTS, PHASES, SOURCES, STRATEGIES, required_heads
from semcc.tasks.schedule import warmup_cosine


def test_every_part_name_is_a_part_of_semantic_cc() -> None:
    """Freezing, lr_scale and compile_parts find parts by these names: each must be a SemanticCC child."""
    with torch.device("meta"):
        model = build_semantic_cc("paper")
    assert set(PARTS) == {name for name, _ in model.named_children()}
    assert set(PARTS) == set(inspect.signature(SemanticCC.__init__).parameters) - {"self"}
    assert {f"{loss}_head" for loss in LOSSES} <= set(PARTS)


def test_the_table_is_closed() -> None:
    for name, phase in PHASES.items():
        assert phase.name == name
        assert phase.sources and set(phase.sources) <= set(SOURCES), name
        assert phase.parts and set(phase.parts) <= set(PARTS), name
        assert phase.losses and set(phase.losses) <= set(LOSSES), name
    for strategy, phases in STRATEGIES.items():
        assert phases and set(phases) <= set(PHASES), strategy
    # Sec. III-F: phase ii freezes the image encoder, phase iii trains the neck alone on the joint loss.
    assert "encoder" not in PHASES["cc"].parts and PHASES["joint"].parts == ("neck",)
    assert PHASES["joint"].losses == ("cd", "cc")
    assert required_heads("three_stage") == ("cc_head", "cd_head") and required_heads("caption_only") == ("cc_head",)
    with pytest.raises(ValueError, match="unknown strategy"):
        required_heads("four_stage")


def test_warmup_then_cosine_to_the_floor() -> None:
    factor = warmup_cosine(total=100, warmup=0.1, floor=0.1)
    assert factor(0) == pytest.approx(1 / 11) and factor(9) == pytest.approx(10 / 11)
    assert factor(10) == pytest.approx(1.0)
    assert factor(55) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert factor(100) == pytest.approx(0.1) and factor(500) == pytest.approx(0.1)
    assert warmup_cosine(total=100, warmup=5, floor=0.0)(4) == pytest.approx(5 / 6)  # an int is a step count
