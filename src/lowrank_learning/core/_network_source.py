"""Python source of the numba kernels of the full network's loss gradient (design and equations:
:mod:`lowrank_learning.core._network_kernel`).

Generated per (rank R, input dimension Din, output dimension Dout, activation, float type) with
every small sum written out, so that the one loop of each kernel that runs over many elements
(neurons in the forward pass, time steps x trials in the accumulation pass) is a pure reduction:
it stores nothing, and LLVM vectorises it. All arithmetic is in the kernel's float type (float32:
eight lanes per AVX2 instruction); constants are that type's, so nothing is promoted.

- ``fwd(XT, wt, kap, lam, J, Y, b0, b1, dt)``: trials ``b0..b1-1`` forward in time. Per step and
  trial, one loop over the neurons gives the recurrent input r, the outputs y and the Jacobian
  sums J = sum_i w_i phi'(h_i) u_i (v_i, z_i) that the latent adjoint needs; ``wt`` (N,) holds the
  neurons' weights w_i (1/N for a network, quadrature weights for the large-N limit's nodes).
- ``back(J, ybar, rbar, dt)``: the latent adjoint backward in time (small).
- ``acc(XT, Q, G, i0, i1)``: neurons ``i0..i1-1``; per neuron, one loop over all time steps and
  trials sums the neuron's gradient entries (divided by its weight, so that a node of weight 0
  still moves).

The activation's value ``p`` and slope ``dp`` are written inline:

- linear: p = h, dp = 1;
- erf (phi(h) = erf(sqrt(pi)/2 h)): dp = exp(-pi h^2 / 4); p = x P(x^2) / Q(x^2), x = sqrt(pi)/2 h
  clamped to [-4, 4], the rational approximation XLA and Eigen use for float32 erf (absolute
  error 3e-7 in float32, 6e-8 in float64; tested);
- tanh: p = (1 - e) / (1 + e) with e = exp(-2 |h|) (sign restored), dp = 4 e / (1 + e)^2 (accurate
  in relative terms where tanh saturates, unlike 1 - p^2).

``exp(-a)`` for a >= 0 is ``2^n exp(r)``, n the nearest integer to -a/ln 2, r = -a - n ln 2 (ln 2 in
two parts, so that r is exact), exp(r) a Taylor polynomial (degree 7 in float32, 11 in float64) and
2^n written into the exponent bits: float32 or float64 rounding, and no call to libm (which LLVM
cannot vectorise without a vector math library).
"""

from __future__ import annotations

from math import factorial

from .activations import ACTIVATIONS

_NJIT = "@numba.njit(fastmath=True, nogil=True, error_model='numpy', cache=CACHE)"
# erf(x) ~ x P(x^2) / Q(x^2) on |x| <= 4 (erf(4) = 1 - 1.5e-8), the rational approximation that
# XLA and Eigen use for float32 erf
_ERF_P = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
          -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
_ERF_Q = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
          -1.42647390514189e-02)
_SQRT_PI_2 = 0.886226925452758  # sqrt(pi) / 2
_LOG2E = 1.4426950408889634
# Per precision: the degree of the polynomial for 2^r on |r| <= 1/2, ln 2 split in a part with
# few bits (n ln2_hi is exact) and the rest, the clamp of exp's argument, the integer type whose
# bits are the float's, and the exponent's bias and position.
_EXP = {"float32": {"degree": 7, "ln2_hi": 0.693359375, "ln2_lo": -2.12194440e-4, "clamp": 87.0,
                    "int": "np.int32", "bias": 127, "shift": 23},
        "float64": {"degree": 11, "ln2_hi": 6.93145751953125e-1, "ln2_lo": 1.42860682030941723212e-6,
                    "clamp": 700.0, "int": "np.int64", "bias": 1023, "shift": 52}}


def _constants(dtype: str) -> list[str]:
    """Module-level constants in the kernel's float type (a bare literal would be float64 and
    turn float32 arithmetic into float64)."""
    e = _EXP[dtype]
    named = {"ZERO": 0.0, "ONE": 1.0, "TWO": 2.0, "FOUR": 4.0, "HALF": 0.5, "SQRT_PI_2": _SQRT_PI_2,
             "LOG2E": _LOG2E, "LN2_HI": e["ln2_hi"], "LN2_LO": e["ln2_lo"], "CLAMP": e["clamp"],
             "PI_4": 0.7853981633974483}
    named.update({f"EP{k}": a for k, a in enumerate(_ERF_P)})
    named.update({f"EQ{k}": a for k, a in enumerate(_ERF_Q)})
    named.update({f"EC{k}": 1.0 / factorial(k) for k in range(e["degree"] + 1)})
    return [f"F = np.{dtype}", f"I = {e['int']}"] + [f"{k} = F({v!r})" for k, v in named.items()]


