"""The best plan, found: a search over the mapping choices (``space``) by a policy
(``policy``: the function :func:`search`) that rates candidates with the closed forms
and decides the finalists with the exact ledger and the simulation.

The policy's module is ``policy``, not ``search``, so that ``wsesim.planner.search`` is
one thing (the function) whether or not the module was imported.
"""
from wsesim.planner.policy import Candidate, SearchResult, fewest_wafers_any, search

__all__ = ["Candidate", "SearchResult", "fewest_wafers_any", "search"]
