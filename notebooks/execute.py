"""Executes the notebooks headless against a run, as CI does, and fails on
the first cell that raises. Nothing is written back: the notebooks stay
stored without outputs.

    python notebooks/execute.py [NOTEBOOK ...]

The run is the environment's: WINBACK_OUT, WINBACK_DATA, WINBACK_CONFIG
(default: the demo run under out/demo), WINBACK_BIN for the CLI.
"""

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

HERE = Path(__file__).resolve().parent


def main(names):
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("WINBACK_HEADLESS", "1")
    paths = [Path(n) for n in names] or sorted(HERE.glob("[0-9][0-9]_*.ipynb"))
    failed = 0
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        started = time.monotonic()
        client = NotebookClient(nb, timeout=900, kernel_name="python3",
                                resources={"metadata": {"path": str(HERE)}})
        try:
            client.execute()
        except CellExecutionError as e:
            failed += 1
            print(f"FAILED {path.name}:\n{e}", file=sys.stderr)
            continue
        cells = sum(1 for c in nb.cells if c.cell_type == "code")
        print(f"ok {path.name}: {cells} code cells in {time.monotonic() - started:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
