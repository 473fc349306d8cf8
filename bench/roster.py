"""A week's roster for 7 posts x 168 hours x 120 people: the CP-SAT solver against a greedy pass.

Usage: ``python bench/roster.py [--quick] [--seconds N] [--trace] [--lp-bound]``.  Prints a
table, then one JSON line.

Both rosters are drawn for the same synthetic compound week (``console/roster/sample.py``: a
third of the people guards, staff on weekday office hours, volunteers offering evenings
and weekends) and both are judged by the same independent checker
(``console/roster/check.py``): a roster that breaks a hard rule is reported as such, not
counted.  The solver works lexicographically (least shortfall, then fewest hours); the
figures say whether each phase was proven and, for the second, the gap to its bound.

``roster_week_s`` is the wall time of the solve (model building included), bounded by
``--seconds``; CP-SAT's own workers use every core, and the machine's load during the run
is printed with the figures because on a shared machine it moves them.  ``solver_cpu_s``
is the CPU time the solve used (all its threads): on a machine shared with other work the
wall time says how long the operator waited, the CPU time how much work the solve needed.

``--lp-bound`` adds, after the timed solve, the linear relaxation's bound on the hours
objective by HiGHS (``console.roster.solver.lp_bound``): a reference stronger than the bound
CP-SAT reaches in the limit, too slow to be part of it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# bench/console.py would shadow the console package when this runs as a script from bench/.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from console.roster import greedy  # noqa: E402
from console.roster.check import shortfall_hours, shortfalls, violations  # noqa: E402
from console.roster.sample import compound_week  # noqa: E402
from console.roster.solver import lp_bound, solve  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the same week; a shorter time limit")
    parser.add_argument("--seconds", type=float, help="solver time limit (default 10, or 20 without --quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trace", action="store_true", help="each roster and bound as found (stderr)")
    parser.add_argument(
        "--lp-bound",
        action="store_true",
        help="also the linear relaxation's bound by HiGHS, after the timed solve (a reference, minutes under load)",
    )
    args = parser.parse_args()
    if args.trace:
        logging.basicConfig(stream=sys.stderr, format="%(message)s")
        logging.getLogger("console.roster.solver").setLevel(logging.DEBUG)
    limit = args.seconds or (10.0 if args.quick else 20.0)
    problem = compound_week(seed=args.seed)
    demand = sum(sum(hours) for hours in problem.demand.values())
    load_before = os.getloadavg()[0]

    started = time.perf_counter()
    baseline = greedy.roster(problem)
    greedy_s = time.perf_counter() - started
    greedy_short = shortfall_hours(problem, baseline)
    greedy_untrained = sum(1 for s in shortfalls(problem, baseline) if s.trained_missing)
    greedy_broken = len(violations(problem, baseline))
    greedy_hours = sum(len(hours) for hours in baseline.values())

    cpu = time.process_time()
    result = solve(problem, time_limit_s=limit, hint=baseline)
    solver_cpu = time.process_time() - cpu
    solver_broken = len(violations(problem, result.assignment))
    solver_untrained = sum(1 for s in result.shortfalls if s.trained_missing)
    solver_hours = sum(len(hours) for hours in result.assignment.values())
    proven_shortfall = result.shortfall_bound == result.shortfall_hours + solver_untrained

    reference = math.nan
    if args.lp_bound and result.shortfall_bound == result.shortfall_hours + solver_untrained:
        reference = lp_bound(problem, result.shortfall_bound)
    reference_gap = (result.objective - reference) / result.objective if reference == reference else math.nan

    rows = [
        ("people / posts / hours", f"{len(problem.people)} / {len(problem.posts)} / {problem.hours}", ""),
        ("advice, person-hours", str(demand), ""),
        ("time", f"{result.seconds:.2f} s", f"{greedy_s:.2f} s"),
        ("CPU time (all solver threads)", f"{solver_cpu:.2f} s", ""),
        ("person-hours below the advice", str(result.shortfall_hours), str(greedy_short)),
        ("hours with no trained person", str(solver_untrained), str(greedy_untrained)),
        ("hours stood", str(solver_hours), str(greedy_hours)),
        ("hard rules broken (checker)", str(solver_broken), str(greedy_broken)),
        (
            "shortfall proven least",
            f"yes, at {result.shortfall_proven_s:.2f} s"
            if proven_shortfall
            else f"no (bound {result.shortfall_bound})",
            "",
        ),
        (
            "hours objective / bound / gap",
            f"{result.objective:.0f} / {result.bound:.0f} / {result.gap:.1%}",
            "",
        ),
        ("status", result.status, ""),
    ]
    if args.lp_bound:
        rows.append(("LP relaxation bound (HiGHS) / gap", f"{reference:.0f} / {reference_gap:.1%}", ""))
    print(f"{'measure':<34} {'CP-SAT solver':>26} {'greedy':>12}")
    for name, solver_text, greedy_text in rows:
        print(f"{name:<34} {solver_text:>26} {greedy_text:>12}")
    print(f"load average before the run: {load_before:.1f} (cores: {os.cpu_count()})")
    print(
        json.dumps(
            {
                "roster_week_s": round(result.seconds, 2),
                "time_limit_s": limit,
                "solver_cpu_s": round(solver_cpu, 2),
                "status": result.status,
                "shortfall_proven": proven_shortfall,
                "shortfall_proven_s": round(result.shortfall_proven_s, 2) if proven_shortfall else None,
                "hours_gap": None if result.gap != result.gap else round(result.gap, 4),
                "solver_shortfall_hours": result.shortfall_hours,
                "solver_untrained_hours": solver_untrained,
                "greedy_shortfall_hours": greedy_short,
                "greedy_untrained_hours": greedy_untrained,
                "solver_rules_broken": solver_broken,
                "greedy_rules_broken": greedy_broken,
                "people": len(problem.people),
                "posts": len(problem.posts),
                "hours": problem.hours,
                "load_average": round(load_before, 1),
                "quick": args.quick,
                **(
                    {"lp_bound": round(reference, 1), "lp_gap": round(reference_gap, 4)}
                    if args.lp_bound and reference == reference
                    else {}
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
