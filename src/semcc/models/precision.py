"""Master-weight precision of Semantic-CC (Eq. 1 parts; the optimiser of Sec. IV-C): trainable weights in float32.

A frozen base may be stored in half precision (``llm.dtype: bfloat16`` keeps Vicuna-7B's weights in bf16, half
the memory), but a weight that trains must be float32: AdamW's update at lr 1e-4 down to 1e-6 is far below
bf16's resolution (8 bits of mantissa: a relative step under 2^-8 rounds to nothing), and Lightning's
``bf16-mixed`` precision keeps no float32 copy of a bf16 parameter. peft creates LoRA adapters in the dtype of
the layer they wrap, so the adapters of a bf16 LLM would be bf16; :func:`trainable_to_float32` turns them
(and any other trainable half-precision parameter) to float32. Under ``bf16-mixed`` the matmuls still run in
bf16 (autocast); outside autocast, peft casts the layer input to the adapter's dtype and the result back.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["trainable_to_float32"]


def trainable_to_float32(module: nn.Module) -> int:
    """Cast every floating-point parameter of ``module`` that has ``requires_grad`` to float32, in place.

    Frozen parameters keep their dtype. Works on the meta device (shape-only builds). Returns the number of
    parameters cast.
    """
    cast = 0
    for param in module.parameters():
        if param.requires_grad and param.is_floating_point() and param.dtype != torch.float32:
            param.data = param.data.float()
            cast += 1
    return cast
