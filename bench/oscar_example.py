"""Write an OSCAR measurement in the formats found in the wild, for trying ``--import-oscar`` (docs/oscar.md).

    python bench/oscar_example.py DIR

An office application measured on 2024-03-05 (Central European Time, +01:00), a folder per scenario,
each with its three files under its own names, each in another of the variants labs have:

- ``Baseline``: 11 runs of 30 s, the idle machine at 48 W; action log ``2024-03-05 09:00:10.250;startTestrun``;
- ``Leerlauf`` (the application open, idle): 11 runs of 30 s at 55 W; stamps without leading zeros
  or milliseconds (``2024-3-5 9:10:00``… written as ``2024-3-5 09:10:00``), ``startTestRun`` capitalised;
- ``Standardnutzungsszenario``: 11 runs of 45 s: ``open document`` 10 s at 95 W, ``edit text`` 20 s at
  70 W, ``save document`` 5 s at 85 W, the rest of the run (10 s) at 60 W; ``date --rfc-3339=ns``
  stamps with their offset, an ``iteration N;`` field first, extra fields, spaces before the names.

The power file (Janitza GridVis, UMG604) is the analyser's export of the whole day, one row per second,
the same in every folder; the collectl file (BOM, CRLF, its columns in another order per folder) covers
the session. Watts carry deterministic noise (σ 0.3 W) around those levels.

Hand-computed figures (noise aside): baseline power 48 W; a standard run 10·95 + 20·70 + 5·85 + 10·60 =
3375 J = 0.9375 Wh, induced (− 48 W × 45 s) 1215 J = 0.3375 Wh, OSCAR's corrected (− the 30 s baseline
run's 1440 J) 1935 J = 0.5375 Wh; a Leerlauf run 1650 J = 0.4583 Wh, induced 210 J = 0.0583 Wh.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

DAY = datetime(2024, 3, 5)
RUNS = 11
SESSION = (DAY + timedelta(hours=8, minutes=59), DAY + timedelta(hours=9, minutes=31))
BASELINE_W, IDLE_W = 48.0, 55.0
STANDARD = [("open document", 10, 95.0), ("edit text", 20, 70.0), ("save document", 5, 85.0)]  # then 10 s at 60 W


def runs(first: datetime, length_s: int) -> list[datetime]:
    return [first + timedelta(seconds=i * (length_s + 10)) for i in range(RUNS)]


BASELINE_RUNS = runs(DAY + timedelta(hours=9, seconds=10), 30)
IDLE_RUNS = runs(DAY + timedelta(hours=9, minutes=10), 30)
STANDARD_RUNS = runs(DAY + timedelta(hours=9, minutes=20), 45)


def level(moment: datetime) -> tuple[float, float]:
    """Watts and CPU % in the second that starts at ``moment``."""
    for start in IDLE_RUNS:
        if start <= moment < start + timedelta(seconds=30):
            return IDLE_W, 4.0
    for start in STANDARD_RUNS:
        offset = (moment - start).total_seconds()
        at = 0
        for _, seconds, watts in STANDARD:
            if at <= offset < at + seconds:
                return watts, 35.0
            at += seconds
        if at <= offset < 45:
            return 60.0, 10.0
    return BASELINE_W, 1.0


def baseline_log() -> str:
    lines = []
    for i, start in enumerate(BASELINE_RUNS):
        ms = timedelta(milliseconds=250 + 37 * i)  # the generator's own delay, different each run
        lines += [f"{start + ms:%Y-%m-%d %H:%M:%S.%f}"[:-3] + ";startTestrun",
                  f"{start + ms + timedelta(seconds=30):%Y-%m-%d %H:%M:%S.%f}"[:-3] + ";stopTestrun"]
    return "\n".join(lines) + "\n"


def idle_log() -> str:
    def loose(moment: datetime) -> str:
        return f"{moment.year}-{moment.month}-{moment.day} {moment:%H:%M:%S}"

    return "".join(f"{loose(s)};startTestRun\n{loose(s + timedelta(seconds=30))};stopTestRun\n" for s in IDLE_RUNS)


def standard_log() -> str:
    def rfc3339(moment: datetime) -> str:
        return f"{moment:%Y-%m-%d %H:%M:%S}.000000000+01:00"

    lines = []
    for i, start in enumerate(STANDARD_RUNS, start=1):
        lines.append(f"iteration {i};{rfc3339(start)};startTestrun;;iteration {i}")
        at = start
        for name, seconds, _ in STANDARD:
            lines += [f"iteration {i};{rfc3339(at)};startAction;  {name}",
                      f"iteration {i};{rfc3339(at + timedelta(seconds=seconds))};stopAction"]
            at += timedelta(seconds=seconds)
        lines.append(f"iteration {i};{rfc3339(start + timedelta(seconds=45))};stopTestrun")
    return "\n".join(lines) + "\n"


def power_file() -> bytes:
    noise = np.random.default_rng(17).normal(0.0, 0.3, 86400)
    lines = ["Wert 1 : Wirkleistung L2 (1s) [UMG604]", "Nummer;Zeit;Wert 1-avg[W];Wert 1-min[W];Wert 1-max[W];"]
    for s in range(86400):
        moment = DAY + timedelta(seconds=s)
        watts = level(moment)[0] + noise[s]
        cells = [f"{w:.3f}".replace(".", ",") for w in (watts, watts - 0.8, watts + 0.9)]
        lines.append(f"{s + 1};{moment:%d.%m.%y, %H:%M:%S};{';'.join(cells)};")
    return ("\r\n".join(lines) + "\r\n").encode("cp1252")


COLLECTL = ["[CPU]User%", "[CPU]Nice%", "[CPU]Sys%", "[CPU]Wait%", "[CPU]Irq%", "[CPU]Soft%", "[CPU]Steal%",
            "[CPU]Idle%", "[CPU]Totl%", "[CPU]Intrpt", "[CPU]Ctx", "[MEM]Tot", "[MEM]Used", "[MEM]Free",
            "[NET]RxPktTot", "[NET]TxPktTot", "[NET]RxKBTot", "[NET]TxKBTot", "[DSK]ReadTot", "[DSK]WriteTot",
            "[DSK]ReadKBTot", "[DSK]WriteKBTot"]


def collectl_file(order: list[str]) -> bytes:
    lines = ["Date Time;" + ";".join(order)]
    moment = SESSION[0]
    while moment < SESSION[1]:
        watts_cpu = level(moment)[1]
        values = dict.fromkeys(COLLECTL, "0")
        values.update({"[CPU]User%": f"{watts_cpu * 0.8:g}", "[CPU]Sys%": f"{watts_cpu * 0.2:g}",
                       "[CPU]Idle%": f"{100 - watts_cpu:g}", "[CPU]Totl%": f"{watts_cpu:g}", "[MEM]Tot": "16303984",
                       "[MEM]Used": "3912000" if watts_cpu < 30 else "4410000", "[NET]RxKBTot": "1",
                       "[DSK]WriteKBTot": "12" if watts_cpu >= 30 else "0"})
        # collectl stamps the end of the interval it reports
        lines.append(f"{moment + timedelta(seconds=1):%d.%m.%Y %H:%M:%S};" + ";".join(values[c] for c in order))
        moment += timedelta(seconds=1)
    return ("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8")


def main(root: Path) -> None:
    power = power_file()
    folders = {"Baseline": ("Aktionen.csv", "UMG604_2024-03-05.csv", "collectl.csv", baseline_log()),
               "Leerlauf": ("leerlauf_log.txt", "gridvis export.csv", "sut-collectl.csv", idle_log()),
               "Standardnutzungsszenario": ("wg.log", "Messung UMG604.csv", "hw.csv", standard_log())}
    for i, (folder, (log, power_name, collectl, text)) in enumerate(folders.items()):
        (root / folder).mkdir(parents=True, exist_ok=False)
        (root / folder / log).write_text(text, encoding="utf-8")
        (root / folder / power_name).write_bytes(power)
        (root / folder / collectl).write_bytes(collectl_file(COLLECTL[i:] + COLLECTL[:i]))
    print(f"wrote {', '.join(str(root / f) for f in folders)}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python bench/oscar_example.py DIR")
    main(Path(sys.argv[1]))
