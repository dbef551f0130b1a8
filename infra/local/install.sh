#!/usr/bin/env bash
# Install what Vigil needs on a fresh Debian machine: Debian packages (Redis, GStreamer RTSP server,
# ffmpeg), the project venv with every Python dependency, and the Kafka jars from Maven Central.
# Idempotent and quick when everything is already there.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3}
VENV=${VIGIL_VENV:-$ROOT/.venv}
log() { printf '[install] %s\n' "$*" >&2; }

DEB_PACKAGES=(redis-server ffmpeg gstreamer1.0-tools gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
  gstreamer1.0-libav python3-gi
  mosquitto chromium chromium-driver)

missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "Debian packages: installing ${missing[*]}"
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp=$VENV/.vigil-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  [[ -x $VENV/bin/python ]] || { log "creating venv $VENV with $($PYTHON --version)"; "$PYTHON" -m venv "$VENV"; }
  log "Python packages: installing vigil[dev] into $VENV (first time: a few minutes)"
  "$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip
  "$VENV/bin/pip" install -q --disable-pip-version-check -e ".[dev]"
  touch "$stamp"
fi

"$ROOT/infra/local/stack.sh" install
log "done"
