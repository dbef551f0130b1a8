#!/usr/bin/env bash
# The README's test command (`make test`): install, start Kafka and Redis, run the whole suite, and
# stop the servers this run started (servers already running before are left running).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
STACK=$ROOT/infra/local/stack.sh
t0=$SECONDS

"$ROOT/infra/local/install.sh" || exit 1

started=()
"$STACK" status >/dev/null 2>&1 || true
for svc in kafka redis mosquitto; do
  if ! "$STACK" status 2>&1 | grep -q "$svc: up"; then started+=("$svc"); fi
done
cleanup() { for svc in "${started[@]}"; do "$STACK" down "$svc"; done; }
trap cleanup EXIT
for svc in "${started[@]}"; do "$STACK" up "$svc" || exit 1; done
"$STACK" up >/dev/null 2>&1  # writes .state/local.env
# shellcheck disable=SC1091
source "${VIGIL_STATE_DIR:-$ROOT/.state}/local.env"

"$ROOT/.venv/bin/python" -m pytest "$@"
rc=$?
echo "[test] pytest exit code $rc after $((SECONDS - t0)) s in total (install + servers + tests)"
exit $rc
