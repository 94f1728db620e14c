"""tf-semantic-inpaint: semantic image inpainting with deep generative models.

Yeh et al., "Semantic Image Inpainting with Deep Generative Models", CVPR 2017.
Data flows one way: data -> train (gan, models) -> export -> inpaint (search) -> blend.
This file imports nothing heavy, so `tfinpaint --help` stays fast (it only sets
TensorFlow's oneDNN default); import the modules you need, e.g.
`from tf_semantic_inpaint import inpaint`.
"""

import os

# TensorFlow turns oneDNN on by itself only on CPUs with AVX-512 neural-network features;
# on AVX2 CPUs its convolutions then run about 2.4x slower (benchmarks/search_speed.py).
# It must be set before TensorFlow is imported; an explicit user setting wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
