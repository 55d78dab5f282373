"""synth-body-parts mIoU: what the scorer does (background counts as a class) is what every docstring says."""

from __future__ import annotations

import re

import numpy as np
import pytest

import tasks.synthetic as synthetic
from tasks.synthetic import SynthBodyParts


def test_parts_miou_counts_background_and_the_docs_say_so() -> None:
    gt = np.zeros((1, 4, 4), np.uint8)
    gt[:, :, 2:] = 1  # left half background, right half part 1
    pred = np.ones_like(gt)  # everything predicted as part 1
    score = SynthBodyParts().score_arrays({"pred/parts": pred, "gt/parts": gt})["miou"]
    # background IoU 0, part-1 IoU 8/16: background included -> 25 %, excluded -> 50 %
    assert score == pytest.approx([25.0])
    spec = {m.name: m for m in SynthBodyParts.metrics}["miou"]
    parts_doc = re.search(r"``synth-body-parts``:(.*?)\n- ", synthetic.__doc__, re.S).group(1)
    for doc in (parts_doc, SynthBodyParts.__doc__, spec.description):
        text = " ".join(doc.split())
        assert "background included" in text and "excluded" not in text, text
