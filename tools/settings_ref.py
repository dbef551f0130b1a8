"""The settings reference (docs/settings.md), generated from the pydantic settings models so it cannot drift.

Every service's settings class and the shared ones (Kafka, Redis, topics, the cameras file) become one table
each: environment variable, type, default, allowed range and description. Nested models are flattened with
the ``__`` delimiter (``VIGIL_SCORER_SCORING__GRACE_FRAMES``). The default of a secret is never printed.
``vigil settings-doc`` writes the file; ``--check`` only compares (tests/test_settings_doc.py does the same
in memory).

Example:
    >>> rows = dict((r.env, r) for r in rows_of(SECTIONS[0]))
    >>> rows["VIGIL_KAFKA_BOOTSTRAP_SERVERS"].default, rows["VIGIL_KAFKA_SASL_PASSWORD"].default
    ('`127.0.0.1:9092`', '(secret)')
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import typer
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

SECRET_NAME = re.compile(r"(password|token|secret)s?$")


@dataclass(frozen=True)
class Section:
    """One table: a settings class (``module:Class``), its title and who reads it."""

    title: str
    target: str
    readers: str

    def cls(self) -> type[BaseSettings]:
        """The settings class (imported on demand)."""
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)


SECTIONS = (
    Section("Kafka", "vigil.shared.settings:KafkaSettings", "ingest, worker, scorer, evidence, `vigil topics`"),
    Section("Redis", "vigil.shared.settings:RedisSettings", "scorer, evidence, notify, api, `vigil alerts`"),
    Section("Topics", "vigil.shared.settings:TopicSettings", "every service that reads or writes Kafka"),
    Section("Cameras file", "vigil.shared.settings:CameraFileSettings", "every service (docs/operations.md)"),
    Section("vigil ingest", "vigil.services.ingest.settings:IngestSettings", "ingest"),
    Section("vigil worker", "vigil.services.worker.settings:WorkerSettings", "worker"),
    Section("vigil scorer", "vigil.services.scorer.settings:ScorerSettings", "scorer"),
    Section("vigil evidence", "vigil.services.evidence.settings:EvidenceSettings", "evidence"),
    Section("vigil notify", "vigil.services.notify.settings:NotifySettings", "notify"),
    Section("vigil api", "vigil.services.api.settings:ApiSettings", "api and the console"),
)


@dataclass(frozen=True)
class Row:
    """One setting: its environment variable and what to put there."""

    env: str
    type: str
    default: str
    range: str
    description: str


def type_name(tp: Any) -> str:
    """A short, readable name of a type annotation."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return type_name(args[0])
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (Union, types.UnionType):
        named = [type_name(a) for a in args if a is not type(None)]
        return " \\| ".join(named) + (" or unset" if type(None) in args else "")
    if origin is not None:
        return f"{origin.__name__}[{', '.join(type_name(a) for a in args)}]"
    if tp is SecretStr:
        return "secret"
    return getattr(tp, "__name__", str(tp))


def _is_secret(name: str, annotation: Any) -> bool:
    return SECRET_NAME.search(name) is not None or "SecretStr" in str(annotation)


def show_default(value: Any, secret: bool) -> str:
    """A default as the docs show it: secrets never, a temp-dir path machine-independently."""
    if secret:
        return "(secret)"
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Path):
        value = str(value).replace(tempfile.gettempdir(), "$TMPDIR", 1)
    if isinstance(value, frozenset | set):
        value = sorted(value)
    return f"`{value}`".replace("|", "\\|")


def show_range(info: FieldInfo) -> str:
    """The bounds a value must respect (``1..1024``, ``> 0``), or the pattern it must match."""
    bounds = {key: getattr(m, key) for m in info.metadata for key in ("ge", "gt", "le", "lt", "pattern")
              if getattr(m, key, None) is not None}  # fmt: skip
    low = f">= {bounds['ge']}" if "ge" in bounds else f"> {bounds['gt']}" if "gt" in bounds else ""
    high = f"<= {bounds['le']}" if "le" in bounds else f"< {bounds['lt']}" if "lt" in bounds else ""
    if "ge" in bounds and "le" in bounds:
        return f"{bounds['ge']}..{bounds['le']}"
    parts = [p for p in (low, high) if p]
    if "pattern" in bounds:
        parts.append(f"`{bounds['pattern']}`".replace("|", "\\|"))
    return ", ".join(parts)


