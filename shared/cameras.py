"""The cameras file: everything about each camera, validated; global defaults merged in; secrets from the environment.

One file for the whole site. Each service reads it through the same model, taking the part it needs:
ingest the source and sampling, the worker each camera's ``model``, the scorer each camera's ``scorer``
overrides (a later issue adds ``zones``). The environment keeps site-wide settings and secrets only.

Example ``cameras.yaml``::

    defaults:                 # source and sampling, merged into every camera (a camera's own keys win)
      fps: 10
      width: 180
      height: 120
      channels: 1
      encoding: gray8
    cameras:
      - id: lobby
        url: rtsp://${LOBBY_USER}:${LOBBY_PASSWORD}@10.0.0.5:554/stream1
        model: models/lobby   # this camera's fine-tuned model (worker), relative to this file
        scorer:               # this camera's scorer parameters over the site's (VIGIL_SCORER_*)
          grace_frames: 6000
          k: 3
      - id: replay
        url: ./clips/Test001.mkv  # relative to this file
        loop: true
        fps: 5

``${NAME}`` is replaced by the environment variable ``NAME``, or, when that is unset, by the content of
the file named in ``NAME_FILE`` (Docker / Kubernetes secrets). Credentials therefore never sit in the
YAML, and every message that quotes a URL masks them. Only ingest opens the sources: the worker and the
scorer read the file with ``sources=False`` (:func:`load_cameras`), which neither fills in secrets nor
checks that file sources exist, so they need neither the camera secrets nor the clips.

Errors in the file's structure (YAML syntax, unknown top-level keys, bad defaults) are fatal. Errors in one
camera entry (unknown keys, bad URL, duplicate id, impossible fps or size, unset secret, a bad model or
scorer value) reject that camera only, with a clear message, so that the others keep running.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin, get_type_hints
from urllib.parse import quote, urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from vigil.shared.logging import mask_url
from vigil.shared.schemas import MAX_PAYLOAD_BYTES, CameraId
from vigil.shared.scorer_params import EventParams, ScoringParams

NETWORK_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp"})
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
Interpolation = Literal["area", "linear", "cubic", "nearest"]
Encoding = Literal["gray8", "bgr8", "jpeg"]


class ConfigError(ValueError):
    """The cameras file cannot be used; the text lists every problem found."""


class ReconnectConfig(BaseModel):
    """Exponential backoff with jitter between connection attempts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    initial_s: float = Field(0.5, gt=0, le=60, description="Delay before the first retry")
    max_s: float = Field(30.0, gt=0, le=600, description="Largest delay between retries")
    multiplier: float = Field(2.0, ge=1, le=10, description="Delay growth per failed attempt")
    jitter: float = Field(0.3, ge=0, le=1, description="Each delay is scaled by a random factor in [1-jitter, 1]")
    max_attempts: int = Field(0, ge=0, le=1_000_000, description="Give up (offline) after this many; 0 = never")


