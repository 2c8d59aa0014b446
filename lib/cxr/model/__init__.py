"""The detector: phantoms, datasets, anchors, box coding, post-processing, serving, training.

Kept apart the way torchvision keeps anchors, box coding and transforms apart from the model.
Only ``train``, ``export`` and the ``torch`` backend import torch.
"""
