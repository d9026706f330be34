"""Server-side speech recognition as a processor: answers the robot sent no transcript for.

When the call has a recogniser (:mod:`callvet.voice.asr`; set at start when an observer wants
transcripts), each ended answer with its captured audio and no robot transcript is recognised after the
grace period (``asr=server``: at once), off the call pool (a recogniser may block a thread for seconds,
and the pool's threads carry every call's VAD). The result goes on as a
:class:`~callvet.voice.call.frames.ServerTranscript`; a robot transcript that arrives first wins.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any

from callvet.core.errors import CallvetError
from callvet.voice.asr import Recognizer, normalize_language
from callvet.voice.call.frames import AnswerEnded, ServerTranscript, Transcript
from callvet.voice.call.processors import AnswerContext, CallContext, FrameProcessor

__all__ = ["ServerAsr"]

log = logging.getLogger("callvet.calls")


class ServerAsr(FrameProcessor):
    def __init__(self, ctx: CallContext, answers: AnswerContext, grace_s: float) -> None:
        super().__init__()
        self.ctx = ctx
        self.answers = answers
        self.grace_s = grace_s
        self.recognizer: Recognizer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def process(self, frame: Any) -> None:
        await self.push(frame)
        if (isinstance(frame, AnswerEnded) and self.recognizer is not None and frame.audio16k is not None
                and not frame.transcripts):
            task = asyncio.get_running_loop().create_task(self._recognise(frame, self.answers.robot_finals))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def wait(self) -> None:
        """The end of the call: recognitions still running finish first."""
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _hints(self, answer: AnswerEnded) -> tuple[str | None, str | None]:
        """The expected answer type and the question's text (Whisper decodes with it as its prompt)."""
        qid, q = answer.question_id, self.answers.answer_q
        same = q is not None and q.question_id == qid
        mine = q if same else None
        own_hint = mine.data.get("answer_type") if mine is not None else None
        hint = own_hint or self.ctx.asr_hints.get(str(qid))
        prompt = (mine.text if mine is not None else "") or self.ctx.asr_prompts.get(str(qid))
        return hint, prompt

    async def _recognise(self, answer: AnswerEnded, finals: int) -> None:
        info, asr = self.ctx.info, self.recognizer
        assert asr is not None and info is not None
        if str(info.params.get("asr", "auto")).lower() != "server":
            await asyncio.sleep(self.grace_s)
        if self.answers.robot_finals != finals:
            return
        hint, prompt = self._hints(answer)
        lang = normalize_language(info.language or info.params.get("language"))
        kw = {"prompt": prompt} if getattr(asr, "prompted", False) and prompt else {}
        try:
            out = await asyncio.get_running_loop().run_in_executor(
                None, partial(asr.transcribe, answer.audio16k, lang, hint=hint, **kw))
        except CallvetError as exc:
            await self.push(self.ctx.error(exc.code, f"speech recognition failed: {exc.message}"))
            return
        except Exception as exc:
            log.exception("call %s: speech recognition failed", self.ctx.call_id)
            await self.push(self.ctx.error("asr_failed", f"speech recognition failed: {type(exc).__name__}"))
            return
        if self.answers.robot_finals != finals:
            return
        data = {"source": out.engine, "confidence": out.confidence, "language": lang, "index": answer.index,
                "audio_s": round(len(answer.audio16k) / 16000, 3), "asr_s": round(out.seconds, 3),
                "audio_t_s": round(answer.end_s, 3)}
        t = Transcript(text=out.text, final=True, question_id=answer.question_id, data=data)
        await self.push(ServerTranscript(t, answer.index, answer.end_s))
