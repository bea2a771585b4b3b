"""The README's "Adding an architecture" example is real: it is
examples/custom_architecture.py, and it passes the model harness."""

import os
import re

from examples.custom_architecture import LightUNet
from tests.harness import PROJECT_ROOT, run_model_test, tiny_encoder


def test_the_readme_shows_the_example_file():
    with open(os.path.join(PROJECT_ROOT, "README.md")) as file:
        readme = file.read()
    section = readme.split("## Adding an architecture", 1)[1]
    shown = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    with open(os.path.join(PROJECT_ROOT, "examples", "custom_architecture.py")) as f:
        example = f.read()
    assert shown.strip() in example


def test_the_example_passes_the_model_harness(tmp_path):
    kwargs = {"num_classes": 3, "filters": 4, "encoder": tiny_encoder()}
    run_model_test(
        LightUNet,
        kwargs,
        (2, 64, 64, 3),
        tmp_path,
        modules=["examples.custom_architecture"],
    )
    model = LightUNet(**kwargs)
    assert model.levels == ["P5", "P4", "P3", "P2"]
    assert model.output_level == 2
