"""Which windows are not trusted, and why: a window that ends before it starts, the meter's reasons
(:meth:`WallEnergy.window_notes <mltelemetry.analysis.figures.wall.WallEnergy.window_notes>`: a blind gap, a silent
meter, no samples at the edges, low coverage, gap seconds), a GPU without energy where others have theirs
(:meth:`GpuEnergy.window_notes <mltelemetry.analysis.figures.gpus.GpuEnergy.window_notes>`) and sensor coverage
below MIN_COVERAGE. A flagged window stays in the table with its note and leaves the statistics."""

from __future__ import annotations

from mltelemetry.analysis.figures.context import MIN_COVERAGE, Context

FIGURES: list[str] = []


def provide(ctx: Context) -> None:
    w = ctx.windows
    for i, e in enumerate(w.events):
        notes_i = ctx.row_notes[i]
        if w.backwards[i]:
            notes_i.append(f"ends {(e.start_ns - e.end_ns) / 1e9:.3f} s before it starts: no figures")
            ctx.flagged[i] = True
            continue
        wall_notes_i, wall_flagged = ctx.wall.window_notes(i, e)
        notes_i += wall_notes_i
        ctx.flagged[i] |= wall_flagged
        if ctx.gpus is not None:  # one GPU's energy missing where others have theirs: no sum over fewer GPUs
            gpu_notes_i, gpus_flagged = ctx.gpus.window_notes(i)
            notes_i += gpu_notes_i
            ctx.flagged[i] |= gpus_flagged
        for name, cov in ctx.sensor_coverage.items():
            if cov[i] < MIN_COVERAGE:
                notes_i.append(f"{name} coverage {cov[i]:.0%} below {MIN_COVERAGE:.0%}")
                ctx.flagged[i] = True