class CameraOptions(BaseModel):
    """Everything a camera can set; the file's ``defaults`` use the same fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fps: float = Field(10.0, gt=0, le=120, description="Target frames per second after sampling")
    width: int = Field(180, ge=8, le=4096, description="Width of the published frame (model input)")
    height: int = Field(120, ge=8, le=4096, description="Height of the published frame (model input)")
    channels: Literal[1, 3] = Field(1, description="1 = gray, 3 = BGR")
    encoding: Encoding = Field("gray8", description="gray8 / bgr8 raw pixels, or jpeg")
    jpeg_quality: int = Field(90, ge=1, le=100, description="JPEG quality when encoding is jpeg")
    interpolation: Interpolation = Field("area", description="OpenCV resize interpolation")
    rtsp_transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP lower transport")
    loop: bool = Field(False, description="Local files: start again at the end (a new session each pass)")
    realtime: bool | None = Field(None, description="Local files: read at native speed; None = the --realtime flag")
    live: bool | None = Field(None, description="Drop frames when behind real time; None = True for network URLs")
    open_timeout_s: float = Field(10.0, gt=0, le=300, description="Give up opening the source after this")
    read_timeout_s: float = Field(10.0, gt=0, le=300, description="A read that blocks longer is a disconnect")
    max_lag_s: float = Field(2.0, gt=0, le=600, description="Live sources: skip to the next keyframe when this late")
    max_consecutive_errors: int = Field(50, ge=1, le=100_000, description="Decode errors in a row that mean reconnect")
    options: dict[str, str] = Field(default_factory=dict, description="Extra FFmpeg format options")
    reconnect: ReconnectConfig = Field(default_factory=ReconnectConfig)

    @model_validator(mode="after")
    def _check_shape(self) -> CameraOptions:
        if self.encoding == "gray8" and self.channels != 1:
            raise ValueError(f"encoding gray8 needs channels: 1. Received: channels={self.channels}")
        if self.encoding == "bgr8" and self.channels != 3:
            raise ValueError(f"encoding bgr8 needs channels: 3. Received: channels={self.channels}")
        if self.width * self.height * self.channels > MAX_PAYLOAD_BYTES:
            raise ValueError(
                f"a {self.height}x{self.width}x{self.channels} frame exceeds the {MAX_PAYLOAD_BYTES}-byte message limit"
            )
        return self


def _optional_fields(*params: type) -> type[BaseModel]:
    """A pydantic model with every field of the given dataclasses, optional (None = not set), same bounds."""
    fields: dict[str, Any] = {}
    for cls in params:
        hints = get_type_hints(cls, include_extras=True)
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            base, *meta = get_args(hint) if get_origin(hint) is Annotated else (hint,)
            fields[f.name] = (Annotated[(base | None, *meta)] if meta else base | None, None)
    return create_model(f"_{'_'.join(c.__name__ for c in params)}Fields", **fields)


class ScorerOverrides(_optional_fields(ScoringParams, EventParams)):
    """One camera's scorer parameters over the site's: any field of the scorer's ``ScoringParams`` and
    ``EventParams`` (same names and bounds, all optional), e.g. ``{grace_frames: 6000, k: 3}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)


SOURCES = "sources"
"""Validation-context key: False = do not check the source (placeholders unfilled, files elsewhere)."""


Point = tuple[Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)], Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]]
Polygon = Annotated[list[Point], Field(min_length=3, max_length=64)]


class Zones(BaseModel):
    """Where a camera's scorer looks, as polygons of ``[x, y]`` points in fractions of the frame (0..1, so a
    zone survives a resolution change; ``[0, 0]`` is the top left corner).

    ``exclude``: never scored (a road, a tree in the wind). ``include``: when given, only these are scored.
    They apply to the error and motion maps before any maximum is taken.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    include: list[Polygon] = Field(default_factory=list, max_length=32)
    exclude: list[Polygon] = Field(default_factory=list, max_length=32)

    @model_validator(mode="after")
    def _not_degenerate(self) -> Zones:
        for kind in ("include", "exclude"):
            for i, poly in enumerate(getattr(self, kind)):
                area = 0.5 * abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(poly, poly[1:] + poly[:1], strict=True)))
                if area < 1e-4:
                    raise ValueError(f"zones.{kind}[{i}] has no area (its points are on a line or repeated); "
                                     "give at least 3 points [x, y] in fractions of the frame")
        return self


class CameraConfig(CameraOptions):
    """One camera: its id, source URL (secrets filled in when read with sources), options, model and scorer."""

    id: CameraId
    url: str = Field(min_length=1, max_length=4096, description="rtsp://, http(s)://, file path, ...")
    enabled: bool = Field(True, description="False = skip this camera")
    model: Path | None = Field(None, description="This camera's model directory (relative to the cameras file); "
                               "None = the worker's default model")  # fmt: skip
    scorer: ScorerOverrides | None = Field(None, description="This camera's scorer parameters over the site's")
    zones: Zones | None = Field(None, description="Include / exclude polygons: where the scorer looks")
    calibration: Path | None = Field(None, description="This camera's own calibration (`vigil calibrate --camera`), "
                                     "relative to the cameras file; None = its model's")  # fmt: skip

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str, info: ValidationInfo) -> str:
        if not (info.context or {}).get(SOURCES, True):
            return url  # read without sources (worker, scorer): placeholders are not filled in, files may be elsewhere
        return check_url(url)

    @property
    def is_file(self) -> bool:
        """True for a local file source."""
        return url_scheme(self.url) in ("", "file")

    @property
    def is_live(self) -> bool:
        """Whether the source is paced by the camera (drop when behind) rather than read at will."""
        return (not self.is_file) if self.live is None else self.live

    @property
    def masked_url(self) -> str:
        """The URL with credentials masked, for logs and status records."""
        return mask_url(self.url)

    @property
    def av_url(self) -> str:
        """The URL as PyAV / FFmpeg opens it."""
        return self.url[len("file://") :] if self.url.startswith("file://") else self.url


def url_scheme(url: str) -> str:
    """The URL's scheme in lower case, or '' for a plain path."""
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", url)
    return m.group(1).lower() if m else ""


