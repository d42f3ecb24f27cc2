#!/usr/bin/python3
"""Self-test of the PyTorch reference's bf16 mode (reference_model.py COMPUTE_PRECISIONS).

Checks, without tessera:
  1. round_bf16 rounds to nearest, ties to even, on hand-made float32 halfway points (and from
     float64 through float32, as the float64 reference does);
  2. Bf16Linear: forward r(x) r(W)^T, dgrad r(dy) r(W), wgrad r(dy)^T r(x), against the same
     products written out, for [N, in] and [B, T, in] inputs;
  3. RowRoundTrip: rows rounded forward to one format, the gradient backward to the other;
  4. coverage on the self-test models (MHA; MLA with q_lora_rank and MTP): in bf16 mode every
     linear map of the blocks (attention / MLA projections, dense FFN, shared and routed experts,
     MTP eh_proj) goes through Bf16Linear and nothing else does (embedding, head, router gate), and
     each MoE layer makes exactly its two exchange round trips with the formats of
     EXCHANGE_FORMATS;
  5. fp32 mode (`compute="fp32"`) is the unchanged reference, and the bf16 reference differs from
     it by far more than compare.py's BF16_REL_TOL (the bf16 check can fail), while the bf16
     reference run in float32 stays close to the float64 one (an estimate of the fp32 noise the
     tolerance must absorb: the loss checked, the gradients reported);
  6. compare.py on bf16 dumps written from the reference: its bf16 results pass, its fp32 results
     under a bf16 recipe fail (loss, gradients and the contrast check), fp8 is refused.
Exits 0 on PASS.
"""

import os
import shutil
import sys
import tempfile
import time

import torch
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402
import reference_model as rm  # noqa: E402

failures = []


def check(ok, what):
    print(f"  [{'ok' if ok else 'FAILED'}] {what}")
    if not ok:
        failures.append(what)


def f32(values):
    return torch.tensor(values, dtype=torch.float32)


def test_rounding():
    u = 2.0 ** -7  # bf16's ulp at [1, 2)
    cases = [
        (1 + u / 2, 1.0),                       # tie, 1.0 even: down
        (1 + 3 * u / 2, 1 + 2 * u),             # tie, 1 + u odd: up to 1 + 2u
        (-(1 + u / 2), -1.0),                   # negative ties mirror
        (-(1 + 3 * u / 2), -(1 + 2 * u)),
        (1 + u / 2 + 2.0 ** -23, 1 + u),        # one float32 ulp above the tie: up
        (1 + u / 2 - 2.0 ** -24, 1.0),          # one float32 ulp below: down
        (2.0 ** -130 * 3, 2.0 ** -130 * 3),     # subnormal representable in bf16: exact
        (3.0 * 2 ** 20 + 2 ** 13, 3.0 * 2 ** 20),             # ties at 2^21 (ulp 2^14): to even,
        (3.0 * 2 ** 20 + 3 * 2 ** 13, 3.0 * 2 ** 20 + 2 ** 15),  # down, then up
    ]
    x = f32([c[0] for c in cases])
    want = f32([c[1] for c in cases])
    got = rm.round_bf16(x)
    check(torch.equal(got, want) and got.dtype == torch.float32,
          f"round_bf16 on float32 halfway points rounds to nearest even: {got.tolist()}")
    got64 = rm.round_bf16(x.to(torch.float64))
    check(got64.dtype == torch.float64 and torch.equal(got64, want.to(torch.float64)),
          "round_bf16 of float64 values rounds through float32 the same way, dtype kept")


def test_linear():
    gen = torch.Generator().manual_seed(5)
    for shape in ((9, 13), (2, 5, 13)):
        x = torch.randn(*shape, generator=gen, dtype=torch.float64).requires_grad_()
        w = torch.randn(7, 13, generator=gen, dtype=torch.float64).requires_grad_()
        dy = torch.randn(*shape[:-1], 7, generator=gen, dtype=torch.float64)
        y = rm.Bf16Linear.apply(x, w)
        y.backward(dy)
        r = rm.round_bf16
        y_want = r(x.detach()) @ r(w.detach()).t()
        dx_want = r(dy) @ r(w.detach())
        dw_want = r(dy).reshape(-1, 7).t() @ r(x.detach()).reshape(-1, 13)
        ok = (torch.allclose(y, y_want, rtol=1e-14, atol=0) and
              torch.allclose(x.grad, dx_want, rtol=1e-14, atol=0) and
              torch.allclose(w.grad, dw_want, rtol=1e-14, atol=0))
        plain = (x.detach() @ w.detach().t() - y).norm() / y.norm()
        check(ok and plain > 1e-4,
              f"Bf16Linear on x {list(shape)}: forward, dgrad and wgrad on the rounded operands "
              f"(differs from the unrounded product by {plain:.1e})")