def _expneg(a: str, out: str, pad: str, dtype: str) -> list[str]:
    """Lines computing ``out = exp(-a)`` for ``a >= 0`` (``a`` an expression): 2^n times a
    polynomial in the remainder (Cody-Waite reduction), 2^n written into the exponent bits."""
    e = _EXP[dtype]
    poly = f"EC{e['degree']}"
    for k in range(e["degree"] - 1, -1, -1):
        poly = f"(EC{k} + er * {poly})"
    return [f"{pad}ea = {a}", f"{pad}ea = ea if ea < CLAMP else CLAMP",
            f"{pad}en = np.floor(HALF - ea * LOG2E)",
            f"{pad}er = (-ea - en * LN2_HI) - en * LN2_LO",
            f"{pad}{out} = {poly} * I((I(en) + {e['bias']}) << {e['shift']}).view(F)"]


def activation_lines(activation: str, pad: str, dtype: str = "float64") -> list[str]:
    """Lines that set ``p = phi(h)`` and ``dp = phi'(h)`` from ``h``."""
    if activation == "linear":
        return [f"{pad}p = h", f"{pad}dp = ONE"]
    if activation == "erf":
        P, Q = "EP0", "EQ0"
        for k in range(1, len(_ERF_P)):
            P = f"({P} * x2 + EP{k})"
        for k in range(1, len(_ERF_Q)):
            Q = f"({Q} * x2 + EQ{k})"
        return ([f"{pad}x = SQRT_PI_2 * h", f"{pad}x = x if x < FOUR else FOUR", f"{pad}x = x if x > -FOUR else -FOUR",
                 f"{pad}x2 = x * x", f"{pad}p = x * {P} / {Q}"]
                + _expneg("PI_4 * h * h", "dp", pad, dtype))
    if activation == "tanh":
        return ([f"{pad}ax = h if h >= ZERO else -h"] + _expneg("TWO * ax", "e2", pad, dtype)
                + [f"{pad}iv = ONE / (ONE + e2)", f"{pad}yy = (ONE - e2) * iv", f"{pad}p = yy if h >= ZERO else -yy",
                   f"{pad}dp = FOUR * e2 * iv * iv"])
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


def _reduction_head(accs, loop: str, pad: str, h_terms, activation: str, dtype: str) -> list[str]:
    """The accumulators set to zero, the loop (``loop``, its body at ``pad``) and, first in its
    body, the pre-activation ``h`` (the sum of ``h_terms``) with ``p`` and ``dp``."""
    outer = pad[:-4]
    return ([f"{outer}{a} = ZERO" for a in accs] + [f"{outer}{loop}", f"{pad}h = {' + '.join(h_terms)}"]
            + activation_lines(activation, pad, dtype))


