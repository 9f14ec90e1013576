"""GrBAL meta-gradient throughput: batched torch.func (vmap over tasks) vs a per-task loop.

Both compute the second-order MAML meta-gradient (one inner SGD step, lr 0.01) of the mean
post-adaptation future loss w.r.t. θ, on identical weights and data:

- batched: ``GrBAL.task_losses`` = ``vmap`` over tasks of ``torch.func.grad`` inner step, then
  one ``torch.autograd.grad`` of the mean;
- loop: for each task, ``torch.autograd.grad(create_graph=True)`` on its past window, adapted
  future loss, ``torch.autograd.grad`` w.r.t. θ, accumulated;
- lowrank (``GrBALConfig(meta_impl="lowrank")``): also batched with torch.func — ``vmap``
  over tasks, ``torch.func.grad`` for the inner step — but with the inner gradient taken at
  each layer's pre-activations, so the adapted layers are applied as the shared weights plus
  a rank-≤M correction and no per-task weight matrix is ever formed (see
  ``adaptive_control.learners.lowrank_task_losses``).

Paper setting: cheetah-sized obs 17 / act 6, MLP 3 × 512, M = K = 16, meta-batch 10; also a
narrow MLP and a larger meta-batch; then the ``small`` preset's step (2 × 256, action gains,
step norm limited), low-rank against vmap. Thread count is pinned with ``torch.set_num_threads``.
Prints human-readable lines; the last line is one JSON object. Runs in about a minute.

    python bench/meta_gradient.py [--threads 2] [--seconds 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor

from adaptive_control.learners import GrBAL, GrBALConfig
from adaptive_control.types import Transitions, WindowBatch

OBS, ACT, M, K, INNER_LR = 17, 6, 16, 16, 0.01


def make_batch(n_tasks: int, seed: int, dtype: torch.dtype) -> WindowBatch:
    g = torch.Generator().manual_seed(seed)

    def tr(t: int) -> Transitions:
        obs = torch.randn(n_tasks, t, OBS, generator=g, dtype=dtype)
        act = torch.rand(n_tasks, t, ACT, generator=g, dtype=dtype) * 2 - 1
        nxt = obs + 0.1 * torch.randn(n_tasks, t, OBS, generator=g, dtype=dtype)
        return Transitions(obs, act, nxt)

    return WindowBatch(tr(M), tr(K))


def batched_meta_grad(learner: GrBAL, batch: WindowBatch, impl: str = "vmap") -> list[Tensor]:
    params = list(learner.model.parameters())
    return list(torch.autograd.grad(learner.task_losses(batch, impl).mean(), params))


def loop_meta_grad(learner: GrBAL, batch: WindowBatch) -> list[Tensor]:
    model = learner.model
    names, params = zip(*model.named_parameters(), strict=True)
    total = [torch.zeros_like(p) for p in params]
    b = batch.batch_size
    for i in range(b):
        past = Transitions(batch.past.obs[i], batch.past.act[i], batch.past.next_obs[i])
        fut = Transitions(batch.future.obs[i], batch.future.act[i], batch.future.next_obs[i])
        g_in = torch.autograd.grad(model.loss(past), params, create_graph=True)
        adapted = {n: p - INNER_LR * g for n, p, g in zip(names, params, g_in, strict=True)}
        g_out = torch.autograd.grad(model.functional_loss(adapted, fut) / b, params)
        total = [t + g for t, g in zip(total, g_out, strict=True)]
    return total


def rates(fns: dict[str, Callable[[], object]], n_tasks: int,
          seconds: float) -> dict[str, float]:
    """Tasks/s per function from the median wall time of one call.

    Calls are interleaved round-robin (after 2 warm-up rounds), so a background load on the
    machine slows every method alike instead of whichever happened to run at the time.
    """
    for _ in range(2):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    start = time.perf_counter()
    rounds = 0
    while rounds < 5 or (time.perf_counter() - start < seconds and rounds < 200):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
        rounds += 1
    return {k: n_tasks / statistics.median(v) for k, v in times.items()}


def max_diff(a: list[Tensor], b: list[Tensor]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))


def max_abs(a: list[Tensor]) -> float:
    return max(float(x.abs().max()) for x in a)


def run_case(width: int, n_tasks: int, threads: int, seconds: float) -> dict[str, float]:
    torch.set_num_threads(threads)
    cfg = GrBALConfig(hidden_sizes=(width,) * 3, inner_lr=INNER_LR, seed=0)
    learner = GrBAL(OBS, ACT, cfg)
    batch = make_batch(n_tasks, seed=1, dtype=torch.float32)
    r = rates({"vmap": lambda: batched_meta_grad(learner, batch),
               "loop": lambda: loop_meta_grad(learner, batch),
               "lowrank": lambda: batched_meta_grad(learner, batch, "lowrank")},
              n_tasks, seconds)
    vec, loop, low = r["vmap"], r["loop"], r["lowrank"]
    g_loop = loop_meta_grad(learner, batch)
    diff32 = max_diff(batched_meta_grad(learner, batch), g_loop)
    diff32_low = max_diff(batched_meta_grad(learner, batch, "lowrank"), g_loop)
    # Same weights and data in float64: separates implementation error from fp32 rounding.
    learner64 = GrBAL(OBS, ACT, cfg).double()
    learner64.load_state_dict({k: v.double() for k, v in learner.state_dict().items()})
    b64 = make_batch(n_tasks, seed=1, dtype=torch.float64)
    g64 = loop_meta_grad(learner64, b64)
    diff64 = max_diff(batched_meta_grad(learner64, b64), g64)
    diff64_low = max_diff(batched_meta_grad(learner64, b64, "lowrank"), g64)
    return {
        "width": width, "tasks": n_tasks, "threads": threads,
        "batched_tasks_per_s": round(vec, 1), "loop_tasks_per_s": round(loop, 1),
        "speedup": round(vec / loop, 2),
        "lowrank_tasks_per_s": round(low, 1), "lowrank_speedup": round(low / loop, 2),
        "max_abs_diff_fp32": diff32, "max_abs_diff_fp64": diff64,
        "lowrank_max_abs_diff_fp32": diff32_low, "lowrank_max_abs_diff_fp64": diff64_low,
        "max_abs_grad": max_abs(g_loop),
    }


def preset_case(n_tasks: int, threads: int, seconds: float) -> dict[str, float]:
    """The ``small`` preset's inner step (2 x 256, action gains, step norm limited to 10):
    the low-rank form against the vmap path, which forms every task's adapted weights."""
    torch.set_num_threads(threads)
    kw = {"hidden_sizes": (256, 256), "action_gains": True, "inner_max_norm": 10.0,
          "inner_lr": INNER_LR, "seed": 0}
    vm, low = GrBAL(OBS, ACT, GrBALConfig(**kw)), GrBAL(OBS, ACT, GrBALConfig(
        **kw, meta_impl="lowrank"))
    low.load_state_dict(vm.state_dict())
    batch = make_batch(n_tasks, seed=1, dtype=torch.float32)
    r = rates({"vmap": lambda: batched_meta_grad(vm, batch),
               "lowrank": lambda: batched_meta_grad(low, batch, "lowrank")}, n_tasks, seconds)
    b64 = make_batch(n_tasks, seed=1, dtype=torch.float64)
    diff64 = max_diff(batched_meta_grad(vm.double(), b64),
                      batched_meta_grad(low.double(), b64, "lowrank"))
    return {"width": 256, "layers": 2, "tasks": n_tasks, "threads": threads,
            "vmap_tasks_per_s": round(r["vmap"], 1), "lowrank_tasks_per_s": round(r["lowrank"], 1),
            "lowrank_over_vmap": round(r["lowrank"] / r["vmap"], 2), "max_abs_diff_fp64": diff64}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--seconds", type=float, default=4.0, help="timing budget per case")
    args = ap.parse_args()

    print(f"torch {torch.__version__}; obs {OBS}, act {ACT}, M = K = {M}, one inner SGD step "
          f"(lr {INNER_LR}), second order; threads pinned with torch.set_num_threads")
    cases = [
        (512, 10, args.threads),  # the paper's setting
        (64, 10, args.threads),   # a narrow model: per-op overhead dominates
        (512, 40, args.threads),  # more tasks per meta-batch
        (512, 10, 1),             # single thread
        (64, 10, 1),
    ]
    results = []
    for width, n_tasks, threads in cases:
        r = run_case(width, n_tasks, threads, args.seconds)
        results.append(r)
        print(f"MLP 3x{width:<3} tasks {n_tasks:>2} threads {threads}: "
              f"vmap {r['batched_tasks_per_s']:7.1f} tasks/s, "
              f"loop {r['loop_tasks_per_s']:7.1f} tasks/s, speed-up {r['speedup']:.2f}x | "
              f"lowrank {r['lowrank_tasks_per_s']:7.1f} tasks/s, {r['lowrank_speedup']:.2f}x")
        print(f"    max |grad - loop grad|: vmap fp32 {r['max_abs_diff_fp32']:.1e} "
              f"fp64 {r['max_abs_diff_fp64']:.1e}; lowrank fp32 "
              f"{r['lowrank_max_abs_diff_fp32']:.1e} fp64 {r['lowrank_max_abs_diff_fp64']:.1e}"
              f"  (max |grad| {r['max_abs_grad']:.1e})")
    small = [preset_case(16, t, args.seconds) for t in (1, args.threads)]
    for r in small:
        print(f"small preset (2x256, action gains, step norm <= 10), tasks 16 threads "
              f"{r['threads']}: vmap {r['vmap_tasks_per_s']:7.1f} tasks/s, lowrank "
              f"{r['lowrank_tasks_per_s']:7.1f} tasks/s, {r['lowrank_over_vmap']:.2f}x; "
              f"max |lowrank - vmap| fp64 {r['max_abs_diff_fp64']:.1e}")
    paper = results[0]
    worst = max([max(r["max_abs_diff_fp32"], r["max_abs_diff_fp64"],
                     r["lowrank_max_abs_diff_fp32"], r["lowrank_max_abs_diff_fp64"])
                 for r in results] + [r["max_abs_diff_fp64"] for r in small])
    ok = worst <= 1e-5
    print(f"paper setting (3x512, 10 tasks, {args.threads} threads): vmap/loop speed-up "
          f"{paper['speedup']:.2f}x, lowrank/loop {paper['lowrank_speedup']:.2f}x "
          f"(target >= 3x); all gradients agree within 1e-5: {ok} (worst {worst:.1e})")
    print("why: per task, vmap and the loop both materialise the adapted weights and their "
          "gradients (~0.55M numbers per task at 3x512). Those elementwise passes are "
          "memory-bound, so vmap only saves per-op dispatch, which dominates at width 64 but "
          "not at 512 (more tasks or fewer threads do not change that). The lowrank form "
          "keeps every product against the shared weights, so it stays compute-bound.")
    print(json.dumps({"benchmark": "grbal_meta_gradient", "torch": torch.__version__,
                      "obs_dim": OBS, "act_dim": ACT, "M": M, "K": K, "inner_lr": INNER_LR,
                      "agreement_ok": ok, "worst_abs_diff": worst, "cases": results,
                      "small_preset": small}))


if __name__ == "__main__":
    main()
