"""The served ONNX speaker encoder against the original models, on real speech made here."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from callvet.core.errors import InvalidInput, Unavailable
from callvet.core.settings import get_settings
from callvet.models import ge2e
from callvet.voice.encoder import load_encoder
from speech import asterisk, asterisk_concat, espeak


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The artifact ``callvet models build`` made (./dev test builds it first), else one built here."""
    configured = get_settings().models_dir
    if ge2e.is_built(configured):
        return configured
    target = tmp_path_factory.mktemp("models")
    ge2e.build(target)
    return target


@pytest.fixture(scope="module")
def reference():  # type: ignore[no-untyped-def]
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield ge2e.resemblyzer_encoder()
    torch.set_num_threads(before)


def _speech() -> dict[str, np.ndarray]:
    return {
        "asterisk_human": asterisk_concat(["vm-intro", "vm-login"], sample_rate=16000),
        "espeak_m3": espeak("Please confirm the last four digits of the card you applied for today.",
                            "en-us+m3"),
        "espeak_f2_short": espeak("Yes, that is right.", "en-us+f2"),
        "quiet_human": 0.05 * asterisk("vm-goodbye", sample_rate=16000),
    }


def test_onnx_ge2e_equals_resemblyzer(models_dir: Path, reference) -> None:  # type: ignore[no-untyped-def]
    from resemblyzer.audio import normalize_volume

    enc = load_encoder(models_dir, "ge2e")
    assert (enc.name, enc.dim, enc.sample_rate) == ("ge2e", 256, 16000)
    for label, wav in _speech().items():
        ours, partials = enc.embed(wav), enc.embed_partials(wav)
        ref, ref_partials, _ = reference.embed_utterance(
            normalize_volume(wav, -30, increase_only=True), return_partials=True)
        assert ours.shape == (256,) and ours.dtype == np.float32, label
        assert abs(float(np.linalg.norm(ours)) - 1.0) < 1e-5, label
        assert float(ours @ ref) >= 0.9999, label
        assert partials.shape == ref_partials.shape, label
        assert np.min(np.sum(partials * ref_partials, axis=1)) >= 0.9999, label


def test_speakers_are_told_apart(models_dir: Path) -> None:
    enc = load_encoder(models_dir, "ge2e")
    a1 = enc.embed(asterisk_concat(["vm-intro", "vm-login"], sample_rate=16000))
    a2 = enc.embed(asterisk_concat(["vm-goodbye", "vm-password", "vm-options"], sample_rate=16000))
    other = enc.embed(espeak("Please confirm the last four digits of the card.", "en-us+m3"))
    assert float(a1 @ a2) > float(a1 @ other) + 0.1


def test_bad_speech_is_invalid_input(models_dir: Path) -> None:
    enc = load_encoder(models_dir, "ge2e")
    with pytest.raises(InvalidInput):
        enc.embed(np.zeros(0, dtype=np.float32))
    with pytest.raises(InvalidInput):
        enc.embed(np.full(16000, np.nan, dtype=np.float32))
    with pytest.raises(InvalidInput):
        enc.embed(np.zeros((2, 16000), dtype=np.float32))


def test_missing_encoder_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match="callvet models build") as err:
        load_encoder(tmp_path, "ge2e")
    assert err.value.code == "encoder_missing"


@pytest.mark.parametrize("damage", ["tamper", "truncate", "delete", "old_format", "bad_manifest"])
def test_damaged_artifact_is_unavailable(models_dir: Path, tmp_path: Path, damage: str) -> None:
    copy = tmp_path / "ge2e"
    shutil.copytree(models_dir / "ge2e", copy)
    model = copy / "model.onnx"
    data = model.read_bytes()
    if damage == "tamper":
        model.write_bytes(data[:-10] + bytes(10))
    elif damage == "truncate":
        model.write_bytes(data[: len(data) // 2])
    elif damage == "old_format":
        manifest = json.loads((copy / "manifest.json").read_text())
        manifest["format"] = 0
        (copy / "manifest.json").write_text(json.dumps(manifest))
    elif damage == "bad_manifest":
        (copy / "manifest.json").write_text("{not json")
    else:
        model.unlink()
    with pytest.raises(Unavailable) as err:
        load_encoder(tmp_path, "ge2e")
    assert err.value.code == "encoder_corrupt"


def test_serving_never_imports_torch(models_dir: Path) -> None:
    code = (
        "import sys, numpy as np\n"
        "from pathlib import Path\n"
        "from callvet.voice.encoder import load_encoder\n"
        f"enc = load_encoder(Path({str(models_dir)!r}), 'ge2e')\n"
        "v = enc.embed(np.random.default_rng(0).normal(0, 0.1, 48000).astype(np.float32))\n"
        "assert v.shape == (256,)\n"
        "bad = sorted(m for m in ('torch', 'librosa', 'resemblyzer') if m in sys.modules)\n"
        "print('LOADED', bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "LOADED []" in out.stdout


def test_threads_and_concurrency_give_the_same_embedding(models_dir: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    wav = asterisk_concat(["vm-intro", "vm-login"], sample_rate=16000)
    one = load_encoder(models_dir, "ge2e", intra_op_threads=1)
    two = load_encoder(models_dir, "ge2e", intra_op_threads=2)
    assert one is load_encoder(models_dir, "ge2e", intra_op_threads=1) and one is not two
    expected = one.embed(wav)
    assert float(two.embed(wav) @ expected) >= 0.99999
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: one.embed(wav), range(8)))
    assert all(np.array_equal(r, expected) for r in results)
