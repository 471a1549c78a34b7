"""Pretrained feature extractors for transfer learning (see README.md in this directory).

``get_backbone(name_or_path, weights=...)`` returns a :class:`Backbone`; its ``build()`` makes the
Keras feature model. Importing this package does not import TensorFlow.
"""

from trainer_svc.backbones.base import Backbone, WeightsUnavailable
from trainer_svc.backbones.registry import DEFAULT_BACKBONE, get_backbone, list_backbones

__all__ = ["DEFAULT_BACKBONE", "Backbone", "WeightsUnavailable", "get_backbone", "list_backbones"]
