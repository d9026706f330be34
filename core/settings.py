"""Every ``CALLVET_*`` setting in one place, validated (pydantic-settings), with embedded defaults.

Everything has a default so that ``callvet serve`` runs on a fresh checkout: a SQLite file and the FAISS
index live under the data directory, models under ``models/artifacts`` of the checkout.

The data directory is resolved the same way for the server, the worker and every CLI command, and never
from the working directory (issue 11: ``callvet identify`` run from another directory used a new, empty
``./var`` and said "no match" for a blacklisted voice): ``CALLVET_DATA_DIR``, else ``data_dir`` in the
first configuration file found (``$CALLVET_CONFIG``, ``$XDG_CONFIG_HOME/callvet/callvet.toml`` or
``~/.config/callvet/callvet.toml``, ``/etc/callvet/callvet.toml``), else an absolute default: the
checkout's ``var/`` for a source checkout, ``$XDG_DATA_HOME/callvet`` (``~/.local/share/callvet``) for an
installed package. See :func:`resolve_data_dir` and docs/operations.md.
A field ``foo_bar`` is read from ``CALLVET_FOO_BAR``; a value that does not validate stops the service
at start with the variable's name and what is wrong (:class:`SettingsError`), instead of a ``ValueError``
deep in a call thread. Modules that read one knob at use time (call server, ASR, FAISS threads...) go
through :func:`env_value`, so the default and the bounds still live here.

To add a setting: add a typed, bounded field below (and a line in ``docs/operations.md``).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from callvet.core.errors import InvalidInput
from pydantic import Field, TypeAdapter, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "ENV_PREFIX",
    "DataDirChoice",
    "Settings",
    "SettingsError",
    "config_paths",
    "default_data_dir",
    "default_models_dir",
    "env_value",
    "get_settings",
    "load_settings",
    "redact_url",
    "resolve_data_dir",
    "unknown_env",
]

ENV_PREFIX = "CALLVET_"
# CALLVET_* variables that are not service settings: CLI credentials and the test suite's database.
#: CALLVET_REPLICA names the process in call records (voice.call.store.replica_name), not a knob.
_NOT_SETTINGS = frozenset({"CALLVET_KEY", "CALLVET_TOKEN", "CALLVET_TEST_DATABASE_URL", "CALLVET_CONFIG",
                           "CALLVET_REPLICA"})
#: Keys a configuration file may set (the storage location only; every other knob is an environment
#: variable, so that one place says how a service is tuned).
CONFIG_KEYS = frozenset({"data_dir", "database_url"})


def default_models_dir() -> Path:
    # models/ is core/'s sibling in the checkout and in an installed wheel (callvet/models); the path is
    # computed, not imported, because core must not depend on the build-time models package.
    return Path(__file__).resolve().parent.parent / "models" / "artifacts"


class SettingsError(InvalidInput):
    """A ``CALLVET_*`` variable that does not validate; ``message`` names it and says why."""

    code = "bad_setting"


def default_data_dir() -> Path:
    """The data directory when nothing configures one: absolute, whatever the working directory.

    A source checkout (``pyproject.toml`` beside ``core/``) keeps its data in the checkout's ``var/``,
    where ``./dev`` and earlier versions kept it; an installed package has no checkout to write to and
    uses the XDG data directory of the user running it."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file():
        return root / "var"
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "callvet"


#: The system configuration directory. The file under it is the operator's, optional and owned by no
#: package, so it is not in core/syspaths.py (whose paths must exist on a fresh machine).
_SYSCONF_DIR = Path("/etc")


def config_paths() -> list[Path]:
    """Configuration files in the order they are tried (the first that exists is used, not merged)."""
    explicit = os.environ.get("CALLVET_CONFIG", "")
    if explicit:
        return [Path(explicit)]
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    user = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".config"
    return [user / "callvet" / "callvet.toml", _SYSCONF_DIR / "callvet" / "callvet.toml"]


@dataclass(frozen=True)
class DataDirChoice:
    """The data directory and where it came from (``CALLVET_DATA_DIR``, a file's path, ``default``),
    plus the database URL the configuration file gave, if any."""

    path: Path
    source: str
    database_url: str = ""


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"configuration file {path}: {exc}") from None
    unknown = sorted(set(data) - CONFIG_KEYS)
    if unknown:
        raise SettingsError(f"configuration file {path}: unknown keys {unknown}; it may set "
                            f"{sorted(CONFIG_KEYS)} (other settings are CALLVET_* variables)")
    for key in data:
        if not isinstance(data[key], str) or not data[key]:
            raise SettingsError(f"configuration file {path}: {key} must be a non-empty string")
    return data


