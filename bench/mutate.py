"""Mutation testing of the computing core with cosmic-ray: `make mutate` (before a release; not part of `make test`).

cosmic-ray plants one small bug (a mutant) at a time in a module, in place, and runs the tests that cover it: the
editable install imports the package's modules from this tree (pyproject.toml maps the top-level folders to
mltelemetry.*), so the tests see each mutant. A mutant the tests do not notice *survived*: either a gap in the
tests, or a change that computes the same thing (equivalent). bench/mutation.md lists the survivors reviewed.

Per module this writes bench/results/mutation/<module>.json: the score, the counts, and each survivor's diff. The
session (one per version of the module's source) is kept under .cache/mutation/, so a time-boxed run resumes
where it stopped: `make mutate MODULES=analysis/energy.py TIME_BOX=1200`; after tests are added to kill survivors,
`make mutate MODULES=analysis/energy.py SURVIVORS=1` runs only those again.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.metadata
import json
import os
import re
import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "mutation"
SESSIONS = ROOT / ".cache" / "mutation"

# The analysis tests left out of a mutant's run: those that start processes or render a report in a browser
ANALYSIS_SLOW = "not cli_json and not variants_from and not csv_when and not errors_are"

# The modules mutated, each with the tests that cover it: in-process tests, fast enough to run once per mutant
# (a mutant costs one pytest start-up plus these tests). Add a module here, or point a split module's successors
# at their tests, and `make mutate` picks it up.
MODULES: dict[str, str] = {
    "analysis/energy.py": "tests/unit/test_analysis.py tests/unit/test_annotator_energy.py"
                          " tests/unit/test_energy_edges.py"
                          " -k 'not cli_json and not variants and not baseline_margin and not csv_when"
                          " and not errors_are and not several_hosts'",
    "exporters/counters.py": "tests/unit/test_counters.py tests/unit/test_gpu.py",
    "exporters/pm/collector.py": "tests/unit/test_pm_exporter.py tests/unit/test_pm_collector_edges.py",
    "exporters/gpu/collector.py": "tests/unit/test_gpu.py tests/unit/test_gpu_busy.py"
                                  " tests/unit/test_gpu_collector_edges.py -k 'not whatever_the_scrape_interval'",
    "mltelemetry/store.py": "tests/unit/test_store.py tests/integration/test_store_edges.py"
                            " tests/unit/test_store_faults_unit.py tests/unit/test_store_encoding.py",
    "mltelemetry/influx.py": "tests/unit/test_influx_unit.py tests/unit/test_influx_edges.py"
                             " tests/unit/test_influx_faults_unit.py tests/unit/test_influx_gaps.py",
    # the campaign analysis, split since the scores of bench/mutation.md into the providers of analysis/figures/: each
    # with the in-process tests that check its figures (grep the tests for the provider's columns and notes)
    **{f"analysis/figures/{name}.py": "tests/unit/test_analysis.py tests/unit/test_analysis_figures.py"
                                      " tests/unit/test_analysis_baseline_edges.py tests/unit/test_analysis_gpus.py"
                                      " tests/unit/test_analysis_pipeline.py tests/unit/test_figures_gaps.py"
                                      f" -k '{ANALYSIS_SLOW}'" for name in ("wall", "baseline")},
    # the windows' flags: the notes of a backwards window, the meter's, a partial GPU sum's, a sensor's coverage
    "analysis/figures/flags.py": "tests/unit/test_analysis.py tests/unit/test_analysis_figures.py"
                                 " tests/unit/test_analysis_gpus.py tests/unit/test_figures_gaps.py"
                                 f" -k '{ANALYSIS_SLOW}'",
    # the training script's fields, time and energy to target (also compared across variants), per token, CodeCarbon
    "analysis/figures/training.py": "tests/unit/test_analysis.py tests/unit/test_analysis_figures.py"
                                    " tests/unit/test_analysis_compare.py tests/unit/test_figures_gaps.py"
                                    f" -k '{ANALYSIS_SLOW}'",
    # each GPU's share: only campaigns with several GPUs reach it
    "analysis/figures/gpus.py": "tests/unit/test_analysis_gpus.py tests/unit/test_figures_gaps.py"
                                f" -k '{ANALYSIS_SLOW}'",
    # GPU and RAPL energy, ours or the standard exporters' (--sensor-exporters), per host
    "analysis/figures/device.py": "tests/unit/test_analysis.py tests/unit/test_analysis_figures.py"
                                  " tests/unit/test_analysis_gpus.py tests/unit/test_analysis_sources_unit.py"
                                  " tests/unit/test_figures_gaps.py"
                                  f" -k '{ANALYSIS_SLOW}'",
}

# The operators left out, as regular expressions on cosmic-ray's operator names (`cosmic-ray operators` lists
# them). Kept: +-*/ swapped among themselves, & and | swapped (numpy masks), comparison boundaries (< to <=) and
# negations (< to >=), == and !=, is and is not, in and not in, `not` added or removed, and/or, True/False, numbers
# +-1, break/continue, loops run zero times, exception types. Left out, as mostly nonsense for this code or
# killed by any test at all: shifts, xor, **, %, //, +-*/ to and from bitwise operators, comparisons to their
# other orders (< to >, to ==), unary ~ and `not` in place of a minus, removed decorators, variable replacers.
EXCLUDE_OPERATORS = [
    r"core/ReplaceBinaryOperator_.*_(LShift|RShift|BitXor|Pow|Mod|FloorDiv)$",
    r"core/ReplaceBinaryOperator_(LShift|RShift|BitXor|Pow|Mod|FloorDiv)_",
    r"core/ReplaceBinaryOperator_(Add|Sub|Mul|Div)_(BitAnd|BitOr)$",
    r"core/ReplaceBinaryOperator_(BitAnd|BitOr)_(Add|Sub|Mul|Div)$",
    r"core/ReplaceComparisonOperator_(Lt|LtE|Gt|GtE|Eq|NotEq)_(Is|IsNot)$",
    r"core/ReplaceComparisonOperator_(Is|IsNot)_(Lt|LtE|Gt|GtE|Eq|NotEq)$",
    r"core/ReplaceComparisonOperator_Lt_(Gt|Eq|NotEq)$",
    r"core/ReplaceComparisonOperator_LtE_(GtE|Eq|NotEq)$",
    r"core/ReplaceComparisonOperator_Gt_(Lt|Eq|NotEq)$",
    r"core/ReplaceComparisonOperator_GtE_(LtE|Eq|NotEq)$",
    r"core/ReplaceComparisonOperator_(Eq|NotEq)_(Lt|LtE|Gt|GtE)$",
    r"core/ReplaceUnaryOperator_(UAdd|USub|Invert|Not)_(Invert|Not)$",
    r"core/ReplaceUnaryOperator_(Invert|Not)_",
    r"core/RemoveDecorator$",
    r"core/Variable(Replacer|Inserter)$",
]


def tool(name: str) -> str:
    """A console script of the interpreter's environment (cosmic-ray is installed with the `mutate` extra)."""
    return str(Path(sys.executable).parent / name)


