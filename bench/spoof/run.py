"""Cost of the spoof countermeasure per second of speech, beside the voiceprint's, in the same run.

Both run as the call server runs them, on the same 8 kHz phone speech (espeak answers, upsampled to
16 kHz as the call pipeline does): the voiceprint accumulator embeds each new 3 s of speech and
identifies against an empty blacklist at every check; the :class:`SpoofWatch` scores its latest 4 s
window at the same checks (every 3 s of speech). Reported: CPU ms per second of speech (process CPU
time, single-threaded ONNX sessions, median of ``--repeats``), for the served countermeasure (cue
vector + two regressions), for AASIST on the same windows (the network the previous back end ran,
not served now), and one identify-style request (one 4 s window). Peer: the voiceprint, same speech,
same process.

    .venv/bin/python bench/spoof/run.py [--speech-s 30] [--repeats 3] [--out bench/spoof/RESULTS.md]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

TEXTS = ["I bought the card last spring and I use it for groceries and fuel every week.",
         "My employer is a logistics company, I have worked there for about six years now.",
         "The loan is for a new kitchen, and I can pay around four hundred a month.",
         "Yes, I live at the same address with my wife and our two children."]
STRIDE_S = 3.0


def _speech(seconds: float) -> np.ndarray:
    from callvet.voice.audio import resample
    from speech import espeak, phone_channel

    parts, n, i = [], 0, 0
    while n < seconds * 8000:
        x = phone_channel(espeak(TEXTS[i % len(TEXTS)], "en-us+m3", sample_rate=8000), 8000, seed=i)
        parts.append(x)
        n += len(x)
        i += 1
    return resample(np.concatenate(parts)[: int(seconds * 8000)], 8000, 16000)


def _cpu(fn) -> float:  # type: ignore[no-untyped-def]
    t = time.process_time()
    fn()
    return time.process_time() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--speech-s", type=float, default=30.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")))
    args = ap.parse_args()
    import tempfile

    from callvet.core.db import Database
    from callvet.core.settings import Settings
    from callvet.voice.blacklist import Blacklist
    from callvet.voice.call.scoring import VoiceScoring
    from callvet.voice.engine import VoiceEngine
    from callvet.voice.spoof import load_detector
    from callvet.voice.spoof.detector import NB_SAMP, _Aasist

    tmp = Path(tempfile.mkdtemp(prefix="callvet-bench-spoof-"))
    settings = Settings(data_dir=tmp, database_url=f"sqlite:///{tmp / 'db.sqlite'}")
    db = Database(settings.database_url)
    db.create_schema()
    engine = VoiceEngine.from_settings(settings)
    bl = Blacklist.from_settings(settings, db, engine)
    det = load_detector(settings.models_dir)
    aasist = _Aasist(settings.models_dir / "aasist", threads=1)
    x = _speech(args.speech_s)
    step = int(STRIDE_S * 16000)
    chunks = [x[i:i + step] for i in range(0, len(x), step)]

    def voiceprint() -> None:
        w = VoiceScoring(engine, bl).watch()
        for c in chunks:
            w.add(c)
            if w.net_speech_s >= w.min_net_speech_s:
                w.verdict()

    def spoof() -> None:
        w = det.watch()
        for c in chunks:
            w.add(c)
            w.check()

    def aasist_every_check() -> None:
        ring = np.zeros(0, np.float32)
        for c in chunks:
            ring = np.concatenate([ring, c])[-NB_SAMP:]
            aasist.score(ring)

    def request() -> None:
        det.score(x[-4 * 16000:])

    voiceprint(), spoof(), request(), aasist_every_check()  # warm
    runs: dict[str, list[float]] = {"voiceprint (peer)": [], "spoof, served (cues, every check)": [],
                                    "AASIST on every check (previous back end, not served)": [],
                                    "spoof, one identify request (4 s window)": []}
    for _ in range(args.repeats):
        runs["voiceprint (peer)"].append(_cpu(voiceprint) / args.speech_s)
        runs["spoof, served (cues, every check)"].append(_cpu(spoof) / args.speech_s)
        runs["AASIST on every check (previous back end, not served)"].append(
            _cpu(aasist_every_check) / args.speech_s)
        runs["spoof, one identify request (4 s window)"].append(_cpu(request))
    med = {k: float(np.median(v)) * 1000 for k, v in runs.items()}
    peer = med["voiceprint (peer)"]
    load = Path("/proc/loadavg").read_text().split()[0]
    lines = ["# Spoof countermeasure cost (bench/spoof/run.py)", "",
             f"Machine: {os.cpu_count()} cores shared with other jobs (load avg {load} at the end); "
             f"{args.speech_s:g} s of phone speech, checks every {STRIDE_S:g} s of speech, "
             f"median of {args.repeats}; process CPU time. Peer: the voiceprint, same run.", "",
             "| what | CPU ms per s of speech | / voiceprint |", "|---|---|---|"]
    for k, v in med.items():
        unit = "ms per request" if "request" in k else ""
        lines.append(f"| {k} | {v:.1f} {unit} | {v / peer:.2f} |")
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)
    bl.close()


if __name__ == "__main__":
    main()
