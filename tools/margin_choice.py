"""A model's calibration margin, chosen on its scene's synthetic sets (docs/model.md, scoring steps 12-14).

For each margin of the grid, a synthetic set (calibration Train001-012, one painted object in each of
Train013-016 x 5 seeds, plus the unpainted Train013-016; :mod:`vigil.tools.scoring_study_cache`) is replayed
through the live core; a margin passes a set when it still meets the issue's targets on it: every painted clip
alerted, no false alert, no alert on an unpainted clip, median delay at most 1.0 s. No Ped2 test clip is read.
Step 12 applied the rule to the ``whole`` set (objects appear whole at the edge), step 13 to the ``enter`` set
(the same objects slide in across the edge); since step 14 the chosen margin is the largest that passes on all
three sets, the third being ``walker`` (real people of the scene, cut out of Train001-012, at 2-3 times walking
speed).

Usage: ``python -m vigil.tools.margin_choice [--model prednet|ae] [--set whole --set enter --set walker]``
(all three by default); prints a markdown table per set and the chosen margin, then the command that writes it
into the model card (``vigil calibrate --model DIR --margin M``). Needs the caches of ``python -m
vigil.tools.scoring_study_cache MODEL_DIR --set SET`` (a few minutes each, full UCSD Ped2). The replay uses the
scorer's current event rule (step 15's since 2026-12-03; steps 12-14 were decided with the rule before it, 3 of 6).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import typer

from vigil.shared.scorer_params import EventParams, ScoringParams

GRID = (-1.5, -1.25, -1.0, -0.75, -0.5, -0.25, 0.0)
"""The registered margins (step 12), from the default up to the largest normal score itself."""
DEFAULT = ScoringParams.threshold_margin
"""Kept when no margin passes: the scorer's default (step 5)."""
MAX_DELAY_S = 1.0
SETS_OF_RULE = ("whole", "enter", "walker")
"""The sets a card's margin must pass since step 14 (each set was made harder than the one before)."""


def passes(row: Mapping[str, Any], max_delay_s: float = MAX_DELAY_S) -> bool:
    """Whether one margin's synthetic result meets the rule: all painted clips alerted, no false alert, no
    alert on an unpainted clip, median delay at most ``max_delay_s``.

    Example:
        >>> passes({"recall": "20/20", "false_alerts": 0, "normal_clip_alerts": 0, "median_delay_s": 0.4})
        True
        >>> passes({"recall": "19/20", "false_alerts": 0, "normal_clip_alerts": 0, "median_delay_s": 0.4})
        False
    """
    hit, total = (int(x) for x in str(row["recall"]).split("/"))
    delay = row.get("median_delay_s")
    return (hit == total and int(row["false_alerts"]) == 0 and int(row["normal_clip_alerts"]) == 0
            and delay is not None and float(delay) <= max_delay_s)


def choose(rows: Mapping[float, Mapping[str, Any]], default: float = DEFAULT) -> float:
    """The largest margin whose row passes (:func:`passes`); ``default`` when none does.

    Example:
        >>> ok = {"recall": "20/20", "false_alerts": 0, "normal_clip_alerts": 0, "median_delay_s": 0.5}
        >>> slow = dict(ok, median_delay_s=1.2)
        >>> choose({-1.5: ok, -1.0: ok, -0.5: slow})
        -1.0
        >>> choose({-1.5: slow})
        -1.5
    """
    good = [m for m, row in rows.items() if passes(row)]
    return max(good) if good else default


def figures(obs: Mapping[str, Any], labels: Mapping[str, Any], margin: float, smooth: int | None = None,
            events: EventParams | None = None) -> dict[str, Any]:
    """One synthetic set's figures at ``margin`` (and, for step 15, a smoothing window and an event rule other
    than the defaults), through the live core (:func:`vigil.tools.scoring_study.run`)."""
    from vigil.tools.scoring_study import Variant, run

    params = ScoringParams(threshold_margin=margin, **({} if smooth is None else {"smooth": smooth}))
    return run(Variant(params=params, events=events or EventParams()), dict(obs), dict(labels))


def study(model: str, margins: Sequence[float], synthetic: str = "enter") -> dict[float, dict[str, Any]]:
    """The synthetic set's figures at each margin."""
    from vigil.tools.scoring_study import load

    obs, labels = load(model, synthetic)
    return {m: figures(obs, labels, m) for m in margins}


def table(rows: Mapping[float, Mapping[str, Any]], chosen: float) -> str:
    """Markdown table of the study, the chosen margin in bold."""
    lines = ["| margin | threshold | painted clips alerted | false alerts | alerts on unpainted clips | median delay | rule |",
             "|---|---|---|---|---|---|---|"]
    for m, r in sorted(rows.items()):
        name = f"**{m:g}**" if m == chosen else f"{m:g}"
        delay = "–" if r.get("median_delay_s") is None else f"{r['median_delay_s']:.2f} s"
        lines.append(f"| {name} | {r['threshold']:.2f} | {r['recall']} | {r['false_alerts']} | {r['normal_clip_alerts']} | "
                     f"{delay} | {'passes' if passes(r) else 'fails'} |")
    return "\n".join(lines)


def choose_all(by_set: Mapping[str, Mapping[float, Mapping[str, Any]]], default: float = DEFAULT) -> float:
    """The largest margin that passes on every set (step 14's rule); ``default`` when none does.

    Example:
        >>> ok = {"recall": "20/20", "false_alerts": 0, "normal_clip_alerts": 0, "median_delay_s": 0.5}
        >>> slow = dict(ok, median_delay_s=1.2)
        >>> choose_all({"enter": {-1.0: ok, 0.0: ok}, "walker": {-1.0: ok, 0.0: slow}})
        -1.0
    """
    good = passing_margins(by_set)
    return max(good) if good else default


def passing_margins(by_set: Mapping[str, Mapping[float, Mapping[str, Any]]]) -> list[float]:
    """The margins that every set has and that pass (:func:`passes`) on each."""
    margins = set.intersection(*(set(rows) for rows in by_set.values())) if by_set else set()
    return [m for m in margins if all(passes(rows[m]) for rows in by_set.values())]


def main(model: str = typer.Option("prednet", help="Committed model of the study: prednet or ae."),
         synthetic: list[str] = typer.Option(list(SETS_OF_RULE), "--set",
                                             help="Synthetic sets the margin must pass, repeatable: whole (step 12), "
                                                  "enter (step 13), walker (step 14); all three by default.")) -> None:
    """Print each synthetic set's table for every margin of the registered grid and the margin the rule chooses:
    the largest that passes on every set given."""
    from vigil.tools.scoring_study import MODELS
    from vigil.tools.scoring_study_cache import SETS

    for name, values, allowed in (("--model", [model], MODELS), ("--set", synthetic, SETS)):
        for value in values:
            if value not in allowed:
                typer.echo(f"error: {name} must be one of {sorted(allowed)}. Received: {value}", err=True)
                raise typer.Exit(2)
    try:
        by_set = {name: study(model, GRID, name) for name in dict.fromkeys(synthetic)}
    except FileNotFoundError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    chosen = choose_all(by_set)
    for name, rows in by_set.items():
        typer.echo(f"\n{name} set (the margin's own pass or fail on it):\n{table(rows, chosen)}")
    where = os.path.relpath(MODELS[model]) if MODELS[model].is_relative_to(Path.cwd()) else MODELS[model]
    typer.echo(f"\nchosen margin (largest that passes on {', '.join(by_set)}): {chosen:g}; write it with "
               f"`vigil calibrate --model {where} --margin {chosen:g}`")


if __name__ == "__main__":
    typer.run(main)
