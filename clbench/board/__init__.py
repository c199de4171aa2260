"""The board stage: from result files to what people read and trust.

    results/ -> rank (tables) -> stats (Friedman / Nemenyi) -> plots, page -> leaderboard/
                             -> check (regressions against a baseline)
                             -> submit (run, verify and publish a new method)

Every module here reads validated result dictionaries (:func:`clbench.results.load_results`)
and writes through :mod:`clbench.atomic`; none of them trains anything except ``submit``, which
hands the runs to :mod:`clbench.run`.
"""