def check_url(url: str) -> str:
    """Validate a source URL; raises ValueError with the masked URL in the text."""
    scheme = url_scheme(url)
    shown = mask_url(url)
    if scheme in ("", "file"):
        path = Path(url[len("file://") :] if scheme == "file" else url)
        if not path.is_file():
            raise ValueError(f"file not found: {path}")
        return url
    if scheme not in NETWORK_SCHEMES:
        raise ValueError(f"unsupported URL scheme {scheme!r} in {shown} (use one of {sorted(NETWORK_SCHEMES)} or a path)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError(f"malformed URL {shown}: invalid host or port") from None  # the parser's text can quote a secret
    if not parts.hostname:
        raise ValueError(f"URL {shown} has no host")
    if port == 0:
        raise ValueError(f"URL {shown} has port 0")
    return url


def expand_secrets(text: str, env: dict[str, str] | None = None, quote_values: bool = False) -> str:
    """Replace ``${NAME}`` by the environment variable NAME, or by the file named in NAME_FILE.

    With ``quote_values`` each value is percent-encoded (``urllib.parse.quote(value, safe="")``), as a
    secret must be inside a URL: a password holding ``/ ? # @`` or a space then stays one password.

    Example:
        >>> expand_secrets("rtsp://u:${PW}@h/x", {"PW": "a/b@c d"}, quote_values=True)
        'rtsp://u:a%2Fb%40c%20d@h/x'

    Raises:
        ValueError: naming the variable (never its value) when neither is set or the file is unreadable.
    """
    env = os.environ if env is None else env

    def _one(m: re.Match[str]) -> str:
        name = m.group(1)
        value = _secret(name, env)
        return quote(value, safe="") if quote_values else value

    return _PLACEHOLDER.sub(_one, text)


def _secret(name: str, env: Any) -> str:
    if name in env:
        return env[name]
    file = env.get(f"{name}_FILE")
    if file is None:
        raise ValueError(f"environment variable {name} (or {name}_FILE) is not set")
    try:
        return Path(file).read_text().strip()
    except OSError as exc:
        raise ValueError(f"cannot read secret file {file} named by {name}_FILE: {exc.strerror}") from None


@dataclass(frozen=True)
class RejectedCamera:
    """A camera entry that was not accepted, and why."""

    who: str  # the entry's id, or "#<index>" when it has none
    message: str
    entry: Any = None  # the raw YAML entry (placeholders not expanded)


@dataclass
class CamerasConfig:
    """The usable cameras and the rejected entries."""

    cameras: list[CameraConfig] = field(default_factory=list)
    errors: list[RejectedCamera] = field(default_factory=list)

    def error_text(self) -> str:
        """All rejections, one per line."""
        return "\n".join(f"camera {e.who}: {e.message}" for e in self.errors)


_TOP_KEYS = {"defaults", "cameras"}


def load_cameras(path: Path, env: dict[str, str] | None = None, *, sources: bool = True) -> CamerasConfig:
    """Read and validate a cameras YAML file.

    Args:
        path: the YAML file; relative file paths inside it (``url``, ``model``) are relative to its folder.
        env: variables for ``${NAME}`` placeholders (default: the process environment).
        sources: fill in the ``${NAME}`` placeholders and check each source (ingest). False reads the rest
            without them (worker, scorer): no secret is needed and file sources need not exist.

    Returns:
        The valid cameras and the per-camera errors.

    Raises:
        ConfigError: the file is unreadable or its structure or defaults are invalid.
    """
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read cameras file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"cameras file {path} is not valid YAML: {exc}") from None
    return parse_cameras(raw, base_dir=path.parent, env=env, source=str(path), sources=sources)


