"""Voice: audio decoding, Silero VAD, speaker encoders and back end (:mod:`callvet.voice.engine`), the
fraudster blacklist, call prints, server ASR and the live call server (:mod:`callvet.voice.call`).
Services are built by the composition root (:mod:`callvet.services`), not imported from here."""

__all__: list[str] = []