def resolve_data_dir() -> DataDirChoice:
    """``CALLVET_DATA_DIR``, else the first configuration file's ``data_dir`` (relative to the file),
    else :func:`default_data_dir`. ``CALLVET_CONFIG`` naming a missing file is an error, not a
    silent fallback: the operator meant that file."""
    env = os.environ.get(ENV_PREFIX + "DATA_DIR", "")
    explicit = os.environ.get("CALLVET_CONFIG", "")
    if explicit and not Path(explicit).is_file():
        raise SettingsError(f"CALLVET_CONFIG: no such file {explicit!r}")
    conf: dict[str, Any] = {}
    conf_path: Path | None = None
    for p in config_paths():
        if p.is_file():
            conf, conf_path = _read_config(p), p
            break
    url = str(conf.get("database_url", ""))
    if env:
        return DataDirChoice(Path(env).resolve(), ENV_PREFIX + "DATA_DIR", url)
    if conf_path is not None and "data_dir" in conf:
        d = Path(conf["data_dir"]).expanduser()
        return DataDirChoice((conf_path.parent / d).resolve(), str(conf_path), url)
    return DataDirChoice(default_data_dir(), "default", url)


def redact_url(url: str) -> str:
    """A database URL fit for a terminal or a log: the password replaced by ``***``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore",
                                      validate_default=True)

    # -- storage and models
    data_dir: Path = Field(default_factory=lambda: resolve_data_dir().path)
    database_url: str = ""
    models_dir: Path = Field(default_factory=default_models_dir)
    encoder: Annotated[str, Field(min_length=1, max_length=64)] = "ge2e"
    # issue 9: request bodies other than uploads (JSON, XML); uploads and bulk routes use max_upload_bytes.
    max_body_bytes: Annotated[int, Field(gt=0, le=1 << 31)] = 1 << 20
    # issue 16 (portrait): the bank directory of Parquet tables and tags the portrait routes serve.
    portrait_bank_dir: str = ""
    # -- input bounds (issue 9)
    max_upload_bytes: Annotated[int, Field(gt=0, le=1 << 31)] = 20 * 1024 * 1024
    max_audio_s: Annotated[float, Field(gt=0, le=24 * 3600)] = 300.0
    max_speech_s: Annotated[float, Field(gt=0, le=3600)] = 120.0
    # issue 18: the open-set calibration (s-norm, per-search thresholds, alarm/review tiers) ships but is
    # off by default: it holds false alarms down, but with this back end the fraudsters' scores overlap
    # the innocents' (BENCHMARKS.md issue 18 second round), so on, it names almost no fraudster.
    openset_calibration: bool = False
    # false alarms per search (per call for a live call) of the alarm and review tiers
    alarm_far: Annotated[float, Field(gt=0, lt=0.5)] = 0.01
    review_far: Annotated[float, Field(gt=0, lt=1.0)] = 0.05
    # below this net speech a probe is at most a review, never an alarm
    alarm_min_speech_s: Annotated[float, Field(ge=0, le=600)] = 6.0
    # issue 18 (unseen voice families): raise the tiers' thresholds to the null of recent calls' best
    # blacklist scores (voice/indomain.py). Opt-in: held out, it holds espeak-ng's false alarms to 0-0.5 %
    # per call (8-15 % without) but names 6 % of its fraudsters (bench/identify/INDOMAIN.md).
    openset_in_domain: bool = False
    in_domain_min_calls: Annotated[int, Field(ge=2, le=100_000)] = 20
    in_domain_max_calls: Annotated[int, Field(ge=2, le=5000)] = 1000
    # -- scorers
    # The spoof countermeasure on identify, enrolment and calls (CALLVET_SPOOF=0 turns it off in all three:
    # a deployment whose test voices are synthetic, or one that has not validated it on its own lines).
    spoof: bool = True
    spoof_ffr: Annotated[float, Field(gt=0, lt=0.5)] = 0.01
    asr_grace_ms: Annotated[float, Field(ge=0, le=10_000)] = 300.0
    asr_processes: Annotated[int, Field(ge=0, le=64)] = 1
    encoder_threads: Annotated[int, Field(ge=1, le=256)] = 1
    faiss_threads: Annotated[int, Field(ge=1, le=256)] = 1
    ann_threshold: Annotated[int, Field(ge=0)] = 50_000
    ann_nprobe: Annotated[int, Field(ge=1, le=65_536)] = 16
    # issue 17: on PostgreSQL the blacklist index syncs on NOTIFY (voice/blacklist_sync.py), re-reading
    # the generation every blacklist_listen_safety_s too; 0 = the per-search generation query, as SQLite.
    blacklist_listen: bool = True
    blacklist_listen_safety_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    # -- call server (voice/call/pipeline.py CallConfig)
    call_silence_ms: Annotated[int, Field(ge=0, le=60_000)] = 700
    max_lag_s: Annotated[float, Field(gt=0, le=600)] = 2.0
    call_workers: Annotated[int, Field(ge=1, le=1024)] = Field(default_factory=lambda: os.cpu_count() or 2)
    call_score_chunk_s: Annotated[float, Field(gt=0, le=60)] = 0.5
    call_rescore_s: Annotated[float, Field(ge=0, le=600)] = 3.0
    call_stable_rescore_s: Annotated[float, Field(ge=0, le=600)] = 6.0
    call_min_batch_s: Annotated[float, Field(ge=0, le=60)] = 0.06
    call_gather_s: Annotated[float, Field(ge=0, le=60)] = 0.03
    call_max_scored_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    call_idle_timeout_s: Annotated[float, Field(gt=0, le=86_400)] = 30.0
    call_switch_interval_s: Annotated[float, Field(ge=0, le=1)] = 0.0005
    call_batch_vad: bool = True
    max_calls: Annotated[int, Field(ge=1, le=100_000)] = 400
    # -- issue 14 (web console): session idle timeout and lifetime, lock-out after failed sign-ins
    console_idle_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 15
    console_session_hours: Annotated[float, Field(gt=0, le=24 * 7)] = 12.0
    console_max_failures: Annotated[int, Field(ge=1, le=100)] = 5
    console_lockout_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 15
    # -- issue 17: the transactional outbox's broker (docs/events.md); "none" keeps events in the table
    outbox_broker: Literal["none", "nats", "kafka"] = "none"
    # run the relay inside `callvet serve` when a broker is set (0: run `callvet outbox relay` instead)
    outbox_relay: bool = True
    outbox_batch: Annotated[int, Field(ge=1, le=10_000)] = 500
    nats_url: Annotated[str, Field(min_length=1, max_length=2000)] = "nats://127.0.0.1:4222"
    nats_stream: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = "CALLVET"
    nats_subject_root: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")] = "callvet"
    kafka_bootstrap_servers: Annotated[str, Field(min_length=1, max_length=2000)] = "127.0.0.1:9092"
    kafka_topic: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,249}$")] = "callvet.events"
    # -- operations
    # issue 17: on SIGTERM /readyz answers 503 for drain_grace_s while requests are still served (the load
    # balancer's health check moves traffic away), then the server stops accepting and waits up to
    # drain_timeout_s for live calls to end before it stops. drain_calls: after the grace, live calls are
    # handed over (the robot is told to resume on another replica; the record stays open) or, with "wait"
    # (one replica and nowhere to resume), left to end on their own within drain_timeout_s.
    drain_grace_s: Annotated[float, Field(ge=0, le=600)] = 3.0
    drain_timeout_s: Annotated[float, Field(ge=0, le=86_400)] = 60.0
    drain_calls: Literal["hand_over", "wait"] = "hand_over"
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("data_dir", "models_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return Path(v).resolve()

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _default_database(self) -> Settings:
        if not self.database_url:
            self.__dict__["database_url"] = f"sqlite:///{self.data_dir / 'callvet.db'}"
        return self

    def ensure_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        name = ENV_PREFIX + "_".join(str(p) for p in err["loc"][:1]).upper()
        got = err.get("input")
        parts.append(f"{name}: {err['msg']} (got {got!r})")
    return "; ".join(parts)


def load_settings(**overrides: Any) -> Settings:
    """:class:`Settings` from the environment (and the configuration file, for the data directory and
    the database), a bad variable raised as :class:`SettingsError`."""
    if "data_dir" not in overrides:
        choice = resolve_data_dir()
        overrides["data_dir"] = choice.path
        if choice.database_url and "database_url" not in overrides \
                and not os.environ.get(ENV_PREFIX + "DATABASE_URL"):
            overrides["database_url"] = choice.database_url
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(f"invalid settings: {_describe(exc)}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


@lru_cache(maxsize=64)
def _adapter(name: str) -> TypeAdapter[Any]:
    info = Settings.model_fields[name]
    if not info.metadata:
        return TypeAdapter(info.annotation)
    return TypeAdapter(Annotated[info.annotation, *info.metadata])  # type: ignore[name-defined]


def env_value(name: str) -> Any:
    """One setting read now from ``CALLVET_<NAME>`` (validated like :class:`Settings`), or its default."""
    info = Settings.model_fields[name]
    raw = os.environ.get(ENV_PREFIX + name.upper())
    if raw is None:
        return info.get_default(call_default_factory=True)
    try:
        return _adapter(name).validate_python(raw)
    except ValidationError as exc:
        msg = "; ".join(e["msg"] for e in exc.errors())
        raise SettingsError(f"{ENV_PREFIX}{name.upper()}: {msg} (got {raw!r})") from None


def unknown_env() -> list[str]:
    """``CALLVET_*`` variables set in the environment that no setting reads (typos, removed knobs)."""
    known = {ENV_PREFIX + n.upper() for n in Settings.model_fields} | _NOT_SETTINGS
    return sorted(k for k in os.environ if k.startswith(ENV_PREFIX) and k not in known)
