"""Training-step cost of each SSL benchmark method relative to PoseDual, and whole-step compile support.

    python bench/bench_method_cost.py                        # every method of ssl_benchmark.py
    python bench/bench_method_cost.py --methods posedual multiaugs_dual sspcm --rounds 7
    python bench/bench_method_cost.py --compile-check        # + the whole step under torch.compile

Each method is built exactly as a benchmark run builds it (experiments/synthetic/ssl_benchmark.yaml
plus the method's overrides from bench/ssl_benchmark.py's METHODS), past its ramp-up (progress 5
epochs, so SSPCM's previous-epoch teachers take part), and steps on one synthetic paired batch of
the benchmark's batch size (forward, backward and Adam, as the trainer). The methods are timed in
interleaved rounds within one process, so a slow spell of the machine hits every method alike; the
cost column is each method's median step divided by PoseDual's.

``--compile-check`` runs three steps of each method eagerly and three through the whole-step
compile (TRAIN.COMPILE_SCOPE step, backend aot_eager: the same graph capture and replayed draws
without inductor's code generation) from the same start, and reports whether the losses and
gradients are bit-identical and whether the graph broke.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from typing import Dict, List

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_train_step import synthetic_batch  # noqa: E402
from ssl_benchmark import BASE_CFG, METHODS, ROOT  # noqa: E402


def build(method: str):
    """(method module, config) of one benchmark row, with the seed the benchmark uses for seed 0."""
    from semipose.config import load_cfg
    from semipose.methods import build_method, num_nets
    from semipose.models.build import build_net

    cfg = load_cfg(os.path.join(ROOT, BASE_CFG), list(METHODS[method][1]) + ["SEED", "1000"])
    torch.manual_seed(0)
    nets = [build_net(cfg) for _ in range(num_nets(cfg))]
    module = build_method(cfg, nets, seed=0).train()
    module.set_progress(5.0)
    return module, cfg


def make_batch(cfg, module) -> Dict[str, dict]:
    from semipose.models.build import build_net

    w, h = (int(v) for v in cfg.MODEL.IMAGE_SIZE)
    with torch.no_grad():
        hm_shape = tuple(build_net(cfg).eval()(torch.zeros(1, 3, h, w)).shape[1:])
    return synthetic_batch(cfg, int(cfg.TRAIN.BATCH_SIZE), hm_shape,
                           torch.Generator().manual_seed(0))


def timed_steps(methods: List[str], rounds: int, steps: int, warmup: int) -> Dict[str, List[float]]:
    runs = {}
    for m in methods:
        module, cfg = build(m)
        opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=1e-4)
        runs[m] = (module, opt, make_batch(cfg, module))

    def step(m: str) -> None:
        module, opt, batch = runs[m]
        out = module(batch)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        module.after_step()  # EMA teachers follow their students, as in the trainer

    for m in methods:
        for _ in range(warmup):
            step(m)
    times: Dict[str, List[float]] = {m: [] for m in methods}
    for r in range(rounds):
        for m in methods:
            for _ in range(steps):
                t = time.perf_counter()
                step(m)
                times[m].append(time.perf_counter() - t)
        print(f"round {r + 1}/{rounds}: " + ", ".join(
            f"{m} {statistics.median(times[m]) * 1000:.0f} ms" for m in methods), flush=True)
    return times


def compile_check(method: str, steps: int = 3) -> Dict[str, object]:
    """Eager against whole-step compiled (aot_eager) from the same start."""
    import semipose.methods.compiled as compiled_mod
    from torch._dynamo.utils import counters

    compiled_mod.DEFAULT_BACKEND = "aot_eager"
    torch._dynamo.reset()
    counters.clear()
    module, cfg = build(method)
    batch = make_batch(cfg, module)
    if not hasattr(module, "compile_step"):
        return {"method": method, "supported": False, "why": "not a SemiMethod (no compile_step)"}
    results = []
    t0 = time.perf_counter()
    for compiled in (False, True):
        m = copy.deepcopy(module)
        if compiled:
            m.compile_step("default")
        rows = []
        for _ in range(steps):
            out = m(batch)
            out.loss.backward()
            rows.append((out.loss.detach().clone(),
                         [p.grad.clone() for p in m.parameters() if p.grad is not None]))
            m.zero_grad(set_to_none=True)
        results.append((m, rows))
    (m0, eager), (m1, comp) = results
    same = all(torch.equal(l0, l1) and len(g0) == len(g1) and
               all(torch.equal(a, b) for a, b in zip(g0, g1))
               for (l0, g0), (l1, g1) in zip(eager, comp))
    st0, st1 = m0.rng_state(), m1.rng_state()
    rng_same = all(torch.equal(st0[k], st1[k]) for k in st0)
    breaks = sum(counters["graph_break"].values())
    step_ = m1.compiled_step
    torch._dynamo.reset()
    return {"method": method, "supported": bool(same and rng_same and breaks == 0),
            "bit_identical": bool(same), "generator_state_same": bool(rng_same),
            "graph_breaks": int(breaks), "eager_steps": int(step_.eager_steps),
            "recorded_draws": int(sum(len(s) for s in step_.specs.values())),
            "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", choices=list(METHODS),
                   default=["supervised", "posecons", "posedual", "mean_teacher", "posedual_mt",
                            "multi_path", "multi_path_s", "multiaugs", "multiaugs_dual",
                            "sspcm"])
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    p.add_argument("--steps", type=int, default=4, help="timed steps per method and round")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--compile-check", action="store_true")
    p.add_argument("--json", default="", help="write the figures to this JSON file")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if "posedual" not in args.methods:
        args.methods = ["posedual"] + list(args.methods)
    times = timed_steps(args.methods, args.rounds, args.steps, args.warmup)
    base = statistics.median(times["posedual"])
    print(f"\n{torch.get_num_threads()} threads, torch {torch.__version__}, batch of the "
          f"benchmark config, {args.rounds} rounds x {args.steps} steps\n")
    print("| method | median step | cost vs PoseDual |")
    print("|---|---|---|")
    out = {"threads": torch.get_num_threads(), "torch": torch.__version__, "methods": {}}
    for m in args.methods:
        med = statistics.median(times[m])
        out["methods"][m] = {"median_ms": round(med * 1000, 1), "cost": round(med / base, 2)}
        print(f"| {METHODS[m][0]} | {med * 1000:.0f} ms | {med / base:.2f} |")
    if args.compile_check:
        print("\n| method | whole-step compile | detail |")
        print("|---|---|---|")
        out["compile"] = {}
        for m in args.methods:
            r = compile_check(m)
            out["compile"][m] = r
            detail = r.get("why") or (f"bit-identical {r['bit_identical']}, generator state "
                                      f"{r['generator_state_same']}, graph breaks "
                                      f"{r['graph_breaks']}, {r['recorded_draws']} recorded draws")
            print(f"| {METHODS[m][0]} | {'yes' if r['supported'] else 'no'} | {detail} |",
                  flush=True)
    if args.json:
        from semipose.utils.io import atomic_write_text
        atomic_write_text(json.dumps(out, indent=1), args.json)


if __name__ == "__main__":
    main()