def network_kernel_source(rank: int, n_in: int, n_out: int, activation: str, dtype: str = "float32") -> str:
    """Source of ``fwd``, ``back`` and ``acc`` (module docstring) for one architecture.

    Array layouts (float64, C-contiguous): ``XT`` (K, N), the rows M_0.., U_0.., V_0.., Z_0..;
    ``kap`` (T, B, Din) the input coordinates kappa_1..kappa_T; ``lam`` (T, B, R) the recurrent
    coordinates lambda_1..lambda_T and ``Y`` (T, B, Dout) the outputs (written by ``fwd``);
    ``J`` (T, B, R, R + Dout); ``ybar`` (T, B, Dout) dL/dy; ``rbar`` (T, B, R) dL/dr (written by
    ``back``); ``Q`` (Din + 2R + Dout, T B) the rows kappa, lambda, c rbar, c ybar; ``G`` (K, N)
    (columns written for neurons i0..i1-1): c times neuron i's gradient divided by its weight
    (c = 1/N with weights 1/N gives dL/dX itself).
    """
    R, Din, Do = int(rank), int(n_in), int(n_out)
    # the rows of XT (M, U, V, Z) and of Q (kappa, lambda, rbar, ybar), in order
    vec = [f"m{d}" for d in range(Din)] + [f"u{r}" for r in range(R)] + [f"v{r}" for r in range(R)] + [
        f"z{o}" for o in range(Do)]
    qrow = [f"qk{d}" for d in range(Din)] + [f"ql{r}" for r in range(R)] + [f"qr{r}" for r in range(R)] + [
        f"qy{o}" for o in range(Do)]
    L = ["import numba", "import numpy as np", ""] + _constants(dtype) + [""]
    w = L.append

    # ---------------------------------------------------------------- forward
    w(_NJIT)
    w("def fwd(XT, wt, kap, lam, J, Y, b0, b1, dt):")
    w("    N = XT.shape[1]")
    w("    T = kap.shape[0]")
    L.extend(f"    {name} = XT[{k}]" for k, name in enumerate(vec))
    w("    for b in range(b0, b1):")
    for r in range(R):  # r_0 = V^T phi(0) / N, and phi(0) = 0 for every activation here
        w(f"        l{r} = ZERO")
        w(f"        q{r} = ZERO")
    w("        for t in range(T):")
    for r in range(R):
        w(f"            l{r} = l{r} + dt * (q{r} - l{r})")
    for d in range(Din):
        w(f"            k{d} = kap[t, b, {d}]")
    accs = ([f"sr{r}" for r in range(R)] + [f"sy{o}" for o in range(Do)]
            + [f"j{r}_{c}" for r in range(R) for c in range(R + Do)])
    pad = " " * 16
    L.extend(_reduction_head(accs, "for i in range(N):", pad,
                             [f"k{d} * m{d}[i]" for d in range(Din)] + [f"l{r} * u{r}[i]" for r in range(R)],
                             activation, dtype))
    w(f"{pad}wp = wt[i] * p")
    for r in range(R):
        w(f"{pad}sr{r} += v{r}[i] * wp")
    for o in range(Do):
        w(f"{pad}sy{o} += z{o}[i] * wp")
    outs = [f"v{c}[i]" for c in range(R)] + [f"z{o}[i]" for o in range(Do)]
    w(f"{pad}wd = wt[i] * dp")
    for r in range(R):
        w(f"{pad}du = wd * u{r}[i]")
        for c, o in enumerate(outs):
            w(f"{pad}j{r}_{c} += du * {o}")
    for r in range(R):
        w(f"            q{r} = sr{r}")
        w(f"            lam[t, b, {r}] = l{r}")
        for c in range(R + Do):
            w(f"            J[t, b, {r}, {c}] = j{r}_{c}")
    for o in range(Do):
        w(f"            Y[t, b, {o}] = sy{o}")
    w("")

    # ---------------------------------------------------------------- latent adjoint
    # a_s = dL/dlambda_s: a_s = (1 - dt) a_{s+1} + J_s^{UV} rbar_s + J_s^{UZ} ybar_s, rbar_s = dt a_{s+1}
    w(_NJIT)
    w("def back(J, ybar, rbar, dt):")
    w("    T, B = J.shape[0], J.shape[1]")
    w("    for b in range(B):")
    for r in range(R):
        w(f"        a{r} = ZERO")
    w("        for t in range(T - 1, -1, -1):")
    for r in range(R):
        w(f"            rb{r} = dt * a{r}")
        w(f"            rbar[t, b, {r}] = rb{r}")
    for r in range(R):
        terms = [f"J[t, b, {r}, {c}] * rb{c}" for c in range(R)] + [f"J[t, b, {r}, {R + o}] * ybar[t, b, {o}]"
                                                                     for o in range(Do)]
        w(f"            n{r} = (ONE - dt) * a{r} + {' + '.join(terms)}")
    for r in range(R):
        w(f"            a{r} = n{r}")
    w("")

    # ---------------------------------------------------------------- per-neuron accumulation
    w(_NJIT)
    w("def acc(XT, Q, G, i0, i1):")
    w("    S = Q.shape[1]")
    L.extend(f"    {name} = Q[{k}]" for k, name in enumerate(qrow))
    w("    for i in range(i0, i1):")
    L.extend(f"        {name} = XT[{k}, i]" for k, name in enumerate(vec))
    gs = ([f"gm{d}" for d in range(Din)] + [f"gu{r}" for r in range(R)] + [f"gv{r}" for r in range(R)]
          + [f"gz{o}" for o in range(Do)])
    pad = " " * 12
    L.extend(_reduction_head(gs, "for s in range(S):", pad,
                             [f"qk{d}[s] * m{d}" for d in range(Din)] + [f"ql{r}[s] * u{r}" for r in range(R)],
                             activation, dtype))
    back_terms = [f"qr{r}[s] * v{r}" for r in range(R)] + [f"qy{o}[s] * z{o}" for o in range(Do)]
    w(f"{pad}g = dp * ({' + '.join(back_terms)})")
    for d in range(Din):
        w(f"{pad}gm{d} += g * qk{d}[s]")
    for r in range(R):
        w(f"{pad}gu{r} += g * ql{r}[s]")
        w(f"{pad}gv{r} += p * qr{r}[s]")
    for o in range(Do):
        w(f"{pad}gz{o} += p * qy{o}[s]")
    for k, g in enumerate(gs):
        w(f"        G[{k}, i] = {g}")
    return "\n".join(L) + "\n"
