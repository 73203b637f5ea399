"""CPU one dashboard costs to build in the serving process, split by phase; prints markdown tables.

    .venv/bin/python bench/dashboard_cpu.py [--dashboards 40] [--warmup 5] [--screen home]
                                            [--profile 10] [--top 25]

CPU time (`time.process_time`), not wall time: the machine is shared. No SSH and no database:
each dashboard is a `GhstApp` over the fixed data of tests/tui/fakes.py, driven by the real
`SSHDriver` through a `Terminal` whose output is kept in memory, one after the other on one
loop, the way `sshd/session.py` runs them. A dashboard is built once its first frame is out:
the output holds the screen's own text and the key bar's "Log out" (home) or "Log in" (a
guest). What it redraws in the next `SETTLE` seconds (its data loaded: here at once, from the
fakes) is counted apart, and so is its exit: a server pays both per session as well.

Phases come from cProfile over `--profile` more dashboards (slower under the profiler, so only
their shares are meaningful): cumulative time in app construction, compose, CSS application,
layout (the compositor's reflow), rendering of lines (strips) and the driver's writes. They
overlap (CSS is applied while mounting), so they need not add up to the total.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import pstats
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sshd.driver import Terminal, create_hosted_app, run_hosted_app  # noqa: E402
from tests.tui.fakes import fake_app, signed_in_visitor  # noqa: E402
from tui.app import GhstApp  # noqa: E402
from tui.visitor import Visitor  # noqa: E402

SIZE = (100, 30)  # bench/sessions.py's terminal
# After the first frame, how long the CPU spent on the dashboard is still counted.
SETTLE = 0.3
# What the first frame shows, per screen: (the screen's text, the key bar's text).
FIRST_FRAME = {
    "home": ("Signed in as", "Log out"),
    "signup": ("Create your account", "Log in"),
}
# (phase, Textual/ghst functions whose cumulative time it is: file suffix, function name)
PHASES: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("app construction", (("tui/app.py", "__init__"),)),
    ("compose", (("textual/widget.py", "_compose"), ("textual/screen.py", "_compose"))),
    ("CSS application", (("textual/css/stylesheet.py", "apply"),)),
    ("layout (reflow)", (("textual/_compositor.py", "reflow"),)),
    ("render lines", (("textual/_compositor.py", "render_update"),)),
    ("driver writes", (("sshd/driver.py", "flush"),)),
)


def visitor_for(screen: str) -> Visitor:
    if screen == "home":
        return signed_in_visitor()
    return Visitor("203.0.113.7", "newcomer")


class Capture:
    """The client's side of one session: its output, and the CPU time and bytes written when
    the output first shows all of `texts` (the first frame)."""

    def __init__(self, texts: tuple[str, ...]) -> None:
        self.texts = texts
        self.chunks: list[str] = []
        self.written = 0
        self.framed = asyncio.Event()
        self.framed_cpu = 0.0
        self.framed_bytes = 0

    def send(self, data: bytes) -> None:
        self.written += len(data)
        if self.framed.is_set():
            return
        self.chunks.append(data.decode("utf-8", "replace"))
        text = "".join(self.chunks)
        if all(t in text for t in self.texts):
            # Here, not where the waiter wakes up: more may be drawn before it does.
            self.framed_cpu = time.process_time()
            self.framed_bytes = self.written
            self.framed.set()


@dataclass
class Costs:
    construct: float  # CPU seconds
    first_frame: float  # from construction to the first frame
    settle: float  # from the first frame to SETTLE later (what the first second redraws)
    exit: float
    first_frame_bytes: int
    settled_bytes: int


async def one_dashboard(screen: str) -> Costs:
    capture = Capture(FIRST_FRAME[screen])
    terminal = Terminal(capture.send, SIZE)
    visitor = visitor_for(screen)
    started = time.process_time()
    app: GhstApp = create_hosted_app(lambda: fake_app(visitor))
    built = time.process_time()
    task = asyncio.create_task(run_hosted_app(app, terminal))
    await asyncio.wait_for(capture.framed.wait(), 30)
    await asyncio.sleep(SETTLE)
    settled = time.process_time()
    settled_bytes = capture.written
    app.exit()
    await task
    ended = time.process_time()
    terminal.close()
    return Costs(
        construct=built - started,
        first_frame=capture.framed_cpu - built,
        settle=settled - capture.framed_cpu,
        exit=ended - settled,
        first_frame_bytes=capture.framed_bytes,
        settled_bytes=settled_bytes,
    )


def phase_table(profile: cProfile.Profile, count: int, top: int) -> str:
    stats = pstats.Stats(profile, stream=io.StringIO())
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, object]] = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in raw.values())
    lines = [
        f"Under cProfile ({count} dashboards; {1000 * total / count:.0f} ms each with the "
        "profiler's overhead):",
        "",
        "| phase | share of the dashboard's CPU |",
        "|---|---:|",
    ]
    for phase, functions in PHASES:
        cumulative = sum(
            ct
            for (file, _, name), (_, _, _, ct, _) in raw.items()
            if any(file.endswith(suffix) and name == fn for suffix, fn in functions)
        )
        lines.append(f"| {phase} | {100 * cumulative / total:.0f}% |")
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(top)
    lines += ["", "Top functions by own time:", "", "```", *out.getvalue().splitlines()[6:], "```"]
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    for _ in range(args.warmup):
        await one_dashboard(args.screen)
    # As `ghst serve` does once started: what lives as long as the process is not walked again.
    gc.collect()
    gc.freeze()
    rows = [await one_dashboard(args.screen) for _ in range(args.dashboards)]

    def ms(values: list[float]) -> str:
        return f"{1000 * statistics.median(values):.1f} ({1000 * statistics.mean(values):.1f})"

    print(f"{args.dashboards} {args.screen} dashboards at {SIZE[0]}x{SIZE[1]}, one at a time")
    print("CPU ms per dashboard: median (mean). Settle: the first frame to")
    print(f"{SETTLE} s after it (what is redrawn once the screen's data has loaded).")
    print()
    print(
        "| construct | to first frame | construct + first frame | settle | exit "
        "| bytes to first frame | bytes settled |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    cells = (
        ms([r.construct for r in rows]),
        ms([r.first_frame for r in rows]),
        ms([r.construct + r.first_frame for r in rows]),
        ms([r.settle for r in rows]),
        ms([r.exit for r in rows]),
        str(rows[-1].first_frame_bytes),
        str(rows[-1].settled_bytes),
    )
    print("| " + " | ".join(cells) + " |")
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(args.profile):
            await one_dashboard(args.screen)
        profile.disable()
        print()
        print(phase_table(profile, args.profile, args.top))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dashboards", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--screen", choices=sorted(FIRST_FRAME), default="home")
    parser.add_argument("--profile", type=int, default=0, help="dashboards under cProfile")
    parser.add_argument("--top", type=int, default=25)
    asyncio.run(main(parser.parse_args()))
