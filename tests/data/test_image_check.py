"""image_check.py writes Qwen2-VL's image-processor limits out (importing the processor costs torch): these tests
hold its copy to the real transformers classes, so an upgrade that changes them fails here."""

import random
import subprocess
import sys

import pytest
from PIL import Image

from surgvqa.data import image_check
from surgvqa.data.image_check import FACTOR, MAX_ASPECT_RATIO, processor_refusal


def test_the_limits_are_the_qwen2_vl_processor_classes_own():
    # The PIL class is the one the project uses (model/processor.py: no torchvision here, so the torchvision
    # Qwen2VLImageProcessor cannot even be imported).
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from tests.conftest import section

    cls = Qwen2VLImageProcessorPil
    assert (cls.patch_size, cls.merge_size) == (image_check.PATCH_SIZE, image_check.MERGE_SIZE)
    built = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=section("model").image_pixels)
    assert (built.patch_size, built.merge_size) == (image_check.PATCH_SIZE, image_check.MERGE_SIZE)


def _shapes() -> list[tuple[int, int]]:
    """Every shape near the limits (sides 1-60 against 1-60 and against the 200:1 edge) plus random ones."""
    rng = random.Random(0)
    shapes = {(w, h) for w in range(1, 61) for h in range(1, 61)}
    for short in range(1, 80):
        for long in range(MAX_ASPECT_RATIO * short - 3, MAX_ASPECT_RATIO * short + 4):
            shapes |= {(long, short), (short, long)}
    shapes |= {(rng.randint(1, 20000), rng.randint(1, 20000)) for _ in range(5000)}
    return sorted(shapes)


def test_processor_refusal_agrees_with_the_real_smart_resize_on_many_shapes():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil, smart_resize

    size = Qwen2VLImageProcessorPil.size
    shapes = _shapes()
    assert len(shapes) > 9000
    for width, height in shapes:
        try:
            smart_resize(height, width, factor=FACTOR, min_pixels=size["shortest_edge"],
                         max_pixels=size["longest_edge"])
            refuses = False
        except ValueError as e:
            refuses = True
            message = str(e)
        reason, detail = processor_refusal(width, height)
        assert (reason == "processor_refuses_image") == refuses, (width, height)
        if refuses:
            assert detail.endswith(message), (detail, message)  # the processor's own words
        else:  # ingest's own, stricter rule: a side below one token
            assert (reason == "image_too_small") == (min(width, height) < FACTOR), (width, height)


@pytest.mark.parametrize("size", [(1, 1), (300, 1), (1, 300), (5601, 28), (5600, 28), (27, 40), (28, 28), (29, 57)])
def test_processor_refusal_agrees_with_the_real_processor(size):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from tests.conftest import section

    pixels = section("model").image_pixels
    processor = Qwen2VLImageProcessorPil(min_pixels=min(pixels, 56 * 56), max_pixels=pixels)  # as training sets it up
    try:
        processor(images=[Image.new("RGB", size)], return_tensors="np")
        takes = True
    except ValueError:
        takes = False
    assert takes == (processor_refusal(*size)[0] in ("", "image_too_small"))


def test_the_data_stages_import_neither_transformers_nor_torch():
    code = ("import sys, surgvqa.data.ingest, surgvqa.data.importer; "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