def parse_cameras(
    raw: Any, base_dir: Path, env: dict[str, str] | None = None, source: str = "<cameras>", *, sources: bool = True
) -> CamerasConfig:
    """Validate an already parsed cameras document (see :func:`load_cameras`)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with 'defaults' and 'cameras', got {type(raw).__name__}")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"{source}: unknown top-level keys {sorted(unknown)} (allowed: {sorted(_TOP_KEYS)})")
    defaults = raw.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ConfigError(f"{source}: 'defaults' must be a mapping")
    try:
        CameraOptions.model_validate(defaults)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid defaults: {_explain(exc)}") from None
    entries = raw.get("cameras")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{source}: 'cameras' must be a non-empty list")
    out = CamerasConfig()
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        who = str(entry.get("id")) if isinstance(entry, dict) and entry.get("id") else f"#{index}"
        if who in seen:
            msg = f"duplicate camera id (entries {seen[who]} and {index}); entry {index} ignored"
            out.errors.append(RejectedCamera(who, msg, entry))
            continue
        seen.setdefault(who, index)
        try:
            cam = _parse_camera(entry, defaults, base_dir, env, sources)
        except ValueError as exc:
            out.errors.append(RejectedCamera(who, mask_url(str(exc)), entry))
            continue
        if cam.enabled:
            out.cameras.append(cam)
    return out


def _parse_camera(
    entry: Any, defaults: dict[str, Any], base_dir: Path, env: dict[str, str] | None, sources: bool
) -> CameraConfig:
    if not isinstance(entry, dict):
        raise ValueError(f"each camera must be a mapping, got {type(entry).__name__}")
    merged = merge_defaults(defaults, entry)
    fill = expand_secrets if sources else (lambda text, _env, **_kw: text)
    if isinstance(merged.get("url"), str):
        url = merged["url"]
        merged["url"] = _resolve_path(fill(url, env, quote_values=url_scheme(url) not in ("", "file")), base_dir)
    if isinstance(merged.get("options"), dict):
        merged["options"] = {k: fill(str(v), env) for k, v in merged["options"].items()}
    for key in ("model", "calibration"):
        if isinstance(merged.get(key), str):
            merged[key] = _resolve_path(merged[key], base_dir)
    try:
        return CameraConfig.model_validate(merged, context={SOURCES: sources})
    except ValidationError as exc:
        raise ValueError(_explain(exc)) from None


def merge_defaults(defaults: dict[str, Any], camera: dict[str, Any]) -> dict[str, Any]:
    """Camera keys over defaults; nested mappings (``reconnect``, ``options``) merge one level deep."""
    merged = dict(defaults)
    for key, value in camera.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _resolve_path(url: str, base_dir: Path) -> str:
    if url_scheme(url) or Path(url).is_absolute():
        return url
    # absolute, but symlinks kept: a `model: models/cam/current` must follow the link when `vigil retrain` moves it
    return os.path.abspath(base_dir / url)


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:8]:
        loc = ".".join(str(p) for p in err["loc"]) or "<camera>"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)
