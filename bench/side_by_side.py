#!/usr/bin/env python3
"""winback against the plain polars + scikit-learn script, side by side.

Generates N subscribers once per size (`winback generate --subscribers N
--seed 1`), then, for each of --runs rounds, runs on the same files:

- `winback run --config configs/demo.toml --data D --out O` (a fresh O each
  time), which writes the seconds and peak memory of each stage to
  O/timings.json;
- the Python reference, `pipeline.py --data D --out O --as-of <data end>`,
  which writes its own timings.json (stages ingest, features, train,
  simulate, score);
- a scan-only pass over the same inputs with polars (every table read, the
  bills grouped by subscriber): the floor the features stage is held to;
- an input and output floor with polars: every column of every input table
  read, then the features stage's own output files (read back untimed from
  winback's run) written again as winback writes them (Parquet, LZ4): what
  any features stage producing those outputs pays before computing
  anything;

each under `/usr/bin/time` (whole-process wall and peak memory). The order
of the two pipelines alternates from round to round. It prints, per size,
the median of each stage and of the whole process for both and their ratio
(winback / reference: below 1 means winback is faster or smaller), and
writes every measurement to <work>/results.json.

Only the standard library: the reference's own environment (a venv with its
requirements.txt) is created on first use under ~/.cache/winback/pyref.

    bench/side_by_side.py --subscribers 100000 1000000 --runs 3

`--score-subscribers 10000000` also times winback's nightly scoring alone
at that size (`winback score --as-of`: validation, features as of the date,
both score files) with the model trained at the largest --subscribers size
(the reference has no such mode).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# winback's stage -> the reference's stage doing the same work.
PAIRS = [
    ("validate", "ingest"),
    ("features", "features"),
    ("train", "train"),
    ("score", "score"),
    ("simulate", "simulate"),
    ("report", None),
]

# A table of the inputs directory `d`: its file, or its directory of parts.
SRC = """
def src(name):
    x = d / f"{name}.parquet"
    return str(x) if x.is_file() else str(d / name / "*.parquet")
"""

SCAN = """
import sys, time, polars as pl
from pathlib import Path
d = Path(sys.argv[1])
""" + SRC + """
t = time.perf_counter()
rows = 0
for name in ["subscribers", "complaints", "referrals", "churn_events", "reactivations", "winback_offers"]:
    rows += pl.scan_parquet(src(name)).select(pl.len()).collect().item()
g = (pl.scan_parquet(src("billing"))
     .group_by("subscriber_id")
     .agg(pl.len(), pl.col("revenue").sum(), pl.col("month").max())
     .collect())
print(time.perf_counter() - t, rows + int(g["len"].sum()))
"""

# Argument 1: the inputs; argument 2: winback's features directory. Prints
# the seconds to read every input column, the seconds to write the outputs,
# and the outputs' rows.
FLOOR = """
import sys, time, tempfile, polars as pl
from pathlib import Path
d, f = Path(sys.argv[1]), Path(sys.argv[2])
""" + SRC + """
t = time.perf_counter()
for name in ["subscribers", "billing", "complaints", "referrals", "churn_events", "reactivations",
             "winback_offers"]:
    pl.scan_parquet(src(name)).collect()
read_s = time.perf_counter() - t
outputs = [pl.read_parquet(p) for p in sorted(f.glob("*.parquet")) + sorted(f.glob("churn_snapshots/*.parquet"))]
with tempfile.TemporaryDirectory(dir=f.parent) as tmp:
    t = time.perf_counter()
    for i, x in enumerate(outputs):
        x.write_parquet(f"{tmp}/{i}.parquet", compression="lz4")
    write_s = time.perf_counter() - t
print(read_s, write_s, sum(x.height for x in outputs))
"""

def run(cmd: list[str], log: Path, env: dict | None = None) -> tuple[float, float]:
    """Runs cmd under /usr/bin/time; returns (wall seconds, peak MiB)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as t:
        with open(log, "w") as out:
            p = subprocess.run(
                ["/usr/bin/time", "-f", "%e %M", "-o", t.name, *cmd],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        if p.returncode != 0:
            sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}; see {log}")
        wall, kib = t.read().split()[-2:]
    return float(wall), int(kib) / 1024


