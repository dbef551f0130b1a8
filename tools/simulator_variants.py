"""Scoring-core variants on the daily-swing simulator, in the configuration of `vigil bench scorer`.

Usage: ``python -m vigil.tools.simulator_variants [--days 5] [--cameras 3] [--smooth 5,3] [--margin -1.5,-1]``;
prints a markdown table (false alerts per camera per day, anomalies alerted, median delay) for every pair of
``smooth`` and ``threshold_margin``. Used for docs/model.md's choice of ``smooth`` (step 10).
"""

from __future__ import annotations

import typer


def main(days: float = typer.Option(5.0, min=2.0, max=60.0, help="Simulated days per camera."),
         cameras: int = typer.Option(3, min=1, max=50, help="Simulated cameras."),
         smooth: str = typer.Option("5,3", help="Comma-separated smoothing windows (frames)."),
         margin: str = typer.Option("-1.5,-1", help="Comma-separated calibration margins.")) -> None:
    """Print the simulator table of every (smooth, margin) pair."""
    import vigil.tools.bench_scorer as bench

    bench.METHODS = {f"smooth {s}, margin {m:g}": bench.core(smooth=s, threshold_margin=m)
                     for m in (float(x) for x in margin.split(",")) for s in (int(x) for x in smooth.split(","))}
    table, _ = bench.simulator_table(days=days, cameras=cameras)
    typer.echo(table)


if __name__ == "__main__":
    typer.run(main)
