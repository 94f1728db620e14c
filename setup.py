"""tf-semantic-inpaint: semantic image inpainting with a DCGAN prior (Yeh et al., CVPR 2017)."""

import pathlib
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = pathlib.Path(__file__).parent


class BuildWithShippedModels(build_py):
    """Also copy the top-level saved_models/ into the installed package.

    `tfinpaint inpaint` then finds its default model after `pip install .`, not only
    in a source checkout (tf_semantic_inpaint.shipped looks in both places).
    """

    def run(self):
        super().run()
        source = HERE / "saved_models"
        if source.is_dir():
            target = pathlib.Path(self.build_lib) / "tf_semantic_inpaint" / "saved_models"
            shutil.copytree(source, target, dirs_exist_ok=True)


# Batch inpainting on Beam (an extra: the core install stays light). The tests run the
# Beam pipeline too, so the test extra includes it. gs:// and s3:// need Beam's own
# "gcp" / "aws" extras as well.
BEAM = ["apache-beam>=2.77,<3"]

setup(
    name="tf-semantic-inpaint",
    version="0.1.0",
    description="Semantic image inpainting with deep generative models (Yeh et al., CVPR 2017) "
    "in TensorFlow 2 / Keras 3, servable with TF Serving.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["tf_semantic_inpaint", "tf_semantic_inpaint.*"]),
    cmdclass={"build_py": BuildWithShippedModels},
    install_requires=[
        "tensorflow>=2.16,<3",
        "keras>=3.3,<4",
        "tensorboard",  # TensorFlow 2.21 no longer pulls it in; training logs need it
        "tensorflow-datasets>=4.9",
        "importlib_resources",  # tensorflow-datasets 4.9.10 imports it without declaring it
        "numpy>=1.26",
        "scipy>=1.11",
        "opencv-python-headless>=4.8",
        "click>=8.1",
        "h11>=0.14",  # HTTP/1.1 parsing for `tfinpaint serve`
        "tqdm>=4.60",
    ],
    extras_require={
        "test": ["pytest>=7", "pytest-xdist>=3", "scikit-image>=0.22", "nbclient>=0.10", "nbformat>=5", "ipykernel",
                 "matplotlib>=3.7", "ruff>=0.6", *BEAM],
        "notebooks": ["jupyter", "matplotlib>=3.7", "scikit-image>=0.22"],
        "evaluate": ["scikit-image>=0.22"],
        "beam": BEAM,
    },
    entry_points={"console_scripts": ["tfinpaint=tf_semantic_inpaint.cli:main"]},
)
