"""Sources of the countermeasure's recordings (Debian packages) and the fixed split ``spoof make-corpus``
writes for ``spoof eval``. Training and its held-out figures use the leave-one-family-out folds of
:mod:`callvet.voice.spoof.heldout` instead, which reuse the sources and synthesisers defined here.

Bona fide speech is every real human recording the project's Debian packages carry; synthetic speech
comes from every synthesiser ./dev installs; replays are simulated (:mod:`callvet.voice.spoof.replay`).
Every item then goes through a simulated phone line (:mod:`callvet.voice.augment`) and comes out at
8 kHz, as a call carries it.

Training and test are disjoint in speakers, synthesisers and phone lines:

========  ===========================================  ==========================================
split     bona fide (speakers)                         synthetic
========  ===========================================  ==========================================
train     Asterisk en_US + es_MX (both Allison),       espeak-ng (en, es, fr, de, it voices and
          Fish Fillets (English cast)                  variants), flite awb + rms
test      Asterisk fr_CA (June), it_IT (Carlo),        Festival: kal, ked, slt (HTS), Italian lp
          ru_RU, KTuberling (all languages),           and pc, Catalan ona (HTS), Czech dita,
          pocketsphinx-testdata                        Finnish lj
========  ===========================================  ==========================================

flite's kal and slt voices are left out: Festival's kal_diphone and slt HTS voices are the same
speakers. Replays are simulated from each split's own bona fide sources (other files than its bona
fide items). Train lines: CHANNELS 0, 1, 3; test lines: 2, 4 (narrow band 10 dB, wide band noisy).

Nothing here is read by tests on the whole corpora: :func:`items` takes a per-group cap, and tests
build their own small sets.
"""

from __future__ import annotations

import hashlib
import io
import random
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from callvet.core.errors import InvalidInput, Unavailable
from callvet.voice.audio import resample

__all__ = ["GROUPS", "TEST_CHANNELS", "TRAIN_CHANNELS", "Item", "items", "load_audio", "phone"]

SR = 8000
TRAIN_CHANNELS = (0, 1, 3)
TEST_CHANNELS = (2, 4)

_AST = Path("/usr/share/asterisk/sounds")
_FILLETS = Path("/usr/share/games/fillets-ng/sound")
_KTUB = Path("/usr/share/ktuberling/sounds")
_PS = Path("/usr/share/pocketsphinx/test/data")

TRAIN_TEXT = [
    "Hello, this is about my credit card application.",
    "My date of birth is the fourteenth of March, nineteen eighty six.",
    "I work as an accountant at a logistics company downtown.",
    "Yes, I applied for the instalment loan last Tuesday.",
    "My monthly income is about four thousand two hundred.",
    "The last four digits of my card are seven, three, one, nine.",
    "I have lived at this address for almost six years.",
    "Could you please repeat the question?",
    "I would like a limit of five thousand if possible.",
    "My employer is Northwind Trading, in the finance department.",
    "I am calling from my mobile phone, yes.",
    "No, I do not have any other loans at the moment.",
]
TEST_TEXT = {
    "en": [
        "Good afternoon, I am returning your call about the loan.",
        "I was born on the second of November, nineteen ninety.",
        "I am a nurse at the city hospital, on night shifts.",
        "The purchase was a television, paid in twelve instalments.",
        "My salary goes into my current account every month.",
        "Please send the contract to my email address.",
        "I moved here from another city two years ago.",
        "Yes, that is my correct postal code.",
    ],
    "it": ["Buongiorno, chiamo per la mia richiesta di carta di credito.",
           "Sono nato il tre maggio del millenovecentottantacinque.",
           "Lavoro come impiegato in una banca.", "Il mio stipendio mensile è di duemila euro."],
    "ca": ["Bon dia, truco per la meva sol·licitud de préstec.",
           "Treballo com a mestra en una escola.", "Visc en aquesta adreça des de fa cinc anys."],
    "cs": ["Dobrý den, volám kvůli své žádosti o úvěr.", "Pracuji jako účetní ve velké firmě.",
           "Na této adrese bydlím již pět let."],
    "fi": ["Hyvää päivää, soitan lainahakemukseni takia.", "Työskentelen sairaanhoitajana.",
           "Olen asunut tässä osoitteessa viisi vuotta."],
}
_ESPEAK_VOICES = ["en-us", "en", "en-us+m3", "en-us+f2", "en+m5", "en+f4", "en-us+klatt", "en+klatt2",
                  "es", "fr", "de", "it", "es+m2", "fr+f3"]
