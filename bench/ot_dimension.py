"""How much minibatch OT lowers the pairing cost, as the dimension grows (lines paper's claim).

For d in 2..64, draw batches of data x and noise z ~ N(0, I) and compare the
mean squared pairing cost per dimension
``mean_i ||x_i - z_pi(i)||^2 / d`` of

* independent pairing (pi = identity: what the baseline trains on),
* exact minibatch OT at batch 256 (OT-CFM's pairing),
* exact minibatch OT at a large batch (2048), a closer proxy for the population W2^2.

Two data sets, both with a per-dimension spread that does not change with d:

* ``mixture``: 8 Gaussians (std 0.3) with centres on a sphere of radius
  2 sqrt(d / 2) (the 2D ``8gaussians`` layout at d = 2);
* ``gaussian``: x ~ N(0, I) itself, where the optimal (population) cost is 0
  and independent pairing costs 2: any cost left is minibatch error.

``gain@256`` is the share of the independent cost that OT at batch 256 removes;
``of_reachable`` is that gain relative to the gain at batch 2048. The lines
paper argues minibatch OT needs batch sizes exponential in d: both columns fall
towards 0 as d grows at a fixed batch.

    python bench/ot_dimension.py [--dims 2,4,8,16,32,64] [--batches 8] [--json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from scipy.optimize import linear_sum_assignment


def sample_data(kind: str, n: int, d: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    if kind == "gaussian":
        return rng.standard_normal((n, d))
    k = rng.integers(0, centres.shape[0], n)
    return centres[k] + 0.3 * rng.standard_normal((n, d))


def pairing_costs(x: np.ndarray, z: np.ndarray) -> tuple[float, float]:
    """(independent, exact OT) mean squared cost per dimension of one batch."""
    cost = (x * x).sum(1)[:, None] + (z * z).sum(1)[None, :] - 2.0 * x @ z.T
    rows, cols = linear_sum_assignment(cost)
    d = x.shape[1]
    return float(np.trace(cost) / len(x) / d), float(cost[rows, cols].mean() / d)


def run(dims: list[int], batch: int = 256, big: int = 2048, batches: int = 8, seed: int = 0,
        kind: str = "mixture") -> list[dict]:
    rows = []
    for d in dims:
        rng = np.random.default_rng([seed, d])
        centres = rng.standard_normal((8, d))
        centres *= 2.0 * np.sqrt(d / 2) / np.linalg.norm(centres, axis=1, keepdims=True)
        small = [pairing_costs(sample_data(kind, batch, d, rng, centres), rng.standard_normal((batch, d)))
                 for _ in range(batches)]
        large = [pairing_costs(sample_data(kind, big, d, rng, centres), rng.standard_normal((big, d)))
                 for _ in range(max(1, batches // 4))]
        indep = float(np.mean([s[0] for s in small] + [b[0] for b in large]))
        ot_small, ot_big = float(np.mean([s[1] for s in small])), float(np.mean([b[1] for b in large]))
        gain = 1 - ot_small / indep
        rows.append({"data": kind, "dim": d, "indep": indep, f"ot@{batch}": ot_small, f"ot@{big}": ot_big,
                     f"gain@{batch}": gain, f"gain@{big}": 1 - ot_big / indep,
                     "of_reachable": gain / max(1 - ot_big / indep, 1e-12)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", default="2,4,8,16,32,64")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--big", type=int, default=2048)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default="mixture,gaussian", help="comma-separated: mixture, gaussian")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    dims = [int(d) for d in args.dims.split(",")]
    rows = [r for kind in args.data.split(",") for r in run(dims, args.batch, args.big, args.batches, args.seed, kind)]
    if args.json:
        print(json.dumps(rows))
        return
    b, B = args.batch, args.big
    print(f"pairing cost per dimension, mean ||x - z||^2 / d, data vs N(0, I); batch {b}, large batch {B}")
    print(f"{'data':>8} {'dim':>4} {'indep':>8} {'OT@' + str(b):>9} {'OT@' + str(B):>9} {'gain@' + str(b):>10} "
          f"{'gain@' + str(B):>11} {'of reachable':>13}")
    for r in rows:
        print(f"{r['data']:>8} {r['dim']:>4} {r['indep']:>8.3f} {r[f'ot@{b}']:>9.3f} {r[f'ot@{B}']:>9.3f} "
              f"{r[f'gain@{b}']:>10.1%} {r[f'gain@{B}']:>11.1%} {r['of_reachable']:>13.1%}")


if __name__ == "__main__":
    main()
