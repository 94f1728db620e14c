"""tf-semantic-inpaint: semantic image inpainting with deep generative models.

Yeh et al., "Semantic Image Inpainting with Deep Generative Models", CVPR 2017.
Data flows one way: data -> train (gan, models) -> export -> inpaint (search) -> blend.
This file imports nothing heavy, so `tfinpaint --help` stays fast; import the
modules you need, e.g. `from tf_semantic_inpaint import inpaint`.
"""

__version__ = "0.1.0"
