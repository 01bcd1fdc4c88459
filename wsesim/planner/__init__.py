"""The best plan, found: a search over the mapping choices (``space``) by a policy
(``search``) that rates candidates with the closed forms and decides the finalists with
the exact ledger and the simulation."""
from wsesim.planner.search import Candidate, SearchResult, fewest_wafers_any, search

__all__ = ["Candidate", "SearchResult", "fewest_wafers_any", "search"]