def reference_python(reference: Path, given: str | None) -> str:
    if given:
        return given
    venv = Path.home() / ".cache/winback/pyref"
    req = reference / "requirements.txt"
    stamp = venv / ".requirements"
    if not (venv / "bin/python").exists() or not stamp.exists() or stamp.read_text() != req.read_text():
        print(f"== the reference's environment in {venv}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin/pip"), "install", "-q", "--disable-pip-version-check", "-r", str(req)],
            check=True,
        )
        stamp.write_text(req.read_text())
    return str(venv / "bin/python")


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def fmt(x: float, unit: str = "") -> str:
    if x != x:
        return "-"
    return f"{x:,.1f}{unit}"


def ratio(a: float, b: float) -> str:
    return "-" if a != a or b != b or b == 0 else f"{a / b:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subscribers", type=int, nargs="+", default=[100_000])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--winback", default=str(REPO / "target/release/winback"))
    ap.add_argument("--config", default=str(REPO / "configs/demo.toml"))
    ap.add_argument("--reference", default=str(REPO.parent / "shared/bench/python_reference"))
    ap.add_argument("--python", help="the reference's Python (default: a venv made on first use)")
    ap.add_argument("--work", default="/tmp/winback-bench")
    ap.add_argument("--as-of", default="2025-12-31", help="the generated history's end")
    ap.add_argument("--score-subscribers", type=int, nargs="*", default=[],
                    help="sizes at which to time `winback score` alone")
    a = ap.parse_args()

    winback = Path(a.winback)
    if not winback.is_file():
        sys.exit(f"{winback} does not exist: `cargo build --release` builds it (or pass --winback)")
    reference = Path(a.reference)
    if not (reference / "pipeline.py").is_file():
        sys.exit(f"no pipeline.py under {reference} (pass --reference)")
    py = reference_python(reference, a.python)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": os.uname().nodename, "cores": os.cpu_count(), "runs": a.runs, "sizes": {}}
    env = dict(os.environ, WINBACK_LOG="winback=info")

    for n in a.subscribers:
        data = generated(winback, work, n)
        size: dict = {"winback": [], "reference": [], "scan": [], "floor": []}
        for r in range(a.runs):
            order = ["winback", "reference"] if r % 2 == 0 else ["reference", "winback"]
            for who in order:
                out = work / f"out-{who}-{n}"
                shutil.rmtree(out, ignore_errors=True)
                log = work / f"{who}-{n}-run{r + 1}.log"
                print(f"== {n:,} subscribers, round {r + 1}/{a.runs}: {who}", file=sys.stderr)
                if who == "winback":
                    cmd = [str(winback), "run", "--config", a.config, "--data", str(data), "--out", str(out)]
                    wall, peak = run(cmd, log, env)
                    t = json.loads((out / "timings.json").read_text())
                    stages = {s["stage"]: s["seconds"] for s in t["stages"]}
                else:
                    cmd = [py, str(reference / "pipeline.py"), "--data", str(data), "--out", str(out),
                           "--as-of", a.as_of]
                    wall, peak = run(cmd, log)
                    t = json.loads((out / "timings.json").read_text())
                    stages = {k: v["seconds"] for k, v in t["stages"].items()}
                    # The cross-validation workers are processes of their own.
                    peak = max(peak, t["peak_rss_mb"] + t.get("cv_workers_peak_rss_mb", 0.0))
                size[who].append({"wall": wall, "peak_mib": peak, "stages": stages})
            t0 = time.perf_counter()
            p = subprocess.run([py, "-c", SCAN, str(data)], capture_output=True, text=True, check=True)
            scan_s, rows = p.stdout.split()
            size["scan"].append({"seconds": float(scan_s), "rows": int(rows),
                                 "process": time.perf_counter() - t0})
            p = subprocess.run([py, "-c", FLOOR, str(data), str(work / f"out-winback-{n}" / "features")],
                               capture_output=True, text=True, check=True)
            read_s, write_s, rows = p.stdout.split()
            size["floor"].append({"read": float(read_s), "write": float(write_s), "rows": int(rows)})
        results["sizes"][str(n)] = size
        (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")

        w, p_ = size["winback"], size["reference"]
        print(f"\n{n:,} subscribers, median of {a.runs} runs ({winback.name} vs the Python reference)")
        print(f"{'stage':<22}{'winback s':>12}{'reference s':>13}{'ratio':>8}")
        for ws, ps in PAIRS:
            wm = median([x["stages"].get(ws, float("nan")) for x in w])
            pm = median([x["stages"].get(ps, float("nan")) for x in p_]) if ps else float("nan")
            label = ws if ps in (None, ws) else f"{ws} / {ps}"
            print(f"{label:<22}{fmt(wm):>12}{fmt(pm):>13}{ratio(wm, pm):>8}")
        wm, pm = median([x["wall"] for x in w]), median([x["wall"] for x in p_])
        print(f"{'whole process, wall':<22}{fmt(wm):>12}{fmt(pm):>13}{ratio(wm, pm):>8}")
        wm, pm = median([x["peak_mib"] for x in w]), median([x["peak_mib"] for x in p_])
        print(f"{'peak memory, MiB':<22}{fmt(wm):>12}{fmt(pm):>13}{ratio(wm, pm):>8}")
        sm = median([x["seconds"] for x in size["scan"]])
        fm = median([x["stages"].get("features", float("nan")) for x in w])
        print(f"scan-only pass (polars, every table, bills grouped by subscriber): {sm:.2f} s; "
              f"winback's features stage is {ratio(fm, sm)} times it")
        rm = median([x["read"] for x in size["floor"]])
        wm = median([x["write"] for x in size["floor"]])
        rows = size["floor"][0]["rows"] if size["floor"] else 0
        print(f"input and output floor (polars: every input column read {rm:.2f} s, the features' "
              f"{rows:,} output rows written as LZ4 Parquet {wm:.2f} s): {rm + wm:.2f} s, "
              f"{ratio(rm + wm, sm)} times the scan; winback's features stage is {ratio(fm, rm + wm)} "
              f"times the floor")
    for n in a.score_subscribers:
        data = generated(winback, work, n)
        largest = max(a.subscribers)
        models = work / f"out-winback-{largest}" / "models"
        version = sorted(p for p in models.glob("v*") if p.is_dir())[-1]
        size = []
        for r in range(a.runs):
            out = work / f"out-score-{n}"
            shutil.rmtree(out, ignore_errors=True)
            print(f"== {n:,} subscribers, score round {r + 1}/{a.runs}", file=sys.stderr)
            cmd = [str(winback), "score", "--config", a.config, "--data", str(data), "--out", str(out),
                   "--model", str(version), "--as-of", a.as_of]
            wall, peak = run(cmd, work / f"score-{n}-run{r + 1}.log", env)
            size.append({"wall": wall, "peak_mib": peak})
        results.setdefault("score", {})[str(n)] = size
        (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        print(f"\n`winback score --as-of {a.as_of}` on {n:,} subscribers (model {version.name} from the "
              f"{largest:,} run), median of {a.runs}: {median([x['wall'] for x in size]):.1f} s, "
              f"{median([x['peak_mib'] for x in size]) / 1024:.2f} GiB peak")
    return 0


def generated(winback: Path, work: Path, n: int) -> Path:
    """The generated history of n subscribers (seed 1), made once."""
    data = work / f"data-{n}"
    mark = data / ".generated"
    if not mark.exists():
        print(f"== generating {n:,} subscribers into {data}", file=sys.stderr)
        shutil.rmtree(data, ignore_errors=True)
        run([str(winback), "generate", "--subscribers", str(n), "--seed", "1", "--out", str(data)],
            work / f"generate-{n}.log")
        mark.write_text("seed 1\n")
    return data


if __name__ == "__main__":
    sys.exit(main())
