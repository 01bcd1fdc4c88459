"""Print the README's validation table from `wsesim validate --format json`.

    python docs/validation_table.py          # paste between the README's table markers

Each row: the case, its metric, the measured and predicted values, the error with the
profile's fitted constants and the leave-one-out error (constants fitted without it).
"""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

UNITS = {"layer_time_s": (1e6, "us"), "time_per_output_token_s": (1e3, "ms"),
         "ttft_s": (1e3, "ms")}


def _value(metric: str, v: float) -> str:
    scale, unit = UNITS.get(metric, (1.0, ""))
    return f"{v * scale:,.2f} {unit}".strip() if unit else f"{v:,.0f}"


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| case | hardware | metric | measured | predicted | error | leave-one-out |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        loo = "" if r["loo_error"] is None else f"{r['loo_error']:+.1%}"
        lines.append(f"| {r['name']} | {r['hardware']} | {r['metric']} | "
                     f"{_value(r['metric'], r['measured'])} | "
                     f"{_value(r['metric'], r['predicted'])} | {r['error']:+.1%} | {loo} |")
    return "\n".join(lines)


def main() -> int:
    out = subprocess.run([sys.executable, "-m", "wsesim", "validate", "--format", "json"],
                         capture_output=True, text=True, check=False)
    data = json.loads(out.stdout)
    rows = data["cases"] if isinstance(data, dict) else data
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
