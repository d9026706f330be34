"""Templates as data: YAML files that say which printed labels mark which contract field, and where.

A template ``extends`` another (normally ``generic``, the base with every label variant) and overrides
only what its layout needs: the words that identify it (``detect``), the default value position and
per-field positions or patterns. Positions:

- ``same_cell``: the value follows the label in the same recognised line (``姓名 王建国``);
- ``right_of``: the value is to the right on the label's row, up to the next label;
- ``below``: the value is under the label, in the label's column;
- ``sentence``: the value is inside prose; ``patterns`` (regexes with a group ``v``) run over the page
  text in reading order, and labels work as "label, then the words up to the next punctuation";
- ``any``: every position is tried and the reading that validates best wins (the unknown-layout
  fallback).

Experts add a branch's form by dropping a YAML file in a template directory and trying it with
``callvet forms test-template``; no code changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from callvet.core.errors import InvalidInput
from callvet.forms.fields import NORMALISERS

__all__ = ["FieldSpec", "Template", "TemplateSet", "builtin_dir", "load_templates"]

Position = Literal["same_cell", "right_of", "below", "sentence", "any"]
_POSITIONS = ("same_cell", "right_of", "below", "sentence", "any")
_TYPES = (*NORMALISERS, "choice", "checkbox")


@dataclass(frozen=True)
class FieldSpec:
    path: str
    type: str
    labels: tuple[str, ...]
    position: Position
    options: dict[str, str] = field(default_factory=dict)
    context: tuple[str, ...] = ()
    context_labels: tuple[str, ...] = ()
    patterns: tuple[re.Pattern[str], ...] = ()
    anywhere: bool = False


@dataclass(frozen=True)
class Template:
    name: str
    title: str
    language: str
    fields: tuple[FieldSpec, ...]
    ignore_labels: tuple[str, ...]
    form_words: tuple[str, ...]
    min_fields: int
    detect_all: tuple[str, ...] = ()
    detect_any: tuple[str, ...] = ()
    detect_none: tuple[str, ...] = ()
    source: str = ""

    @property
    def is_fallback(self) -> bool:
        return not (self.detect_all or self.detect_any)

    def claims(self, page_text: str) -> bool:
        """Whether this layout's identifying words are on the page (OCR text without whitespace)."""
        if self.is_fallback:
            return False
        if any(_squash(w) in page_text for w in self.detect_none):
            return False
        if self.detect_all and not all(_squash(w) in page_text for w in self.detect_all):
            return False
        return not self.detect_any or any(_squash(w) in page_text for w in self.detect_any)


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text).upper()


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if key == "fields":
            fields = {k: dict(v) for k, v in base.get("fields", {}).items()}
            for path, spec in (value or {}).items():
                fields[path] = {**fields.get(path, {}), **(spec or {})}
            out["fields"] = fields
        elif key != "extends":
            out[key] = value
    return out


def _str_tuple(raw: object, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(x, str | int) for x in raw):
        raise InvalidInput(f"{where} must be a list of strings", code="bad_template")
    return tuple(str(x) for x in raw)