def test_round_trip():
    gen = torch.Generator().manual_seed(6)
    rows = torch.randn(5, 6, generator=gen, dtype=torch.float64).requires_grad_()
    g = torch.randn(5, 6, generator=gen, dtype=torch.float64)
    out = rm.RowRoundTrip.apply(rows, "bf16", "fp32")
    out.backward(g)
    check(torch.equal(out, rm.round_bf16(rows.detach())) and torch.equal(rows.grad, g),
          "RowRoundTrip bf16 forward, fp32 backward")
    rows.grad = None
    out = rm.RowRoundTrip.apply(rows, "fp32", "bf16")
    out.backward(g)
    check(torch.equal(out, rows.detach()) and torch.equal(rows.grad, rm.round_bf16(g)),
          "RowRoundTrip fp32 forward, bf16 backward")


def _names_of(params, tensors):
    """Parameter names whose storage the tensors (views included) lie in."""
    spans = {n: (t.data_ptr(), t.data_ptr() + t.numel() * t.element_size())
             for n, t in params.items()}
    names = set()
    for t in tensors:
        p = t.data_ptr()
        names |= {n for n, (a, b) in spans.items() if a <= p < b}
    return names


def test_coverage(model):
    cfg, params, tokens, _, _ = compare._self_test_case(model)
    leaves = {n: t.to(torch.float64).requires_grad_(rm.is_trainable(n)) for n, t in params.items()}
    weights, exchanges = [], []
    linear, exchange = rm.linear, rm.exchange

    def spy_linear(x, w, c):
        if rm.compute_of(c) == "bf16":
            weights.append(w)
        return linear(x, w, c)

    def spy_exchange(rows, c, fwd, bwd):
        exchanges.append((rm.compute_of(c), fwd, bwd))
        return exchange(rows, c, fwd, bwd)

    rm.linear, rm.exchange = spy_linear, spy_exchange
    try:
        rm.forward(cfg, leaves, tokens, compute="bf16")
    finally:
        rm.linear, rm.exchange = linear, exchange
    seen = _names_of(leaves, weights)
    want = {n for n, s in rm.param_shapes(cfg).items()
            if len(s) >= 2 and n not in ("embed.weight", "head.weight")
            and not n.endswith("moe.gate.weight")}
    check(seen == want, f"{cfg['attention']} mtp_depth {cfg['mtp_depth']}: bf16 linears are "
                        f"exactly the blocks' {len(want)} weights (missing "
                        f"{sorted(want - seen)}, extra {sorted(seen - want)})")
    n_moe = len(rm.moe_layers(cfg))
    check(exchanges == [("bf16", 0, 3), ("bf16", 1, 2)] * n_moe and
          rm.EXCHANGE_FORMATS["bf16"] == ("bf16", "bf16", "bf16", "fp32"),
          f"each of the {n_moe} MoE layers makes a dispatch and a combine round trip; formats as "
          f"MoeBlock's under bf16 compute: forward bf16, backward dispatch bf16, combine fp32")


