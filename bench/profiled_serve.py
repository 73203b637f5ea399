"""`ghst serve` with cProfile switched on and off by signals: where a bench's phase spends CPU.

    python bench/profiled_serve.py <ghst arguments>     (BENCH_PROFILE=<folder>)

SIGUSR1 starts profiling the serving loop's thread, SIGUSR2 stops and writes the stats into
`BENCH_PROFILE`, under the name the file `next` there holds (read them with `python -m pstats`).
The file `on` there exists while profiling: pending signals are handled in the order of their
numbers, so the bench waits for it to come and go rather than send a start and a stop at once. The clock is the thread's CPU time, so time
spent waiting for the network counts for nothing. One serving process only (`--processes 1`):
the signals go to the process the bench started.
"""

from __future__ import annotations

import cProfile
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli.main import main

PROFILE = cProfile.Profile(time.thread_time)


def start(_signum: int, _frame: FrameType | None) -> None:
    PROFILE.enable()
    (Path(os.environ["BENCH_PROFILE"]) / "on").touch()  # the bench waits for it


def stop(_signum: int, _frame: FrameType | None) -> None:
    PROFILE.disable()
    folder = Path(os.environ["BENCH_PROFILE"])
    PROFILE.dump_stats(folder / (folder / "next").read_text().strip())
    PROFILE.clear()
    (folder / "on").unlink()


if __name__ == "__main__":
    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.exit(main(sys.argv[1:]))
