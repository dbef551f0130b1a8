"""What ``threshold_margin`` costs on a model's normal footage: alerts on its calibration clips and held-out clips.

Usage: ``python -m vigil.tools.margin_cost [--model DIR] [--data DIR] [--margin -1.5,-1,-0.5,0]``; prints a
markdown table (docs/scorer.md, "What the margin costs"). For every margin the calibration is refitted on the
card's training clips and both clip sets are replayed through the live core, each clip from a fresh state.
Only training clips are read (no test clip).
"""

from __future__ import annotations

from pathlib import Path

import typer


def margin_rows(model_dir: Path, data: Path | None, margins: list[float]) -> list[str]:
    """One markdown row per margin: threshold, in-sample alerts (total, per hour, within 1 s of a fresh state),
    held-out alerts."""
    from vigil.model.alerting import calibrate
    from vigil.model.data import ped2_dir
    from vigil.model.evaluate import CACHE_DIR, normal_alerts, observations, present_clips
    from vigil.model.live import replay
    from vigil.model.replay import ped2_messages
    from vigil.model.streaming import StreamingPredictor
    from vigil.shared.scorer_params import ScoringParams

    predictor = StreamingPredictor.load(model_dir)
    split = predictor.card.get("data", {})
    root = ped2_dir(data)
    fitted, held = present_clips(root, list(split.get("train_clips", []))), list(split.get("val_clips", []))
    if not fitted:
        raise FileNotFoundError(f"None of the model's calibration clips ({split.get('train_clips')}) is under "
                                f"{root}/train; pass --data with the full UCSD Ped2 (`vigil data ped2`).")
    obs = observations(ped2_messages(root, predictor, CACHE_DIR, fitted + held))
    rows = []
    for margin in margins:
        params = ScoringParams(threshold_margin=margin)
        cal = calibrate([obs[n] for n in fitted], params, int(predictor.config.features.heatmap_stride))
        ins = normal_alerts(replay({n: obs[n] for n in fitted}, cal, params))
        out = normal_alerts(replay({n: obs[n] for n in held}, cal, params))
        rows.append(f"| {margin:g} | {cal.threshold:.2f} | {ins['total_alerts']} in {ins['scored_minutes']} min | "
                    f"{ins['alerts_per_hour']:.0f} | {ins['within_1s_of_start']} | {out['total_alerts']} in "
                    f"{out['scored_minutes']} min |")
    return rows


def main(model: Path = typer.Option(None, help="Model directory (default: the committed Ped2 model)."),
         data: Path = typer.Option(None, help="UCSD Ped2 folder (default: as `vigil evaluate`)."),
         margin: str = typer.Option("-1.5,-1,-0.5,0", help="Comma-separated calibration margins.")) -> None:
    """Print the table of alerts on normal footage for every margin."""
    from vigil.model.streaming import DEFAULT_MODEL_DIR

    typer.echo("| `threshold_margin` | threshold | alerts on the calibration clips (in-sample) | per hour | "
               "within 1 s of a fresh state | held-out clips |\n|---|---|---|---|---|---|")
    try:
        rows = margin_rows(model or DEFAULT_MODEL_DIR, data, [float(x) for x in margin.split(",")])
    except FileNotFoundError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo("\n".join(rows))


if __name__ == "__main__":
    typer.run(main)
