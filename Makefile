# Vigil developer commands. `make help` lists them.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
STACK := infra/local/stack.sh
ENV   := set -a; [ -f .state/local.env ] && source .state/local.env; set +a;
HELM  := .state/bin/helm
HELM_VERSION := v3.18.6

.PHONY: help install up down status test test-fast test-faults test-helm test-clone lint smoke bench bench-gpu bench-mmnist demo screenshots settings-doc clean

help:  ## list the commands
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | column -t -s $$'\t'

install:  ## Debian packages, the venv with all Python dependencies, the Kafka jars
	infra/local/install.sh

up: install  ## start Kafka (KRaft) and Redis on 127.0.0.1 (idempotent)
	$(STACK) up

down:  ## stop the Kafka and Redis that `make up` started
	$(STACK) down

status:  ## show whether Kafka and Redis are up
	$(STACK) status

test:  ## the whole suite against real servers (installs and starts what it needs, stops it after)
	infra/local/run_tests.sh -q -ra

test-fast:  ## unit tests only (no servers)
	$(PY) -m pytest -q -m "not integration and not helm and not clone"

$(HELM):
	mkdir -p $(@D) && GOBIN=$(CURDIR)/$(@D) GOFLAGS=-p=1 nice -n 10 go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

test-helm: $(HELM)  ## helm lint + helm template of infra/helm/vigil (builds .state/bin/helm with Go first: >10 min)
	$(PY) -m pytest -q -m helm tests/test_helm.py

test-clone:  ## clone HEAD into a temp dir (no ../shared, no VIGIL_PED2_DIR): make test-fast and a short demo there
	$(PY) -m pytest -q -m clone tests/test_clone.py

test-faults: up  ## the hostile-input and fault tests of issue #15 (docs/reliability.md), one directory per run
	$(ENV) $(PY) -m pytest -q tests/reliability tests/shared/test_telemetry.py tests/shared/test_schemas.py && \
	$(PY) -m pytest -q tests/worker/test_worker_faults.py tests/worker/test_worker_kafka_faults.py && \
	$(PY) -m pytest -q tests/ingest/test_ingest_faults.py

lint:  ## ruff
	$(VENV)/bin/ruff check .

smoke: up  ## publish frames for 4 cameras through Kafka, read them back, round-trip Redis
	$(ENV) $(VENV)/bin/vigil smoke

bench: up  ## all benchmarks (results in docs/benchmarks.md)
	$(ENV) for b in model ingest worker scorer e2e evidence api notify runtime; do $(VENV)/bin/vigil bench $$b || exit 1; done

MMNIST := .state/mmnist
bench-mmnist: install  ## Moving MNIST anomalies, the three models with their documented budgets (~1.5 h on 2 idle cores)
	$(VENV)/bin/vigil mmnist generate --out $(MMNIST)/data.npz --seed 0
	$(VENV)/bin/vigil mmnist train --data $(MMNIST)/data.npz --out $(MMNIST)/prednet --arch prednet --epochs 80 --lr-drop-epoch 60 --minutes 150
	$(VENV)/bin/vigil mmnist train --data $(MMNIST)/data.npz --out $(MMNIST)/convlstm-ae --arch convlstm-ae --epochs 30 --lr-drop-epoch 20 --minutes 60
	$(VENV)/bin/vigil mmnist train --data $(MMNIST)/data.npz --out $(MMNIST)/inpaint --arch inpaint --epochs 15 --lr-drop-epoch 12 --minutes 60
	for m in prednet convlstm-ae inpaint; do $(VENV)/bin/vigil mmnist evaluate --model $(MMNIST)/$$m --data $(MMNIST)/data.npz --out $(MMNIST)/metrics-$$m.json || exit 1; done

bench-gpu:  ## every GPU measurement in one run (< 8 min; JAX backend, no TensorFlow; docs/gpu.md)
	tools/bench_gpu.sh

demo: up  ## the whole pipeline on live RTSP cameras playing Ped2 clips (Ctrl-C stops it)
	$(ENV) $(VENV)/bin/vigil demo $(DEMO_ARGS)

screenshots: up  ## the console's screenshots in docs/screenshots/ (the browser test, writing there instead of a temp folder)
	$(ENV) VIGIL_SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(PY) -m pytest -q tests/api/test_api_console_browser.py

settings-doc:  ## regenerate docs/settings.md from the settings models
	$(PY) -m vigil.tools.settings_ref

clean: down  ## stop servers and remove local state (Kafka data, Redis AOF)
	rm -rf .state
