"""SpeechBrain ECAPA-TDNN import: a checkpoint in SpeechBrain's own format, exported, served, compared
with SpeechBrain's EncoderClassifier on real speech."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from callvet.core.errors import Conflict, InvalidInput
from callvet.models.ecapa import import_speechbrain
from callvet.voice.encoder import load_encoder
from speech import asterisk, espeak

#: The layout of speechbrain/spkrec-ecapa-voxceleb's hyperparams.yaml, with a small network.
HYPERPARAMS = """\
n_mels: 24
pretrained_path: speechbrain/spkrec-ecapa-voxceleb
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False
embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: [32, 32, 32, 32, 96]
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 16
    res2net_scale: 4
    se_channels: 16
    lin_neurons: 24
mean_var_norm_emb: !new:speechbrain.processing.features.InputNormalization
    norm_type: global
    std_norm: False
modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    mean_var_norm_emb: !ref <mean_var_norm_emb>
"""


def _speechbrain():  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from hyperpyyaml import load_hyperpyyaml
        from speechbrain.inference.speaker import EncoderClassifier
        from speechbrain.utils.checkpoints import torch_recovery, torch_save
    return load_hyperpyyaml, EncoderClassifier, torch_recovery, torch_save


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised ECAPA saved the way SpeechBrain saves a module (its torch_save hook)."""
    import torch

    load_hyperpyyaml, _, _, torch_save = _speechbrain()
    d = tmp_path_factory.mktemp("spkrec-ecapa")
    (d / "hyperparams.yaml").write_text(HYPERPARAMS)
    torch.manual_seed(1234)
    hparams = load_hyperpyyaml(HYPERPARAMS)
    # Non-trivial batch-norm statistics, as a trained model has, so the comparison exercises them.
    for module in hparams["embedding_model"].modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    torch_save(hparams["embedding_model"], d / "embedding_model.ckpt")
    return d


@pytest.fixture(scope="module")
def classifier(source: Path):  # type: ignore[no-untyped-def]
    """SpeechBrain's own EncoderClassifier over the same files, loaded by SpeechBrain's recovery hook."""
    load_hyperpyyaml, encoder_classifier, torch_recovery, _ = _speechbrain()
    hparams = load_hyperpyyaml((source / "hyperparams.yaml").read_text())
    torch_recovery(hparams["embedding_model"], source / "embedding_model.ckpt", end_of_epoch=False)
    return encoder_classifier(modules=hparams["modules"], hparams=hparams, freeze_params=True)


@pytest.fixture(scope="module")
def models_dir(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Imported through the CLI, as an operator would."""
    from callvet.cli import app
    from typer.testing import CliRunner

    target = tmp_path_factory.mktemp("models")
    res = CliRunner().invoke(app, ["models", "import-speechbrain", str(source), "--name", "ecapa",
                                   "--models-dir", str(target)])
    assert res.exit_code == 0, res.output
    assert "embedding size 24" in res.output
    return target


def test_onnx_ecapa_equals_speechbrain(models_dir: Path, classifier) -> None:  # type: ignore[no-untyped-def]
    import torch

    enc = load_encoder(models_dir, "ecapa")
    assert (enc.dim, enc.sample_rate) == (24, 16000)
    assert enc.manifest["source"]["package"] == "speechbrain"
    speech = {
        "espeak": espeak("Please confirm the last four digits of the card.", "en-us+m3"),
        "human": asterisk("vm-intro", sample_rate=16000),
    }
    ours = {}
    for label, wav in speech.items():
        ours[label] = enc.embed(wav)
        with torch.no_grad():
            ref = classifier.encode_batch(torch.from_numpy(wav)).reshape(-1).numpy()
        ref = ref / np.linalg.norm(ref)
        assert float(ours[label] @ ref) >= 0.9999, label
    # The threshold discriminates: two different utterances are further apart than that.
    assert float(ours["espeak"] @ ours["human"]) < 0.999


def test_partials_cover_long_speech(models_dir: Path) -> None:
    enc = load_encoder(models_dir, "ecapa")
    wav = asterisk("vm-intro", sample_rate=16000)
    partials = enc.embed_partials(wav)
    assert partials.shape[0] == 1 + int(np.ceil((len(wav) / 16000 - 3.0) / 1.5))
    assert np.allclose(np.linalg.norm(partials, axis=1), 1.0, atol=1e-5)
    mean = partials.mean(axis=0)
    assert float(enc.embed(wav) @ (mean / np.linalg.norm(mean))) > 0.9


def test_too_short_speech_is_a_typed_error(models_dir: Path) -> None:
    enc = load_encoder(models_dir, "ecapa")
    need = enc.manifest["frontend"]["min_samples"]
    assert 0 < need <= 1600
    x = np.random.default_rng(0).normal(0, 0.1, need).astype(np.float32)
    assert enc.embed(x).shape == (24,)
    for fn in (enc.embed, enc.embed_partials):
        with pytest.raises(InvalidInput) as err:
            fn(x[: need - 1])
        assert err.value.code == "too_little_speech"


def test_existing_encoder_needs_force(source: Path, models_dir: Path) -> None:
    with pytest.raises(Conflict):
        import_speechbrain(source, models_dir, name="ecapa")


def test_bad_sources_are_invalid_input(tmp_path: Path, source: Path) -> None:
    with pytest.raises(InvalidInput, match=r"hyperparams\.yaml"):
        import_speechbrain(tmp_path, tmp_path / "m", name="x")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "hyperparams.yaml").write_text(HYPERPARAMS.replace("lin_neurons: 24", "lin_neurons: 32"))
    (broken / "embedding_model.ckpt").write_bytes((source / "embedding_model.ckpt").read_bytes())
    with pytest.raises(InvalidInput) as err:
        import_speechbrain(broken, tmp_path / "m", name="x")
    assert err.value.code == "bad_checkpoint"
    with pytest.raises(InvalidInput):
        import_speechbrain(source, tmp_path / "m", name="../evil")
