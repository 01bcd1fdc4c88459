"""How fast the PE-level fidelity runs: the wall time of WaferLLM's MeshGEMV on 120 x 120
WSE-3 PEs (4320 x 4320, two-level allreduce with 8 groups: the validation case
``wse3-meshgemv-p120-m4320``), every PE, router, link and ramp simulated, and its cycles
against the closed form's; beside it the other 120 x 120 kernel cases and a 64 x 64
decode layer.

Run: python benchmarks/bench_pe.py [--repeat N]. Prints the figures; asserts nothing
(the target is in issue 10: the 120 x 120 MeshGEMV in under 10 s on the project's
2-core machine).
"""
from __future__ import annotations

import argparse
import time
from typing import Any, Callable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from wsesim.sim import pe
    from wsesim.specs import load_hardware
    from wsesim.specs.kernel import KernelSpec

    wse3 = load_hardware("wse3")

    def kernel(**kw: Any) -> Callable[[], Any]:
        spec = KernelSpec(hardware=wse3, grid=(120, 120), fidelity="pe", dtype="fp16", **kw)
        return lambda: pe.kernel_op(spec)

    kn, plan = pe.kernels_for("wse3", 64, 64, hidden=1024, context=4096)
    att, mlp = plan.wafers[0].stages[1], plan.wafers[0].stages[2]
    cases = {
        "MeshGEMV 4320 x 4320 on 120 x 120, two-level, 8 groups":
            kernel(op="gemv", m=4320, n=4320, algorithm="two-level", groups=8),
        "MeshGEMV 14400 x 14400 on 120 x 120, two-level, 8 groups":
            kernel(op="gemv", m=14400, n=14400, algorithm="two-level", groups=8),
        "GEMV 720 x 720 on 120 x 120, SDK chain allreduce":
            kernel(op="gemv", m=720, n=720, algorithm="chain"),
        "decode layer, hidden 1024, context 4096, on 64 x 64":
            lambda: pe.layer(kn, att.content, mlp.content, 64, 64, 4096),
    }
    print(f"{'operation':<58} {'PEs':>6} {'events':>8} {'wall s':>7} {'loop s':>7} "
          f"{'PE cycles':>10} {'closed form':>11} {'PE/closed':>9}")
    for name, run in cases.items():
        best_total = best_sim = float("inf")
        result = None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            result = run()
            best_total = min(best_total, time.perf_counter() - t0)
            best_sim = min(best_sim, result.run.sim_s)
        assert result is not None
        pes = result.run.rows * result.run.cols
        print(f"{name:<58} {pes:>6,} {result.events:>8,} {best_total:>7.3f} "
              f"{best_sim:>7.3f} {result.pe_cycles:>10,.1f} {result.model_cycles:>11,.1f} "
              f"{result.ratio:>9.5f}")
    print(f"wall s: the whole call (programs built, simulated, results gathered), best of "
          f"{args.repeat}; loop s: simpy's event loop alone; PE/closed: PE-level cycles "
          "over the closed form's (the tile fidelity).")


if __name__ == "__main__":
    main()