_FLITE_VOICES = ["awb", "rms"]
_FESTIVAL_VOICES = [("kal_diphone", "en"), ("ked_diphone", "en"), ("cmu_us_slt_arctic_hts", "en"),
                    ("lp_diphone", "it"), ("pc_diphone", "it"), ("upc_ca_ona_hts", "ca"),
                    ("czech_dita", "cs"), ("suo_fi_lj_diphone", "fi")]


@dataclass(frozen=True)
class Item:
    """One recording to make: ``label`` bonafide/spoof, ``kind`` bonafide/synthetic/replay, ``group``
    the held-out group it is reported under, ``make`` returns (signal, sample rate) before the line."""

    id: str
    split: str
    label: str
    kind: str
    group: str
    make: Callable[[], tuple[np.ndarray, int]]
    channel: int

    @property
    def is_spoof(self) -> bool:
        return self.label == "spoof"


def load_audio(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 of a WAV/OGG file (soundfile), or 16 kHz 16-bit raw (pocketsphinx's ``.raw``)."""
    path = Path(path)
    if path.suffix == ".raw":
        return np.fromfile(path, dtype="<i2").astype(np.float32) / 32768.0, 16000
    import soundfile as sf

    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return x.mean(axis=1), int(sr)


def _file(path: Path) -> Callable[[], tuple[np.ndarray, int]]:
    return lambda: load_audio(path)


def _replay(path: Path, seed: int) -> Callable[[], tuple[np.ndarray, int]]:
    def make() -> tuple[np.ndarray, int]:
        from callvet.voice.spoof.replay import simulate_replay

        x, sr = load_audio(path)
        return simulate_replay(x, sr, seed=seed), sr

    return make


def _wav_bytes(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data)) as w:
        sr, n, width, ch = w.getframerate(), w.getnframes(), w.getsampwidth(), w.getnchannels()
        raw = w.readframes(n)
    if width != 2:
        raise InvalidInput(f"synthesiser wrote {8 * width}-bit audio", code="unsupported_format")
    x = np.frombuffer(raw, dtype="<i2").astype(np.float32).reshape(-1, ch).mean(axis=1) / 32768.0
    return x, sr


def _need(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise Unavailable(f"{tool} is not installed (./dev install installs it)", code="tool_missing")
    return found


def _espeak(voice: str, text: str) -> Callable[[], tuple[np.ndarray, int]]:
    def make() -> tuple[np.ndarray, int]:
        out = subprocess.run([_need("espeak-ng"), "-v", voice, "--stdout", text], check=True,
                             capture_output=True, timeout=60).stdout
        return _wav_bytes(out)

    return make


def _flite(voice: str, text: str) -> Callable[[], tuple[np.ndarray, int]]:
    def make() -> tuple[np.ndarray, int]:
        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "x.wav"
            subprocess.run([_need("flite"), "-voice", voice, "-t", text, "-o", str(out)], check=True,
                           capture_output=True, timeout=60)
            return _wav_bytes(out.read_bytes())

    return make


def _festival(voice: str, text: str) -> Callable[[], tuple[np.ndarray, int]]:
    def make() -> tuple[np.ndarray, int]:
        with tempfile.TemporaryDirectory() as d:
            src, out = Path(d) / "x.txt", Path(d) / "x.wav"
            src.write_text(text, encoding="utf-8")
            enc = "latin-1" if voice in ("lp_diphone", "pc_diphone", "upc_ca_ona_hts",
                                         "suo_fi_lj_diphone") else None
            if voice == "czech_dita":
                enc = "iso-8859-2"
            if enc:
                src.write_bytes(text.encode(enc, errors="replace"))
            subprocess.run([_need("text2wave"), "-eval", f"(voice_{voice})", str(src), "-o", str(out)],
                           check=True, capture_output=True, timeout=120)
            return _wav_bytes(out.read_bytes())

    return make


def _sample(paths: list[Path], n: int, rng: random.Random) -> list[Path]:
    paths = sorted(paths)
    return rng.sample(paths, min(n, len(paths)))


def _bona_sources() -> dict[str, tuple[str, list[Path]]]:
    """group -> (split, files)."""
    def wavs(d: Path, pattern: str = "**/*.wav") -> list[Path]:
        return sorted(d.glob(pattern)) if d.is_dir() else []

    return {
        "asterisk-en": ("train", wavs(_AST / "en_US_f_Allison")),
        "asterisk-es": ("train", wavs(_AST / "es_MX_f_Allison")),
        "fillets": ("train", sorted(_FILLETS.glob("*/en/*.ogg")) if _FILLETS.is_dir() else []),
        "asterisk-fr": ("test", wavs(_AST / "fr_CA_f_June")),
        "asterisk-it": ("test", wavs(_AST / "it_IT_m_Carlo")),
        "asterisk-ru": ("test", wavs(_AST / "ru_RU_f_IvrvoiceRU")),
        "ktuberling": ("test", sorted(_KTUB.glob("*/*.ogg")) if _KTUB.is_dir() else []),
        "pocketsphinx": ("test", sorted([*_PS.glob("**/*.wav"), *_PS.glob("**/*.raw")])
                         if _PS.is_dir() else []),
    }


GROUPS = {
    "train": ["asterisk-en", "asterisk-es", "fillets", "espeak-ng", "flite", "replay"],
    "test": ["asterisk-fr", "asterisk-it", "asterisk-ru", "ktuberling", "pocketsphinx", "festival",
             "replay"],
}


def items(split: str, *, per_group: int = 40, seed: int = 0) -> Iterator[Item]:
    """The items of one split: ``per_group`` bona fide files per source, as many replays (simulated from
    other files of the same sources), and about as many synthetic utterances per synthesiser family."""
    if split not in GROUPS:
        raise InvalidInput(f"split must be train or test, not {split!r}", code="bad_split")
    rng = random.Random(f"{seed}:{split}")
    lines = TRAIN_CHANNELS if split == "train" else TEST_CHANNELS
    out: list[Item] = []
    replay_pool: list[tuple[str, Path]] = []
    for group, (s, files) in _bona_sources().items():
        if s != split or not files:
            continue
        chosen = _sample(files, 2 * per_group, rng)
        for p in chosen[:per_group]:
            out.append(Item(f"bona:{group}:{p}", split, "bonafide", "bonafide", group, _file(p), 0))
        replay_pool += [(group, p) for p in chosen[per_group:]]
    rng.shuffle(replay_pool)
    n_bona_groups = len({i.group for i in out})
    for k, (group, p) in enumerate(replay_pool[: per_group * max(1, n_bona_groups) // 2]):
        out.append(Item(f"replay:{group}:{p}:{k}", split, "spoof", "replay", "replay",
                        _replay(p, seed=hash_seed(f"{seed}:{p}")), 0))
    n_synth = per_group * 2
    if split == "train":
        for k in range(n_synth):
            v, t = rng.choice(_ESPEAK_VOICES), rng.choice(TRAIN_TEXT)
            out.append(Item(f"espeak:{v}:{k}", split, "spoof", "synthetic", "espeak-ng", _espeak(v, t), 0))
        for k in range(n_synth // 2):
            v, t = rng.choice(_FLITE_VOICES), rng.choice(TRAIN_TEXT)
            out.append(Item(f"flite:{v}:{k}", split, "spoof", "synthetic", "flite", _flite(v, t), 0))
    else:
        for k in range(n_synth):
            v, lang = _FESTIVAL_VOICES[k % len(_FESTIVAL_VOICES)]
            t = rng.choice(TEST_TEXT[lang])
            out.append(Item(f"festival:{v}:{k}", split, "spoof", "synthetic", "festival",
                            _festival(v, t), 0))
    for i, it in enumerate(out):
        out[i] = Item(it.id, it.split, it.label, it.kind, it.group, it.make, lines[i % len(lines)])
    yield from out


def hash_seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def phone(x: np.ndarray, sr: int, channel: int, *, seed: int = 0) -> np.ndarray:
    """``x`` through simulated line ``channel`` (index into CHANNELS), at 8 kHz."""
    from callvet.voice.augment import CHANNELS, apply_channel

    x = np.asarray(x, dtype=np.float32)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 0:
        x = x * (0.5 / peak)
    return apply_channel(resample(x, sr, SR) if sr != SR else x, SR, CHANNELS[channel], seed=seed)
