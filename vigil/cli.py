"""The `vigil` command-line entry point.

Each area of the project owns its commands in its own module, which exposes
``register(app, bench)``; this root only assembles them. Heavy imports (TensorFlow, PyAV,
Faust) happen inside the command functions, so ``vigil --help`` stays fast.
"""

from __future__ import annotations

import importlib
import logging

import typer

app = typer.Typer(
    name="vigil",
    help="Vigil: streaming video anomaly detection for many live cameras.",
    no_args_is_help=True,
    add_completion=False,
)
bench_app = typer.Typer(help="Measure speed and memory; results go to docs/benchmarks.md.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

# Modules that contribute commands, each with register(app, bench_app).
COMMAND_MODULES = (
    "vigil.shared.cli",
    "vigil.services.ingest.cli",
    "vigil.model.cli",
    "vigil.model.mmnist_cli",
    "vigil.model.export_cli",
    "vigil.model.retrain_cli",
    "vigil.model.classifier_cli",
    "vigil.model.tune",
    "vigil.services.worker.cli",
    "vigil.services.scorer.cli",
    "vigil.services.api.cli",
    "vigil.services.evidence.cli",
    "vigil.services.notify.cli",
    "vigil.tools.cli",  # development tools: demo, smoke, benchmarks
)

log = logging.getLogger(__name__)


def _register_all() -> None:
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(app, bench_app)


def main() -> None:
    """Run the CLI."""
    _register_all()
    app()


if __name__ == "__main__":
    main()
