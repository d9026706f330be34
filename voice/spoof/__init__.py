"""Spoofing countermeasures beside the voiceprint: synthetic speech (AASIST) and replay (LFCC-GMM).

``SpoofDetector.score(speech16k)`` gives one calibrated :class:`SpoofResult` per request; a
``SpoofWatch`` (``detector.watch()``) does the same for a live call, one AASIST window per voiceprint
check. See docs/spoof.md for what each part covers and the measured figures.
"""

from callvet.voice.spoof.detector import (
    DEFAULT_FFR,
    SpoofDetector,
    SpoofResult,
    SpoofWatch,
    load_detector,
)

__all__ = ["DEFAULT_FFR", "SpoofDetector", "SpoofResult", "SpoofWatch", "load_detector"]
