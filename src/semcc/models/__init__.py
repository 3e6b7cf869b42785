"""semcc.models: the network of paper Eq. 1, pure torch (no Lightning, no semcc.data).

* :class:`BiTemporalSAMEncoder` (Sec. III-B, Eq. 2-3) with :class:`BCSF`
* :class:`MultiTaskNeck` (Sec. III-C, Eq. 4-5)
* :class:`ChangeDetectionHead` (Sec. III-D, Eq. 6)
* :class:`ChangeCaptionHead` (Sec. III-E, Eq. 7) with :class:`ChangeEnhancer` (Eq. 8), the test-time ensemble
  (:func:`consensus_index`) and the BLIP-2 / MiniGPT-4 loaders (:func:`load_qformer_checkpoint`,
  :func:`load_llama_proj`)
* typed sub-configs of the parts: :class:`SAMViTConfig`, :class:`LoRAConfig`, :class:`QFormerConfig`,
  :class:`EnhancerConfig`, :class:`LLMConfig`
* :class:`SemanticCC` (Eq. 1) and :func:`build_semantic_cc` (``tiny`` / ``mini`` / ``paper`` presets)
"""

from semcc.models.bcsf import BCSF
from semcc.models.cc_head import DEFAULT_INSTRUCTIONS, PROMPT_TEMPLATE, ChangeCaptionHead
from semcc.models.cd_head import ChangeDetectionHead
from semcc.models.checkpoints import CheckpointError, load_llama_proj, load_qformer_checkpoint
from semcc.models.configs import EnhancerConfig, LLMConfig, LoRAConfig, QFormerConfig, SAMViTConfig
from semcc.models.encoder import BiTemporalFeatures, BiTemporalSAMEncoder, load_sam_image_encoder
from semcc.models.enhancer import ChangeEnhancer
from semcc.models.ensemble import caption_similarity, consensus_index
from semcc.models.neck import MultiTaskNeck
from semcc.models.presets import PRESETS, build_semantic_cc, preset_kwargs
from semcc.models.semantic_cc import SemanticCC, SemanticCCOutput

__all__ = [
    "BCSF",
    "DEFAULT_INSTRUCTIONS",
    "PRESETS",
    "PROMPT_TEMPLATE",
    "BiTemporalFeatures",
    "BiTemporalSAMEncoder",
    "ChangeCaptionHead",
    "ChangeDetectionHead",
    "ChangeEnhancer",
    "CheckpointError",
    "EnhancerConfig",
    "LLMConfig",
    "LoRAConfig",
    "MultiTaskNeck",
    "QFormerConfig",
    "SAMViTConfig",
    "SemanticCC",
    "SemanticCCOutput",
    "build_semantic_cc",
    "caption_similarity",
    "consensus_index",
    "load_llama_proj",
    "load_qformer_checkpoint",
    "load_sam_image_encoder",
    "preset_kwargs",
]
