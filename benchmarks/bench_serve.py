"""How long a serving run takes: 10,000 requests of 1,024 prompt and 256 output tokens
through LLaMA-3.1-70B (3.5-bit weights, group-128 fp16 scales and zeros, 16-bit
embeddings and KV cache) on four WSE-3 in a layer pipeline (``mapping: {strategy:
pipeline}``), Poisson arrivals.

Run: python benchmarks/bench_serve.py [--requests N] [--rates R ...]. Prints the wall
time, the simpy events and micro-batches of each run; asserts nothing (targets are in
the issues, not in unit tests).
"""
from __future__ import annotations

import argparse
import time

DEPLOYMENT = {
    "name": "llama-3.1-70b-w3.5-4x-wse3-serve",
    "model": "llama-3.1-70b", "hardware": "wse3", "wafers": 4,
    "quantization": {"weights": "w3.5-g128", "embeddings": "bf16", "kv_cache": "bf16"},
    "workload": {"batch_size": 1, "prompt_tokens": 1024, "output_tokens": 256},
    "mapping": {"strategy": "pipeline"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.5, 1.0, 4.0],
                        help="requests per second (the capacity at a 50 ms p99 TPOT "
                             "is about 0.65; 4 is overload: the KV cache binds)")
    args = parser.parse_args()

    from wsesim.serving import prepare, serve
    from wsesim.specs import deployment_from_mapping
    from wsesim.specs.serving import ServingSpec

    t0 = time.perf_counter()
    dep = deployment_from_mapping(DEPLOYMENT)
    study = prepare(dep, spec=ServingSpec(rate_per_s=args.rates[0], requests=args.requests))
    print(f"plan, ledger, KV capacity ({study.kv.tokens:,} tokens) and costs: "
          f"{time.perf_counter() - t0:.2f} s")
    for rate in args.rates:
        t0 = time.perf_counter()
        s = serve(study, rate).summary
        wall = time.perf_counter() - t0
        print(f"{args.requests:,} requests at {rate:g}/s: {wall:.2f} s wall, "
              f"{s['events']:,} simpy events, {s['micro_batches']:,} micro-batches "
              f"({s['mean_stage_batch']:.2f} decode tokens each); simulated "
              f"{s['duration_s']:,.0f} s, {s['throughput_tokens_per_s']:,.0f} output "
              f"tokens/s, p99 TTFT {s['ttft_s']['p99']:.3f} s, p99 TPOT "
              f"{s['tpot_s']['p99'] * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
