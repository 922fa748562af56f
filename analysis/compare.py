"""Two campaigns side by side: the same scenario before and after a change, with the same tests.

``--compare A B`` pairs the scenarios (and variants) the two campaigns share; ``A:cnn B:cnn-small``
pairs the named ones. For each pair and figure: n, mean, standard deviation and 95 % CI on each side, the
difference (B − A, and in % of A), Welch's t-test, Mann–Whitney U and effect sizes (Cohen's d,
Hedges' g, rank-biserial), computed over the ok runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from mltelemetry.analysis import stats
from mltelemetry.analysis.campaign import CampaignAnalysis, records
from mltelemetry.analysis.summary import TESTED_FIGURES, ok_windows, recorded
from mltelemetry.errors import MltelemetryError


@dataclass
class CampaignComparison:
    a: CampaignAnalysis
    b: CampaignAnalysis
    table: pd.DataFrame  # one row per scenario pair and figure
    notes: list[str]

    def to_dict(self) -> dict:
        return {"a": self.a.campaign, "b": self.b.campaign, "notes": self.notes, "comparison": records(self.table),
                "campaigns": {"a": self.a.to_dict(), "b": self.b.to_dict()}}


def split_spec(spec: str) -> tuple[str, str | None]:
    """``campaign`` or ``campaign:scenario``."""
    campaign, _, scenario = spec.partition(":")
    return campaign, scenario or None


Group = tuple[str, str]  # (scenario, variant)


def _groups(analysis: CampaignAnalysis, scenario: str | None = None) -> list[Group]:
    runs = analysis.windows[analysis.windows.action == "run"]
    if scenario is not None:
        runs = runs[runs.scenario == scenario]
    return list(dict.fromkeys(zip(runs.scenario, runs.variant)))


def pairs(a: CampaignAnalysis, b: CampaignAnalysis, scenario_a: str | None,
          scenario_b: str | None) -> list[tuple[Group, Group]]:
    """The groups compared: the named scenarios (each variant with the same variant on the other side, or the one
    group of each), else every scenario and variant the two campaigns share."""
    if scenario_a or scenario_b:
        chosen = (scenario_a or scenario_b, scenario_b or scenario_a)
        for analysis, scenario in ((a, chosen[0]), (b, chosen[1])):
            if scenario not in set(analysis.windows.scenario):
                raise MltelemetryError(f"campaign {analysis.campaign!r} has no scenario {scenario!r}; it has "
                                       f"{', '.join(sorted(set(analysis.windows.scenario)))}")
        groups_a, groups_b = _groups(a, chosen[0]), _groups(b, chosen[1])
        if len(groups_a) == 1 and len(groups_b) == 1:
            return [(groups_a[0], groups_b[0])]
        variants_b = {v for _, v in groups_b}
        shared = [(ga, (chosen[1], ga[1])) for ga in groups_a if ga[1] in variants_b]
        if not shared:
            raise MltelemetryError(f"scenarios {chosen[0]!r} of {a.campaign!r} and {chosen[1]!r} of {b.campaign!r} "
                                   "share no variant")
        return shared
    groups_b = set(_groups(b))
    shared = [g for g in _groups(a) if g in groups_b]
    if not shared:
        raise MltelemetryError(f"campaigns {a.campaign!r} and {b.campaign!r} share no scenario; name the two to "
                               f"compare as {a.campaign}:SCENARIO {b.campaign}:SCENARIO")
    return [(g, g) for g in shared]


def compare_analyses(a: CampaignAnalysis, b: CampaignAnalysis, scenario_a: str | None = None,
                     scenario_b: str | None = None) -> CampaignComparison:
    runs_a, runs_b = (ok_windows(x.windows)[lambda w: w.action == "run"] for x in (a, b))
    rows = []
    for (sa, va), (sb, vb) in pairs(a, b, scenario_a, scenario_b):
        ra = runs_a[(runs_a.scenario == sa) & (runs_a.variant == va)]
        rb = runs_b[(runs_b.scenario == sb) & (runs_b.variant == vb)]
        for figure in TESTED_FIGURES:
            if not (recorded(ra, figure) or recorded(rb, figure)):
                continue
            da, db = stats.describe(ra[figure].to_numpy()), stats.describe(rb[figure].to_numpy())
            tested = stats.compare(ra[figure].to_numpy(), rb[figure].to_numpy())  # B − A, positive when B larger
            rows.append({
                "scenario_a": sa, "variant_a": va, "scenario_b": sb, "variant_b": vb, "figure": figure,
                "n_a": da["n"], "mean_a": da["mean"], "std_a": da["std"], "ci_low_a": da["ci_low"],
                "ci_high_a": da["ci_high"], "shapiro_p_a": da["shapiro_p"],
                "n_b": db["n"], "mean_b": db["mean"], "std_b": db["std"], "ci_low_b": db["ci_low"],
                "ci_high_b": db["ci_high"], "shapiro_p_b": db["shapiro_p"],
                "difference": tested["difference"], "difference_pct": tested["difference_pct"],
                "welch_t": tested["welch_t"], "welch_p": tested["welch_p"],
                "mannwhitney_u": tested["mannwhitney_u"], "mannwhitney_p": tested["mannwhitney_p"],
                "cohens_d": tested["cohens_d"], "hedges_g": tested["hedges_g"],
                "rank_biserial": tested["rank_biserial"], "reason": tested["reason"]})
    notes = [f"{x.campaign}: {note}" for x in (a, b) for note in x.notes]
    return CampaignComparison(a, b, pd.DataFrame(rows), notes)