def _build(name: str, raw: dict[str, Any], source: str) -> Template:
    where = f"template {name!r} ({source})"
    default_pos = raw.get("position", "any")
    specs: list[FieldSpec] = []
    for path, spec in (raw.get("fields") or {}).items():
        if not isinstance(spec, dict):
            raise InvalidInput(f"{where}: field {path!r} must be a mapping", code="bad_template")
        kind = spec.get("type")
        if kind not in _TYPES:
            raise InvalidInput(
                f"{where}: field {path!r} has type {kind!r}; one of {', '.join(_TYPES)}", code="bad_template"
            )
        pos = spec.get("position", default_pos)
        if pos not in _POSITIONS:
            raise InvalidInput(
                f"{where}: field {path!r} has position {pos!r}; one of " + ", ".join(_POSITIONS),
                code="bad_template",
            )
        options = spec.get("options") or {}
        if kind in ("choice", "checkbox") and not options:
            raise InvalidInput(f"{where}: field {path!r} of type {kind} needs options", code="bad_template")
        try:
            patterns = tuple(re.compile(p) for p in _str_tuple(spec.get("patterns"), f"{where}: {path}"))
        except re.error as exc:
            raise InvalidInput(
                f"{where}: field {path!r} has a bad pattern: {exc}", code="bad_template"
            ) from exc
        for p in patterns:
            if "v" not in p.groupindex:
                raise InvalidInput(
                    f"{where}: field {path!r}: each pattern needs a group (?P<v>...)", code="bad_template"
                )
        specs.append(
            FieldSpec(
                path=str(path),
                type=str(kind),
                labels=_str_tuple(spec.get("labels"), f"{where}: {path}"),
                position=pos,
                options={str(k): str(v) for k, v in options.items()},
                context=_str_tuple(spec.get("context"), path),
                context_labels=_str_tuple(spec.get("context_labels"), path),
                patterns=patterns,
                anywhere=bool(spec.get("anywhere", False)),
            )
        )
    detect = raw.get("detect") or {}
    return Template(
        name=name,
        title=str(raw.get("title", name)),
        language=str(raw.get("language", "zh-CN")),
        fields=tuple(specs),
        ignore_labels=_str_tuple(raw.get("ignore_labels"), where),
        form_words=_str_tuple(raw.get("form_words"), where),
        min_fields=int(raw.get("min_fields", 6)),
        detect_all=_str_tuple(detect.get("all"), where),
        detect_any=_str_tuple(detect.get("any"), where),
        detect_none=_str_tuple(detect.get("none"), where),
        source=source,
    )


def builtin_dir() -> Path:
    return Path(__file__).parent / "templates"


@dataclass(frozen=True)
class TemplateSet:
    """The templates in force: those that identify a layout, and the generic fallback."""

    templates: tuple[Template, ...]
    fallback: Template

    def choose(self, page_text: str) -> Template:
        text = _squash(page_text)
        for t in self.templates:
            if t.claims(text):
                return t
        return self.fallback

    def get(self, name: str) -> Template:
        for t in (*self.templates, self.fallback):
            if t.name == name:
                return t
        raise InvalidInput(f"no template named {name!r}", code="unknown_template")

    def without(self, name: str) -> TemplateSet:
        """The set with one template left out (validation on a layout the extractor has not seen)."""
        return TemplateSet(tuple(t for t in self.templates if t.name != name), self.fallback)


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"cannot read template {path}: {exc}", code="bad_template") from exc
    if not isinstance(raw, dict) or "name" not in raw:
        raise InvalidInput(f"{path}: a template is a mapping with a name", code="bad_template")
    return raw


def load_templates(*dirs: Path | str) -> TemplateSet:
    """Built-in templates plus every ``*.yaml`` in ``dirs`` (a later file with the same name wins)."""
    return _load(tuple(str(d) for d in dirs))


@lru_cache(maxsize=8)
def _load(dirs: tuple[str, ...]) -> TemplateSet:
    raws: dict[str, tuple[dict[str, Any], str]] = {}
    for d in (str(builtin_dir()), *dirs):
        for path in sorted(Path(d).glob("*.yaml")):
            if path.name == "places.yaml":
                continue
            raw = _read(path)
            raws[str(raw["name"])] = (raw, str(path))
    if "generic" not in raws:
        raise InvalidInput("the generic template is missing", code="bad_template")

    def resolved(name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
        if name in seen:
            raise InvalidInput(f"template {name!r} extends itself", code="bad_template")
        if name not in raws:
            raise InvalidInput(f"template extends unknown {name!r}", code="bad_template")
        raw = raws[name][0]
        parent = raw.get("extends")
        return _merge(resolved(parent, (*seen, name)), raw) if parent else raw

    built = [_build(n, resolved(n), src) for n, (_, src) in raws.items()]
    fallback = next(t for t in built if t.name == "generic")
    return TemplateSet(tuple(t for t in built if t.name != "generic" and not t.is_fallback), fallback)
