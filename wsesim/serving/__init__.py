"""Serving many users: a stream of requests through a deployment's plan.

Modules, each importing only those before it: ``kv`` (KV capacity from the ledger),
``costs`` (cycles of a micro-batch at every element), ``arrivals`` (request streams),
``scheduler`` (the policy at the pipeline's entry), ``engine`` (the simpy simulation),
``metrics`` (vLLM's definitions), ``service`` (one study: plan, KV, costs, requests;
runs at a rate), ``capacity`` (the largest rate meeting the SLOs), ``report`` (text,
JSON, trace, plots).
"""
from wsesim.serving.service import Served, Study, prepare, serve

__all__ = ["Served", "Study", "prepare", "serve"]