def test_contrast():
    tol = compare.BF16_REL_TOL
    for model in (compare.SELF_TEST_MODEL, compare.SELF_TEST_MLA_MTP):
        cfg, params, tokens, (loss, _, grads, routing, _), _ = compare._self_test_case(model)
        l32, _, g32, _, _ = rm.reference_step(cfg, params, tokens, forced_routing=routing,
                                              compute="fp32")
        same = l32 == loss and all(torch.equal(g32[n], grads[n]) for n in grads)
        check(same, f"{cfg['attention']}: compute fp32 is the default reference, bit for bit")
        l16, _, g16, _, _ = rm.reference_step(cfg, params, tokens, forced_routing=routing,
                                              compute="bf16")
        gap = max([compare._rel(l16, l32)] + [compare._grad_rel(g16[n], g32[n]) for n in g32])
        loss_gap = compare._rel(l16, l32)
        check(gap > compare.BF16_CONTRAST * tol,
              f"{cfg['attention']}: bf16 and fp32 references differ (worst {gap:.2e}, loss "
              f"{loss_gap:.2e}) by more than {compare.BF16_CONTRAST:g} x BF16_REL_TOL {tol:g}")
        # The same bf16 reference in float32: an estimate of tessera's distance from it.
        l16f, _, g16f, _, _ = rm.reference_step(cfg, params, tokens, forced_routing=routing,
                                                dtype=torch.float32, compute="bf16")
        worst = max(compare._grad_rel(g16f[n].to(torch.float64), g16[n]) for n in g16)
        lerr = compare._rel(l16f, l16)
        # Gradients only reported: a bf16 rounding tie can flip between the two (compare.py
        # _follow_bf16_ties); the loss is held to BF16_LOSS_TOL.
        check(lerr <= compare.BF16_LOSS_TOL,
              f"{cfg['attention']}: the bf16 reference in float32: loss within BF16_LOSS_TOL of "
              f"the float64 one ({lerr:.2e}; worst gradient {worst:.2e})")


def _write(dump_dir, cfg_model, params, tokens, step, compute):
    loss, ce, grads, routing, mtp = step
    compare.write_dump(dump_dir, cfg_model, {"seq_len": compare.SELF_TEST_SEQ}, params, tokens,
                       {n: g.numpy() for n, g in grads.items()}, loss, ce,
                       {i: r.numpy() for i, r in routing.items()}, mtp)
    path = os.path.join(dump_dir, "model.yaml")
    with open(path) as f:
        recipe = yaml.safe_load(f)
    recipe["precision"] = {"compute": compute}
    with open(path, "w") as f:
        yaml.safe_dump(recipe, f, sort_keys=False)


def test_checker():
    """compare.py on bf16 dumps: the bf16 reference's own passes; fp32 gradients under a bf16
    recipe fail, the contrast check (d) naming it; an unknown precision is refused."""
    model = compare.SELF_TEST_MODEL
    cfg, params, tokens, step32, _ = compare._self_test_case(model)
    step16 = rm.reference_step(cfg, params, tokens, compute="bf16")
    root = tempfile.mkdtemp(prefix="tessera-ref-bf16-selftest-")
    quiet = []
    try:
        good = os.path.join(root, "good")
        _write(good, model, params, tokens, step16, "bf16")
        problems = compare.compare_dump(good, log=quiet.append)
        check(problems == [], f"the bf16 reference's own dump passes as bf16 ({problems[:1]})")
        wrong = os.path.join(root, "fp32_grads")
        _write(wrong, model, params, tokens, step32, "bf16")
        problems = compare.compare_dump(wrong, log=quiet.append)
        check(any(p.startswith("loss") for p in problems) and
              any(p.startswith("grad ") for p in problems) and
              any(p.startswith("bf16 contrast: tessera's worst gradient") for p in problems),
              f"fp32 results under a bf16 recipe fail ({len(problems)} problems: loss, gradients, "
              f"contrast)")
        fp8 = os.path.join(root, "fp8")
        _write(fp8, model, params, tokens, step16, "fp8")
        try:
            compare.compare_dump(fp8, log=quiet.append)
            check(False, "precision.compute fp8 is refused")
        except compare.DumpError as e:
            check("fp8" in str(e), f"precision.compute fp8 is refused ({e})")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main():
    torch.set_num_threads(1)
    t0 = time.time()
    print("bf16 rounding:")
    test_rounding()
    print("bf16 linear and row round trips:")
    test_linear()
    test_round_trip()
    print("coverage:")
    test_coverage(compare.SELF_TEST_MODEL)
    test_coverage(compare.SELF_TEST_MLA_MTP)
    print("bf16 vs fp32:")
    test_contrast()
    print("compare.py on bf16 dumps:")
    test_checker()
    elapsed = time.time() - t0
    if failures:
        print(f"bf16 self-test: FAIL ({len(failures)} problems, {elapsed:.1f} s)")
        return 1
    print(f"bf16 self-test: PASS ({elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