def test_command(tests: str) -> str:
    return f"{shlex.quote(sys.executable)} -m pytest -x -q -p no:cacheprovider {tests}"


def config(module: str, tests: str, timeout_s: float) -> str:
    """cosmic-ray's configuration for one module, as TOML."""
    command = test_command(tests)
    excludes = ", ".join(json.dumps(e) for e in EXCLUDE_OPERATORS)
    return (f'[cosmic-ray]\nmodule-path = {json.dumps(module)}\ntimeout = {timeout_s}\nexcluded-modules = []\n'
            f'test-command = {json.dumps(command)}\n[cosmic-ray.distributor]\nname = "local"\n'
            f'[cosmic-ray.filters.operators-filter]\nexclude-operators = [{excludes}]\n')


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def in_annotation(diff: str | None) -> bool:
    """Whether a mutant only turned a union type annotation's ``|`` into ``&`` (the code imports annotations from
    __future__, so they are never evaluated: such a mutant is equivalent by construction)."""
    changed = [line for line in (diff or "").splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    if len(changed) != 2:
        return False
    before, after = changed[0][1:], changed[1][1:]
    return after == before.replace(" | None", " & None", 1) and bool(re.search(r"(:|->)[^=]*& None", after))


def summary(session: Path) -> dict:
    """Counts of the session's mutants by outcome, and the survivors with their diffs."""
    db = sqlite3.connect(session)
    rows = db.execute(
        "SELECT s.operator_name, s.occurrence, s.start_pos_row, r.worker_outcome, r.test_outcome, r.diff"
        " FROM mutation_specs s LEFT JOIN work_results r ON r.job_id = s.job_id ORDER BY s.start_pos_row").fetchall()
    db.close()
    counts = {"mutants": len(rows), "skipped_operator": 0, "pending": 0, "killed": 0, "survived": 0,
              "survived_in_annotations": 0, "incompetent": 0}
    survivors = []
    for operator, occurrence, line, worker, outcome, diff in rows:
        worker, outcome = (worker or "").lower() or None, (outcome or "").lower()  # stored as enum names
        if worker == "skipped":
            counts["skipped_operator"] += 1
        elif worker is None:
            counts["pending"] += 1
        elif outcome == "survived":
            counts["survived"] += 1
            annotation = in_annotation(diff)
            counts["survived_in_annotations"] += annotation
            survivors.append({"line": line, "operator": operator, "occurrence": occurrence, "diff": diff,
                              **({"equivalent": "a type annotation: never evaluated"} if annotation else {})})
        elif outcome == "killed":
            counts["killed"] += 1
        else:  # the mutant did not import or the worker failed: neither killed nor survived
            counts["incompetent"] += 1
    tested = counts["killed"] + counts["survived"] - counts["survived_in_annotations"]
    counts["score_percent"] = round(100 * counts["killed"] / tested, 1) if tested else None  # of the mutants that
    # could change what the code does: those in annotations (`float | None` to `float & None`) cannot
    return {"counts": counts, "survivors": survivors}


def retest_survivors(session: Path, test_command: str, timeout_s: float,
                     listed: set[tuple[int, str, int]] | None = None) -> None:
    """Run each surviving mutant again against the tests as they are now (after tests were added to kill them).
    ``listed``: in a session rebuilt because its file was lost, the mutants to run, as (line, operator, occurrence)
    of the survivors of the module's last results file."""
    from cosmic_ray.mutating import mutate_and_test
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome

    with use_db(str(session), WorkDB.Mode.open) as db:
        if listed is None:
            items = [item for item, result in db.completed_work_items if result.test_outcome == TestOutcome.SURVIVED]
        else:
            items = [item for item in db.pending_work_items
                     if any((m.start_pos[0], m.operator_name, m.occurrence) in listed for m in item.mutations)]
        for item in items:
            db.set_result(item.job_id, mutate_and_test(item.mutations, test_command, timeout_s))


def listed_survivors(results: Path, source_hash: str) -> set[tuple[int, str, int]]:
    """The survivors of a results file of this very source (a lost session rebuilt: the same mutants, new ids)."""
    last = json.loads(results.read_text()) if results.exists() else {}
    if last.get("source_sha256_12") != source_hash:
        sys.exit(f"mutate: no session of this version of the module to re-run the survivors of ({results.name} is of"
                 " another version or missing); run a sample first")
    return {(s["line"], s["operator"], s["occurrence"]) for s in last["survivors"]}


def run_module(module: str, time_box_s: float | None, timeout_s: float, survivors_only: bool = False) -> dict:
    if git("status", "--porcelain", "--", module):
        sys.exit(f"mutate: {module} has uncommitted changes; commit them first (cosmic-ray mutates it in place)")
    source_hash = hashlib.sha256((ROOT / module).read_bytes()).hexdigest()[:12]
    name = module.replace("/", "_").removesuffix(".py")
    SESSIONS.mkdir(parents=True, exist_ok=True)
    cfg, session = SESSIONS / f"{name}.toml", SESSIONS / f"{name}-{source_hash}.sqlite"
    cfg.write_text(config(module, MODULES[module], timeout_s))
    listed = None
    if not session.exists():  # a new session for each version of the module; an existing one resumes
        if survivors_only:  # the session was lost (a cleaned .cache, another clone): its survivors run again
            listed = listed_survivors(RESULTS / f"{name}.json", source_hash)
        subprocess.run([tool("cosmic-ray"), "init", str(cfg), str(session)], cwd=ROOT, check=True)
        subprocess.run([tool("cr-filter-operators"), str(session), str(cfg)], cwd=ROOT, check=True)
        if subprocess.run([tool("cosmic-ray"), "baseline", str(cfg)], cwd=ROOT).returncode != 0:
            session.unlink()
            sys.exit(f"mutate: the tests of {module} fail on the unmutated code: {MODULES[module]}")
    started = datetime.datetime.now(datetime.timezone.utc)
    try:
        if survivors_only:
            retest_survivors(session, test_command(MODULES[module]), timeout_s, listed)
        else:
            subprocess.run([tool("cosmic-ray"), "exec", str(cfg), str(session)], cwd=ROOT, timeout=time_box_s)
    except subprocess.TimeoutExpired:
        print(f"mutate: {module}: time box of {time_box_s:.0f} s over; the rest is pending", file=sys.stderr)
    finally:  # a run stopped half-way may leave the last mutant in place: the module was clean before
        if git("status", "--porcelain", "--", module):
            git("checkout", "--", module)
    result = {
        "module": module,
        "tool": f"cosmic-ray {importlib.metadata.version('cosmic-ray')}",
        "commit": git("rev-parse", "HEAD"),
        "source_sha256_12": source_hash,
        "command": f"make mutate MODULES={module}" + (" SURVIVORS=1" if survivors_only else ""),
        "test_command": MODULES[module],
        "excluded_operators": EXCLUDE_OPERATORS,
        "last_run_utc": started.isoformat(timespec="seconds"),
        **summary(session),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def table() -> str:
    """The score table of bench/mutation.md, from the results files."""
    lines = ["| module | mutants (kept operators) | run | killed | survived (equivalent: annotations) | pending |"
             " score | commit |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for path in sorted(RESULTS.glob("*.json")):
        r = json.loads(path.read_text())
        c = r["counts"]
        kept = c["mutants"] - c["skipped_operator"]
        run = c["killed"] + c["survived"] + c["incompetent"]
        lines.append(f"| `{r['module']}` | {kept} | {run} | {c['killed']} | {c['survived']} "
                     f"({c.get('survived_in_annotations', 0)}) | {c['pending']} | {c['score_percent']} % | "
                     f"`{r['commit'][:7]}` |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"modules to mutate (default: all of {', '.join(MODULES)})")
    parser.add_argument("--time-box", type=float, help="seconds per module; what is left stays pending")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds one mutant's tests may run before it counts as killed (a hang)")
    parser.add_argument("--survivors", action="store_true",
                        help="only run the surviving mutants again, against the tests as they are now")
    parser.add_argument("--table", action="store_true", help="print the score table of the results files and stop")
    args = parser.parse_args()
    if args.table:
        print(table())
        return
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"not in the module list: {', '.join(unknown)}")
    os.chdir(ROOT)  # cosmic-ray names the modules relative to the repository root
    for module in args.modules or MODULES:
        counts = run_module(module, args.time_box, args.timeout, args.survivors)["counts"]
        print(f"{module}: {counts['killed']} killed, {counts['survived']} survived, {counts['pending']} pending,"
              f" {counts['incompetent']} incompetent: {counts['score_percent']} % killed")


if __name__ == "__main__":
    main()
