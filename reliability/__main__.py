"""``python -m reliability [--short] [--only NAME ...]``: run the scenarios, print a summary, exit 1 on a failure."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from reliability.scenarios import FULL, SCENARIOS, SHORT, Outcome


def _report(outcome: Outcome) -> str:
    read, tally = outcome.read, outcome.tally
    answers = ", ".join(f"{answer} x{n}" for answer, n in sorted(tally.answers.items()))
    lines = [f"{'PASS' if outcome.passed else 'FAIL'}  {outcome.name}  ({outcome.seconds:.0f} s)",
             f"      Bundles {outcome.bundles}: complete {read.complete}, absent {read.absent}, partial {read.partial};"
             f" duplicates {read.duplicates}; wrong references {read.wrong_references}",
             f"      answers: {answers}; hung {tally.hung}"]
    lines += [f"      {note}" for note in outcome.notes]
    lines += [f"      ! {failure}" for failure in outcome.failures]
    return "\n".join(lines)


async def _run(names: list[str], short: bool, log_dir: Path) -> list[Outcome]:
    outcomes = []
    for name in names:
        started = time.monotonic()
        try:
            outcome = await SCENARIOS[name](SHORT if short else FULL, log_dir)
        except Exception as exc:  # a scenario that cannot run is a failure of the suite, reported like one
            outcome = Outcome(name, failures=[f"{type(exc).__name__}: {exc}"])
        outcome.seconds = time.monotonic() - started
        print(_report(outcome), flush=True)
        outcomes.append(outcome)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reliability", description=__doc__)
    parser.add_argument("--short", action="store_true", help="CI's version: fewer Bundles, clients and rounds")
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), help="run only these scenarios")
    args = parser.parse_args(argv)
    names = args.only or list(SCENARIOS)
    log_dir = Path(tempfile.mkdtemp(prefix="ifp-reliability-logs-"))
    print(f"reliability suite ({'short' if args.short else 'full'}): {', '.join(names)}; server logs in {log_dir}",
          flush=True)
    started = time.monotonic()
    outcomes = asyncio.run(_run(names, args.short, log_dir))
    failed = [o.name for o in outcomes if not o.passed]
    print(f"{len(outcomes) - len(failed)} of {len(outcomes)} scenarios passed in {time.monotonic() - started:.0f} s"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
