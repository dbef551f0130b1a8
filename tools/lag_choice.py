"""The alert's lag chosen on the scene's three synthetic sets: smoothing and event rule, jointly with the margin
(docs/model.md, scoring step 15).

Every (``smooth``, event rule, margin) of the registered grid is replayed through the live core on the
``whole``, ``enter`` and ``walker`` sets (:mod:`vigil.tools.scoring_study_cache`); it passes when it meets step
12's criteria on all three (:func:`vigil.tools.margin_choice.passes`). Of those that pass, the largest margin is
chosen, ties going to the configuration nearest the defaults when the step was registered (smooth 5, rule A:
3 of 6, 0.2 s; ``CANDIDATES`` is in that order). Step 15 chose rule D, now the default (k 1 of n 6). No Ped2 test clip is
read. A ``smooth`` other than today's must also keep step 11's bar on the daily-swing simulator, which this tool
does not run; it prints the command.

Usage: ``python -m vigil.tools.lag_choice [--model prednet|ae]`` (needs the three sets' caches; about a minute
per set once cached).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import typer

from vigil.shared.scorer_params import EventParams, ScoringParams
from vigil.tools.margin_choice import GRID, SETS_OF_RULE, figures, passing_margins


@dataclass(frozen=True)
class Candidate:
    """One configuration of the core's lag: the smoothing window and the event rule (k of n, min duration)."""

    smooth: int
    rule: str
    k: int
    n: int
    min_duration_s: float

    def name(self) -> str:
        """E.g. ``smooth 5, A (3 of 6, 0.2 s)``."""
        return f"smooth {self.smooth}, {self.rule} ({self.k} of {self.n}, {self.min_duration_s:g} s)"


RULES = (("A", 3, 6, 0.2), ("B", 2, 4, 0.1), ("C", 2, 3, 0.1), ("D", 1, 1, 0.0))
"""The registered event rules (A was the default when step 15 was registered; D, its choice, is the default now)."""
CANDIDATES = tuple(Candidate(s, *r) for s in (5, 4, 3) for r in RULES)
"""In the registered order of preference: nearest the registration's defaults first (``smooth``, then the rule)."""


def best_margin(by_set: Mapping[str, Mapping[float, Mapping[str, Any]]]) -> float | None:
    """The largest margin that passes on every set (:func:`vigil.tools.margin_choice.passing_margins`), or None.

    Example:
        >>> ok = {"recall": "20/20", "false_alerts": 0, "normal_clip_alerts": 0, "median_delay_s": 0.9}
        >>> best_margin({"a": {-1.0: ok, 0.0: ok}, "b": {-1.0: ok, 0.0: dict(ok, median_delay_s=1.1)}})
        -1.0
    """
    return max(passing_margins(by_set), default=None)


def choose(results: Mapping[Candidate, float | None], order: Sequence[Candidate] = CANDIDATES) -> Candidate | None:
    """The candidate with the largest passing margin; ties to the earliest in ``order``; None if none passes.

    Example:
        >>> a, b = CANDIDATES[:2]
        >>> choose({a: -1.0, b: -0.5}) == b, choose({a: -1.0, b: -1.0}) == a, choose({a: None, b: None})
        (True, True, None)
    """
    passing = [c for c in order if results.get(c) is not None]
    return max(passing, key=lambda c: (results[c], -order.index(c))) if passing else None


def study(model: str) -> tuple[dict[Candidate, float | None], dict[Candidate, dict[float, dict[str, Any]]]]:
    """Every candidate's best margin, and its rows (set -> margin -> figures)."""
    from vigil.tools.scoring_study import load

    data = {name: load(model, name) for name in SETS_OF_RULE}
    best, rows = {}, {}
    for cand in CANDIDATES:
        events = EventParams(k=cand.k, n=cand.n, min_duration_s=cand.min_duration_s)
        rows[cand] = {name: {m: figures(*data[name], m, cand.smooth, events) for m in GRID} for name in SETS_OF_RULE}
        best[cand] = best_margin(rows[cand])
        typer.echo(f"{cand.name()}: best margin {best[cand]}", err=True)
    return best, rows


def table(best: Mapping[Candidate, float | None], rows: Mapping[Candidate, Mapping[str, Mapping[float, Any]]],
          chosen: Candidate | None) -> str:
    """Markdown: each candidate's largest passing margin and its walker-set figures there (or at -1.5)."""
    lines = ["| smooth, event rule | largest margin passing all three sets | walker set there: alerted, false, "
             "on unpainted clips, median delay | median delay whole / enter there |", "|---|---|---|---|"]
    for cand in CANDIDATES:
        m = best[cand]
        at = {name: by_margin[GRID[0] if m is None else m] for name, by_margin in rows[cand].items()}
        w = at["walker"]
        name = f"**{cand.name()}**" if cand == chosen else cand.name()
        where = "none" if m is None else f"{m:g}"
        note = "" if m is not None else f" (at {GRID[0]:g})"
        lines.append(f"| {name} | {where} | {w['recall']}, {w['false_alerts']}, {w['normal_clip_alerts']}, "
                     f"{_s(w)}{note} | {_s(at['whole'])} / {_s(at['enter'])} |")
    return "\n".join(lines)


def _s(row: Mapping[str, Any]) -> str:
    delay = row.get("median_delay_s")
    return "–" if delay is None else f"{delay:.2f} s"


def main(model: str = typer.Option("prednet", help="Committed model of the study: prednet or ae.")) -> None:
    """Print every candidate's largest passing margin and the configuration the rule chooses."""
    from vigil.tools.scoring_study import MODELS

    if model not in MODELS:
        typer.echo(f"error: --model must be one of {sorted(MODELS)}. Received: {model}", err=True)
        raise typer.Exit(2)
    try:
        best, rows = study(model)
    except FileNotFoundError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    chosen = choose(best)
    typer.echo(table(best, rows, chosen))
    if chosen is None:
        typer.echo("\nno configuration passes: nothing changes")
        return
    typer.echo(f"\nchosen: {chosen.name()}, margin {best[chosen]:g}")
    if chosen.smooth != ScoringParams().smooth:
        typer.echo(f"smooth {chosen.smooth} must keep step 11's simulator bar: python -m vigil.tools.simulator_variants "
                   f"--smooth {chosen.smooth} --margin -1.5")


if __name__ == "__main__":
    typer.run(main)
