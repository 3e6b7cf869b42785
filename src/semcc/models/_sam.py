"""Import SAM's ViT image encoder without running ``segment_anything/__init__.py``.

The package ``__init__`` of ``segment-anything`` imports its predictor and mask generator, which import
``torchvision`` (not installed here, and not needed by the image encoder of paper Sec. III-B / Eq. 2).
``segment_anything/modeling/*`` itself only needs torch, so this helper registers a bare package module
for ``segment_anything`` (with the installed package's ``__path__``) in ``sys.modules`` before importing
``segment_anything.modeling.image_encoder``. When the real package is already imported (a machine with
torchvision), that module is used as it is.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

__all__ = ["ImageEncoderViT", "LayerNorm2d", "SAMAttention", "get_rel_pos", "load_sam_modeling"]


def load_sam_modeling() -> types.ModuleType:
    """Return ``segment_anything.modeling.image_encoder``, importing it without the package ``__init__``."""
    name = "segment_anything"
    if name not in sys.modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.submodule_search_locations is None:
            raise ImportError("segment-anything is not installed: pip install segment-anything")
        package = types.ModuleType(name)
        package.__path__ = list(spec.submodule_search_locations)
        package.__file__ = spec.origin
        package.__package__ = name
        package.__spec__ = spec
        sys.modules[name] = package
    return importlib.import_module(f"{name}.modeling.image_encoder")


_image_encoder = load_sam_modeling()
ImageEncoderViT = _image_encoder.ImageEncoderViT
LayerNorm2d = _image_encoder.LayerNorm2d
SAMAttention = _image_encoder.Attention
get_rel_pos = _image_encoder.get_rel_pos