def _fields(cls: type) -> list[tuple[str, Any, Any, FieldInfo]]:
    """(name, annotation, default, FieldInfo) of a pydantic model's or a dataclass's fields."""
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        out = []
        for name, info in cls.model_fields.items():
            default = info.default
            if default is PydanticUndefined and info.default_factory is not None:
                default = info.default_factory()
            out.append((name, info.annotation, default, info))
        return out
    hints = get_type_hints(cls, include_extras=True)
    out = []
    for f in dataclasses.fields(cls):
        meta = next((m for m in get_args(hints[f.name])[1:] if isinstance(m, FieldInfo)), FieldInfo())
        out.append((f.name, hints[f.name], f.default, meta))
    return out


def _nested(annotation: Any) -> type | None:
    """The model or dataclass a field nests (flattened with ``__``), None for a plain value."""
    tp = get_args(annotation)[0] if get_origin(annotation) is Annotated else annotation
    if isinstance(tp, type) and (dataclasses.is_dataclass(tp) or issubclass(tp, BaseModel)):
        return tp
    return None


def _rows(cls: type, prefix: str) -> list[Row]:
    rows = []
    for name, annotation, default, info in _fields(cls):
        nested = _nested(annotation)
        if nested is not None and issubclass(nested, BaseSettings):
            continue  # shared settings (Kafka, Redis, ...): their own table, their own prefix
        env = f"{prefix}{name.upper()}"
        if nested is not None:
            rows += _rows(nested, env + "__")
            continue
        description = " ".join((info.description or "").split()).replace("|", "\\|")
        rows.append(Row(env, type_name(annotation), show_default(default, _is_secret(name, annotation)),
                        show_range(info), description))  # fmt: skip
    return rows


def rows_of(section: Section) -> list[Row]:
    """The settings of one section, in the order of the class's fields."""
    cls = section.cls()
    return _rows(cls, cls.model_config.get("env_prefix", ""))


def env_names() -> set[str]:
    """Every environment variable the settings classes read (for checks of compose files and charts)."""
    return {row.env for section in SECTIONS for row in rows_of(section)}


HEADER = """# Settings reference

<!-- Generated by `vigil settings-doc` (tools/settings_ref.py) from the pydantic settings models.
     Do not edit by hand: tests/test_settings_doc.py fails when this file is out of date. -->

Every setting is an environment variable. Each service reads its own prefix (`VIGIL_INGEST_`,
`VIGIL_WORKER_`, ...) and the shared ones (`VIGIL_KAFKA_`, `VIGIL_REDIS_`, `VIGIL_TOPICS_`,
`VIGIL_CAMERAS_`). Nested settings use `__`: `VIGIL_SCORER_SCORING__GRACE_FRAMES=3000`. Everything about
one camera is in the cameras file instead (docs/operations.md); a camera's `scorer:` overrides take the
names of `VIGIL_SCORER_SCORING__*` and `VIGIL_SCORER_EVENTS__*` in lower case.

Secrets (passwords, tokens) are never printed here, and are best given as files: `VIGIL_REDIS_PASSWORD_FILE`,
`VIGIL_KAFKA_SASL_PASSWORD_FILE`, `VIGIL_NOTIFY_MQTT_PASSWORD_FILE`, `VIGIL_API_TOKENS_FILE` (Docker and
Kubernetes secrets mount them; docs/deploy.md).
"""


def render() -> str:
    """The whole reference as Markdown."""
    parts = [HEADER]
    for section in SECTIONS:
        cls = section.cls()
        doc = (cls.__doc__ or "").strip().splitlines()[0].replace("``", "`")
        parts.append(f"\n## {section.title}\n\n{doc} Read by: {section.readers}. "
                     f"Class: `{section.target.replace(':', '.')}`.\n\n"
                     "| variable | type | default | range | description |\n|---|---|---|---|---|\n")  # fmt: skip
        parts += [f"| `{r.env}` | {r.type} | {r.default} | {r.range} | {r.description} |\n" for r in rows_of(section)]
    return "".join(parts)


def settings_doc(
    out: Path = typer.Option(Path("docs/settings.md"), help="Where to write the reference"),
    check: bool = typer.Option(False, "--check", help="Only compare; exit 1 when the file is out of date"),
) -> None:
    """Write the settings reference (docs/settings.md) from the pydantic settings models."""
    text = render()
    if check:
        current = out.read_text() if out.exists() else ""
        if current != text:
            typer.echo(f"{out} is out of date: run `vigil settings-doc`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{out} is up to date")
        return
    out.write_text(text)
    typer.echo(f"wrote {out} ({sum(len(rows_of(s)) for s in SECTIONS)} settings)")


if __name__ == "__main__":
    typer.run(settings_doc)
