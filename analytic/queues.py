"""Waiting-time formulas for one multi-server FIFO station (M/M/c, M/D/c, M/G/c, GI/G/c).

Notation (ANALYTIC_NOTES.md): arrival rate ``lam``, ``c`` servers, mean service ``E[S]``,
offered load ``a = lam E[S]``, utilisation ``rho = a / c``, squared coefficients of
variation ``cs2`` (service) and ``ca2`` (arrivals); ``W`` is the wait in queue.

Every function broadcasts (scalars in, scalars out; arrays in, arrays out), returns
``inf`` for an unstable station (``rho >= 1``) and raises ``ValueError`` naming the
argument for invalid input (negative or NaN rates, zero or fractional servers).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

ArrayLike = float | int | np.ndarray


# ----------------------------------------------------------------------------- checks
def _arr(name: str, value: ArrayLike, *, low: float = 0.0, low_open: bool = False,
         whole: bool = False) -> np.ndarray:
    """Validate one argument: finite (``inf`` refused), above ``low``, whole if asked."""
    x = np.asarray(value, dtype=float)
    bad = ~np.isfinite(x) | ((x <= low) if low_open else (x < low))
    if whole:
        bad |= x != np.floor(x)
    if np.any(bad):
        first = x[bad].flat[0] if x.ndim else float(x)
        kind = "a whole number" if whole else "a finite number"
        rel = ">" if low_open else ">="
        raise ValueError(f"{name} = {float(first)!r}: must be {kind} {rel} {low:g}")
    return x


def _out(x: np.ndarray) -> float | np.ndarray:
    """Scalars out for scalars in."""
    return float(x) if np.ndim(x) == 0 else x


def _station(arrival_rate, service_mean, servers):
    lam = _arr("arrival_rate", arrival_rate)
    es = _arr("service_mean", service_mean, low_open=True)
    c = _arr("servers", servers, low=1.0, whole=True)
    lam, es, c = np.broadcast_arrays(lam, es, c)
    return lam, es, c


# ----------------------------------------------------------------------------- M/M/c
def erlang_c(servers: ArrayLike, offered_load: ArrayLike) -> float | np.ndarray:
    r"""Delay probability of M/M/c (Erlang C), from the stable Erlang-B recursion.

    .. math::
        B_0 = 1,\quad \frac{1}{B_k} = 1 + \frac{k}{a}\,\frac{1}{B_{k-1}},\qquad
        C(c, a) = \frac{B_c}{1 - \rho\,(1 - B_c)},\quad \rho = a / c.

    No factorials, so it holds to about 1e-13 relative for 10,000 servers. Elements are
    processed in order of ``c`` so a grid costs the sum of its ``c`` values, not
    ``size * max(c)``. ``C = 1`` where ``rho >= 1``; ``C = 0`` where ``a = 0``.

    References
    ----------
    A. K. Erlang (1917); any queueing text, e.g. Kleinrock, *Queueing Systems* I, 3.6.
    """
    c = _arr("servers", servers, low=1.0, whole=True)
    a = _arr("offered_load", offered_load)
    c, a = np.broadcast_arrays(c, a)
    flat_c, flat_a = c.ravel().astype(np.int64), a.ravel()
    order = np.argsort(flat_c, kind="stable")
    cs, av = flat_c[order], flat_a[order]
    inv_b = np.ones(cs.size)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        k_over_a = 1.0 / av
        if cs.size:
            for k in range(1, int(cs[-1]) + 1):
                start = int(np.searchsorted(cs, k))
                inv_b[start:] = 1.0 + k * k_over_a[start:] * inv_b[start:]
        b = 1.0 / inv_b
        rho = av / cs
        out = np.where(rho >= 1.0, 1.0, b / (1.0 - rho * (1.0 - b)))
        out = np.where(av == 0.0, 0.0, out)
    result = np.empty_like(out)
    result[order] = out
    return _out(result.reshape(c.shape))


def mmc_wait(arrival_rate: ArrayLike, service_mean: ArrayLike,
             servers: ArrayLike) -> float | np.ndarray:
    r"""Mean wait of M/M/c, exact: :math:`E[W] = C(c, a)\,E[S] / (c\,(1 - \rho))`.

    Returns ``inf`` where ``rho >= 1``. Source: Erlang; Kleinrock, *Queueing Systems* I.
    """
    lam, es, c = _station(arrival_rate, service_mean, servers)
    return _out(_mmc_wait(lam, es, c))


def _mmc_wait(lam, es, c, C=None):
    a = lam * es
    rho = a / c
    if C is None:
        C = np.asarray(erlang_c(c, a))
    with np.errstate(divide="ignore", invalid="ignore"):
        w = C * es / (c * (1.0 - rho))
    return np.where(rho >= 1.0, np.inf, np.where(lam == 0.0, 0.0, w))


def pk_wait(arrival_rate: ArrayLike, service_mean: ArrayLike,
            service_scv: ArrayLike) -> float | np.ndarray:
    r"""Mean wait of M/G/1, exact (Pollaczek-Khinchine).

    .. math:: E[W] = \frac{\lambda E[S^2]}{2 (1 - \rho)}
                   = \frac{\rho\,E[S]\,(1 + c_s^2)}{2 (1 - \rho)}.

    Returns ``inf`` where ``rho >= 1``. Source: any queueing text.
    """
    lam, es, _ = _station(arrival_rate, service_mean, 1)
    cs2 = _arr("service_scv", service_scv)
    lam, es, cs2 = np.broadcast_arrays(lam, es, cs2)
    return _out(_pk_wait(lam, es, cs2))


def _pk_wait(lam, es, cs2):
    rho = lam * es
    with np.errstate(divide="ignore", invalid="ignore"):
        w = rho * es * (1.0 + cs2) / (2.0 * (1.0 - rho))
    return np.where(rho >= 1.0, np.inf, w)


# ----------------------------------------------------------------------------- M/D/c
def cosmetatos_mdc_wait(arrival_rate: ArrayLike, service_time: ArrayLike,
                        servers: ArrayLike) -> float | np.ndarray:
    r"""Mean wait of M/D/c, Cosmetatos's approximation.

    .. math:: E[W_{M/D/c}] \approx \tfrac12 E[W_{M/M/c}]\,(1 + \min(g, 1)),\quad
              g = \frac{(1-\rho)(c-1)(\sqrt{4 + 5c} - 2)}{16\,\rho\,c}.

    Published: within about 1 % for ``rho >= 0.5``. Measured against the exact law
    (``tests/test_published_accuracy.py``): within 1 % for ``c <= 8`` at ``rho >= 0.5`` and
    for ``c <= 32`` at ``rho >= 0.8``; at 16 to 32 servers and ``rho`` 0.5 to 0.7 down to
    -3.2 %; weaker still at light load with many servers (there the waits are tiny). At
    very light load ``g`` exceeds 1 and the formula would put M/D/c above M/M/c, which
    deterministic service never is; ``g`` is therefore capped at 1
    (Whitt's cap at 0.24 is not used). Exact (P-K) at ``c = 1``. Source: G. P. Cosmetatos,
    "Approximate explicit formulae for the average queueing time in the processes (M/D/r)
    and (D/M/r)", INFOR 13 (1975).
    """
    lam, es, c = _station(arrival_rate, service_time, servers)
    return _out(_cosmetatos_mdc(lam, es, c))


def _cosmetatos_g(rho, c):
    with np.errstate(divide="ignore", invalid="ignore"):
        return (1.0 - rho) * (c - 1.0) * (np.sqrt(4.0 + 5.0 * c) - 2.0) / (16.0 * rho * c)


def _cosmetatos_mdc(lam, es, c, w=None):
    w = _mmc_wait(lam, es, c) if w is None else w
    g = _cosmetatos_g(lam * es / c, c)
    with np.errstate(invalid="ignore"):
        out = 0.5 * w * (1.0 + np.minimum(g, 1.0))
    return np.where(lam == 0.0, 0.0, out)


# ----------------------------------------------------------------------------- M/G/c
def allen_cunneen_wait(arrival_rate: ArrayLike, service_mean: ArrayLike,
                       service_scv: ArrayLike, servers: ArrayLike,
                       arrival_scv: ArrayLike = 1.0) -> float | np.ndarray:
    r"""Mean wait of GI/G/c, Allen-Cunneen (Lee-Longton for Poisson input).

    .. math:: E[W] \approx \frac{c_a^2 + c_s^2}{2}\,E[W_{M/M/c}].

    Exact for M/M/c and M/G/1. Known weak: up to about +100 % for heavy-tailed service at
    many servers, about -20 % for smooth service. Source: A. O. Allen, *Probability,
    Statistics, and Queueing Theory* (1990).
    """
    return _method(_allen_cunneen, arrival_rate, service_mean, service_scv, servers,
                   arrival_scv)


def _allen_cunneen(lam, es, cs2, c, ca2, w_mm):
    return 0.5 * (ca2 + cs2) * w_mm


def _ratio_gi(cs2, ca2):
    """GI extension factor ``(ca2 + cs2) / (1 + cs2)`` (1 for Poisson arrivals)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ca2 == 1.0, 1.0, (ca2 + cs2) / (1.0 + cs2))


def cosmetatos_wait(arrival_rate: ArrayLike, service_mean: ArrayLike,
                    service_scv: ArrayLike, servers: ArrayLike,
                    arrival_scv: ArrayLike = 1.0) -> float | np.ndarray:
    r"""Mean wait of M/G/c, Cosmetatos's interpolation between M/D/c and M/M/c.

    .. math:: E[W] \approx c_s^2\,E[W_{M/M/c}] + (1 - c_s^2)\,E[W_{M/D/c}]

    with Cosmetatos's M/D/c wait; GI input scales by ``(ca2 + cs2) / (1 + cs2)``.
    Designed for ``cs2 <= 1``; beyond it the line is extrapolated and overestimates for
    heavy-tailed service at many servers. Source: G. P. Cosmetatos, "Some approximate
    equilibrium results for the multi-server queue (M/G/r)", Oper. Res. Q. 27 (1976).
    """
    return _method(_cosmetatos, arrival_rate, service_mean, service_scv, servers,
                   arrival_scv)


def _cosmetatos(lam, es, cs2, c, ca2, w_mm):
    with np.errstate(invalid="ignore"):  # inf - inf at unstable points: inf below
        w = cs2 * w_mm + (1.0 - cs2) * _cosmetatos_mdc(lam, es, c, w_mm)
    return _ratio_gi(cs2, ca2) * np.where(np.isinf(w_mm), np.inf, w)


def whitt93_wait(arrival_rate: ArrayLike, service_mean: ArrayLike, service_scv: ArrayLike,
                 servers: ArrayLike, arrival_scv: ArrayLike = 1.0) -> float | np.ndarray:
    r"""Mean wait of GI/G/c, Whitt (1993), eqs. 2.16-2.25.

    .. math:: E[W] \approx \phi(\rho, c_a^2, c_s^2, c)\,\frac{c_a^2 + c_s^2}{2}\,
              E[W_{M/M/c}]

    with :math:`\gamma = \min(0.24, (1-\rho)(c-1)(\sqrt{4+5c}-2)/(16 \rho c))`,
    :math:`\phi_1 = 1 + \gamma`, :math:`\phi_3 = (1 - 4\gamma)e^{-2(1-\rho)/(3\rho)}`,
    :math:`\phi_4 = \min(1, (\phi_1 + \phi_3)/2)`,
    :math:`\psi(x) = 1` for ``x >= 1`` else :math:`\phi_4^{2(1-x)}`, and
    :math:`\phi = \frac{4(c_a^2-c_s^2)}{4c_a^2-3c_s^2}\phi_1 +
    \frac{c_s^2}{4c_a^2-3c_s^2}\psi(\bar c^2)` when :math:`c_a^2 \ge c_s^2`, else
    :math:`\phi = \frac{c_s^2-c_a^2}{2(c_a^2+c_s^2)}\phi_3 +
    \frac{c_s^2+3c_a^2}{2(c_a^2+c_s^2)}\psi(\bar c^2)`, :math:`\bar c^2 = (c_a^2+c_s^2)/2`.

    Good for ``cs2 <= 1``; up to about +40 % for heavy-tailed service at many servers.
    The cap of ``gamma`` at 0.24 hurts at light load with many servers. Source: W. Whitt,
    "Approximations for the GI/G/m queue", Prod. Oper. Mgmt. 2 (1993) 114-161.
    """
    return _method(_whitt93, arrival_rate, service_mean, service_scv, servers, arrival_scv)


def _whitt93(lam, es, cs2, c, ca2, w_mm):
    rho = lam * es / c
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        gamma = np.minimum(0.24, _cosmetatos_g(rho, c))
        phi1 = 1.0 + gamma
        phi3 = (1.0 - 4.0 * gamma) * np.exp(-2.0 * (1.0 - rho) / (3.0 * rho))
        phi4 = np.minimum(1.0, 0.5 * (phi1 + phi3))
        mean_scv = 0.5 * (ca2 + cs2)
        psi = np.where(mean_scv >= 1.0, 1.0, phi4 ** (2.0 * (1.0 - mean_scv)))
        d_hi = 4.0 * ca2 - 3.0 * cs2
        phi_hi = 4.0 * (ca2 - cs2) / d_hi * phi1 + cs2 / d_hi * psi
        d_lo = 2.0 * (ca2 + cs2)
        phi_lo = (cs2 - ca2) / d_lo * phi3 + (cs2 + 3.0 * ca2) / d_lo * psi
        phi = np.where(ca2 == cs2, psi, np.where(ca2 > cs2, phi_hi, phi_lo))
        phi = np.where((ca2 == 0.0) & (cs2 == 0.0), 1.0, phi)
    return phi * mean_scv * w_mm


def kimura_wait(arrival_rate: ArrayLike, service_mean: ArrayLike, service_scv: ArrayLike,
                servers: ArrayLike, arrival_scv: ArrayLike = 1.0, *,
                exact_mdc: bool = False) -> float | np.ndarray:
    r"""Mean wait of M/G/c, Kimura's system interpolation (the default method).

    .. math:: E[W] \approx \frac{1 + c_s^2}{\dfrac{2 c_s^2}{E[W_{M/M/c}]}
              + \dfrac{1 - c_s^2}{E[W_{M/D/c}]}}

    with Cosmetatos's M/D/c wait, or the exact one (``exact_mdc=True``, slower: a Markov
    chain per point). GI input scales by ``(ca2 + cs2) / (1 + cs2)``. Exact for M/M/c,
    M/D/c (with the exact wait) and M/G/1. Best known of these over ``c <= 32`` with
    lognormal ``cs2`` 0.25 to 4: roughly -6 % to +11 %; like every two-moment formula it
    cannot see the shape of the service law beyond its variance. Source: T. Kimura,
    "Approximations for multi-server queues: system interpolations", Queueing Systems 17
    (1994) 347-382; Management Science 32 (1986).
    """
    fn = _kimura_exact if exact_mdc else _kimura
    return _method(fn, arrival_rate, service_mean, service_scv, servers, arrival_scv)


def _kimura_from(w_mm, w_md, cs2):
    # over: a denormal wait (1e-310 s, many idle servers) overflows 1/w; the result is 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        w = (1.0 + cs2) / (2.0 * cs2 / w_mm + (1.0 - cs2) / w_md)
    w = np.where(cs2 == 0.0, w_md, w)
    return np.where(np.isinf(w_mm), np.inf, np.where(w_mm == 0.0, 0.0, w))


def _kimura(lam, es, cs2, c, ca2, w_mm):
    w = _kimura_from(w_mm, _cosmetatos_mdc(lam, es, c, w_mm), cs2)
    return _ratio_gi(cs2, ca2) * w


def _kimura_exact(lam, es, cs2, c, ca2, w_mm):
    from .mdc import mdc_mean_wait, too_large_points, warn_fallback

    w_md = mdc_mean_wait(lam, es, c)
    if np.any(np.isnan(w_md)):  # chains past the work bound: Cosmetatos there (named)
        warn_fallback("kimura_exact: the exact M/D/c chain is too large",
                      too_large_points(lam, es, c, w_md))
        w_md = np.where(np.isnan(w_md), _cosmetatos_mdc(lam, es, c, w_mm), w_md)
    w = _kimura_from(w_mm, w_md, cs2)
    return _ratio_gi(cs2, ca2) * w


def _mmc_method(lam, es, cs2, c, ca2, w_mm):
    """The M/M/c wait whatever the service law (a baseline); GI input as Allen-Cunneen."""
    return 0.5 * (ca2 + 1.0) * w_mm


#: Mean-wait methods by name: ``f(lam, es, cs2, c, ca2, w_mm) -> E[W]`` on validated,
#: broadcast arrays, ``w_mm`` being the M/M/c wait (computed once per call). The generic
#: tests parametrize over this registry.
METHODS: dict[str, Callable] = {
    "mmc": _mmc_method,
    "allen_cunneen": _allen_cunneen,
    "cosmetatos": _cosmetatos,
    "whitt93": _whitt93,
    "kimura": _kimura,
    "kimura_exact": _kimura_exact,
}
DEFAULT_METHOD = "kimura"


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method = {method!r}: must be one of {', '.join(METHODS)}")
    return method


def _prepare(arrival_rate, service_mean, service_scv, servers, arrival_scv):
    lam, es, c = _station(arrival_rate, service_mean, servers)
    cs2 = _arr("service_scv", service_scv)
    ca2 = _arr("arrival_scv", arrival_scv)
    return np.broadcast_arrays(lam, es, cs2, c, ca2)


def _method(fn, arrival_rate, service_mean, service_scv, servers, arrival_scv):
    lam, es, cs2, c, ca2 = _prepare(arrival_rate, service_mean, service_scv, servers,
                                    arrival_scv)
    return _out(_wait_and_delay(fn, lam, es, cs2, c, ca2)[0])


def _wait_and_delay(fn, lam, es, cs2, c, ca2):
    """``(E[W], P(W > 0))`` with one Erlang C evaluation; P-K at M/G/1 stations."""
    C = np.asarray(erlang_c(c, lam * es), dtype=float)
    w = _with_pk(fn(lam, es, cs2, c, ca2, _mmc_wait(lam, es, c, C)), lam, es, cs2, c, ca2)
    return w, _delay_probability(lam, es, cs2, c, C)


def _with_pk(w, lam, es, cs2, c, ca2):
    """Pollaczek-Khinchine, exact, wherever the station is M/G/1."""
    one = (c == 1.0) & (ca2 == 1.0)
    if np.any(one):
        w = np.where(one, _pk_wait(lam, es, cs2), w)
    return w


def wait_and_delay(arrival_rate: ArrayLike, service_mean: ArrayLike, service_scv: ArrayLike,
                   servers: ArrayLike, method: str = DEFAULT_METHOD,
                   arrival_scv: ArrayLike = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``(mean_wait(...), delay_probability(...))`` at the cost of one Erlang C."""
    fn = METHODS[check_method(method)]
    args = _prepare(arrival_rate, service_mean, service_scv, servers, arrival_scv)
    return _wait_and_delay(fn, *args)


def mean_wait(arrival_rate: ArrayLike, service_mean: ArrayLike, service_scv: ArrayLike,
              servers: ArrayLike, method: str = DEFAULT_METHOD,
              arrival_scv: ArrayLike = 1.0) -> float | np.ndarray:
    """Mean wait in queue of a GI/G/c station by the named method.

    Parameters
    ----------
    arrival_rate : array_like
        ``lam`` (>= 0), per second.
    service_mean : array_like
        ``E[S]`` (> 0), seconds.
    service_scv : array_like
        ``cs2 = Var[S] / E[S]^2`` (>= 0).
    servers : array_like
        ``c``, whole numbers >= 1.
    method : {"mmc", "allen_cunneen", "cosmetatos", "whitt93", "kimura", "kimura_exact"}
        See each ``*_wait`` function for its formula, source and known weakness.
        Whatever the method, an M/G/1 station (one server, Poisson input) gets the exact
        Pollaczek-Khinchine wait.
    arrival_scv : array_like
        ``ca2`` of the interarrival times (1 for Poisson; the decode pool's comes from
        :func:`departure_scv`).

    Returns
    -------
    float or ndarray
        ``E[W]`` in seconds; ``inf`` where ``rho >= 1``.

    Examples
    --------
    >>> round(mean_wait(3.2, 1.0, 1.0, 4, method="mmc"), 6)   # M/M/4 at rho 0.8
    0.745541
    """
    fn = METHODS[check_method(method)]
    return _method(fn, arrival_rate, service_mean, service_scv, servers, arrival_scv)


def delay_probability(arrival_rate: ArrayLike, service_mean: ArrayLike, servers: ArrayLike,
                      service_scv: ArrayLike = 1.0) -> float | np.ndarray:
    r"""Probability of waiting, ``P(W > 0)``.

    Erlang C for every service law (Tijms; Whitt 1993) except deterministic service
    (``cs2 = 0``), which gets the exact M/D/c value. Erlang C is exact for M/M/c and for
    M/G/1 (where it equals ``rho``); for other M/G/c it is an approximation.
    """
    lam, es, cs2, c, _ = _prepare(arrival_rate, service_mean, service_scv, servers, 1.0)
    return _out(_delay_probability(lam, es, cs2, c))


def _delay_probability(lam, es, cs2, c, C=None):
    p = np.asarray(erlang_c(c, lam * es), dtype=float) if C is None else C
    det = (cs2 == 0.0) & (c > 1) & (lam * es < c) & (lam > 0)
    if np.any(det):
        from .mdc import mdc_delay_probability, too_large_points, warn_fallback

        exact = mdc_delay_probability(lam, es, c)
        bad = det & np.isnan(exact)
        if np.any(bad):  # keep Erlang C's there, named
            warn_fallback("P(W > 0): the exact M/D/c chain is too large",
                          too_large_points(lam[bad], es[bad], c[bad], exact[bad]),
                          instead="Erlang C's delay probability")
        p = np.where(det & ~bad, exact, p)
    return p


def departure_scv(arrival_rate: ArrayLike, service_mean: ArrayLike, service_scv: ArrayLike,
                  servers: ArrayLike, arrival_scv: ArrayLike = 1.0) -> float | np.ndarray:
    r"""Squared coefficient of variation of a c-server station's departures (QNA linking).

    .. math:: c_d^2 = 1 + (1 - \rho^2)(c_a^2 - 1) + \rho^2\,(c_s^2 - 1) / \sqrt{c}

    Exact for M/M/c (Burke: ``cd2 = 1``); an approximation otherwise, and meaningless for
    an unstable station (returns ``inf`` where ``rho >= 1``). Source: W. Whitt, "The
    Queueing Network Analyzer", Bell System Tech. J. 62 (1983), eq. 39.
    """
    lam, es, cs2, c, ca2 = _prepare(arrival_rate, service_mean, service_scv, servers,
                                    arrival_scv)
    return _out(_departure_scv(lam, es, cs2, c, ca2))


def _departure_scv(lam, es, cs2, c, ca2):
    rho = lam * es / c
    out = 1.0 + (1.0 - rho**2) * (ca2 - 1.0) + rho**2 * (cs2 - 1.0) / np.sqrt(c)
    return np.where(rho >= 1.0, np.inf, out)


def relaxation_time(arrival_rate: ArrayLike, service_mean: ArrayLike,
                    service_scv: ArrayLike, servers: ArrayLike,
                    arrival_scv: ArrayLike = 1.0) -> float | np.ndarray:
    r"""Relaxation time of a GI/G/c station's queue, in seconds (heavy-traffic scale).

    .. math:: \tau = \frac{\rho\,(c_a^2 + c_s^2)\,E[S]}{c\,(1 - \rho)^2}

    the ``sigma^2 / mu^2`` of the reflected Brownian motion that approximates the number
    in queue (drift ``-c (1 - rho) / E[S]``, variance rate ``lam (ca2 + cs2)``): the time
    over which the queue forgets its past. ``inf`` where ``rho >= 1``. Source: W. Whitt,
    "Planning queueing simulations", Management Science 35 (1989) 1341-1366.
    """
    lam, es, cs2, c, ca2 = _prepare(arrival_rate, service_mean, service_scv, servers,
                                    arrival_scv)
    return _out(_relaxation(lam, es, cs2, c, ca2))


def _relaxation(lam, es, cs2, c, ca2):
    rho = lam * es / c
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = rho * (ca2 + cs2) * es / (c * (1.0 - rho) ** 2)
    return np.where(rho >= 1.0, np.inf, tau)


def linked_arrival_scv(arrival_rate: ArrayLike, service_mean: ArrayLike,
                       service_scv: ArrayLike, servers: ArrayLike,
                       next_service_mean: ArrayLike, next_service_scv: ArrayLike,
                       next_servers: ArrayLike,
                       arrival_scv: ArrayLike = 1.0) -> float | np.ndarray:
    r"""Arrival variability a downstream station sees from an upstream one's departures.

    QNA's :func:`departure_scv` ``c_d^2`` describes the departures' intervals one at a
    time; over long windows the departures of a stable station vary like its arrivals
    (``c_a^2``). A downstream queue averages its input over its own relaxation time
    ``tau_2``, so it sees the short-scale value only in proportion to how fast the
    upstream queue forgets (``tau_1``, :func:`relaxation_time`):

    .. math:: c_{a,2}^2 = c_a^2 + (c_d^2 - c_a^2)\,\sqrt{\frac{\tau_1}{\tau_1 + \tau_2}}

    with ``tau_2`` taken at arrival variability ``c_d^2``. The indices of dispersion of a
    departure process move from ``c_d^2`` to ``c_a^2`` on the upstream time scale; this
    evaluates them at the downstream one, the idea of Whitt's variability functions
    (W. Whitt, "Variability functions for parametric-decomposition approximations of
    queueing networks", Management Science 41 (1995) 1704-1715). It tends to QNA's value
    when the downstream station is fast and lightly loaded, and to ``c_a^2`` when it is
    slow or heavily loaded. The square root is *empirical*: on the fidelity grid of issue
    14 (``validate.fidelity``) it put mean TTFT within 5 % at more points than the
    plain ratio (which left +9 % at a 1:3 split, sigma 0.3, load 0.8) or its fourth root.
    ``inf`` where the upstream station is unstable.
    """
    lam, es1, cs1, c1, ca2 = _prepare(arrival_rate, service_mean, service_scv, servers,
                                      arrival_scv)
    es2 = _arr("next_service_mean", next_service_mean, low_open=True)
    cs2 = _arr("next_service_scv", next_service_scv)
    c2 = _arr("next_servers", next_servers, low=1.0, whole=True)
    cd2 = _departure_scv(lam, es1, cs1, c1, ca2)
    tau1 = _relaxation(lam, es1, cs1, c1, ca2)
    cd2_ok = np.where(np.isfinite(cd2), cd2, 1.0)
    tau2 = _relaxation(lam, es2, cs2, c2, cd2_ok)
    with np.errstate(invalid="ignore"):
        share = np.sqrt(np.where(np.isinf(tau2), 0.0, np.where(tau1 + tau2 > 0.0,
                                                               tau1 / (tau1 + tau2), 1.0)))
        out = ca2 + (cd2 - ca2) * share
    return _out(np.where(np.isfinite(cd2), out, np.inf))


#: Largest conditional-wait SCV given to the gamma law (see :func:`conditional_wait_scv`).
GAMMA_SCV_CAP = 1.5


def conditional_wait_scv(utilisation: ArrayLike, service_skew: ArrayLike,
                         servers: ArrayLike = 1) -> float | np.ndarray:
    r"""Squared coefficient of variation given to the wait of those who wait by the gamma
    wait law (``wait_law="gamma"``; the default law is :mod:`analytic.residual`).

    .. math:: s_1 = 2\rho - 1 + (1 - \rho)\,\frac{4}{3}\,\kappa,\qquad
              \kappa = \frac{E[S^3]\,E[S]}{E[S^2]^2},\qquad
              c^2_{W | W > 0} \approx \min\left(1 + \frac{s_1 - 1}{\sqrt{c}},\ 1.5\right)

    ``service_skew`` is ``kappa`` (1 for deterministic, 3/2 for exponential service).
    ``s_1`` is exact for M/G/1: its wait is a geometric(``rho``) sum of equilibrium
    residual service times with ``E[S_e] = E[S^2] / 2E[S]`` and
    ``E[S_e^2] = E[S^3] / 3E[S]`` (Pollaczek-Khinchine; Takacs); it is 1 for exponential
    service and tends to 1 at heavy load (the exponential heavy-traffic limit). With
    ``c`` servers a wait ends at the first of ``c`` departures, which pulls its law
    towards the exponential; the ``1 / sqrt(c)`` damping and the cap at
    :data:`GAMMA_SCV_CAP` are *empirical*, chosen on the fidelity grid of issue 14
    (``validate.fidelity``): a gamma law with a large SCV piles its mass near zero, while
    a heavy-tailed service's real wait keeps mass at moderate values (with the exact
    ``s_1 = 8`` of one GPU at load 0.3 and sigma 1.5, P90 TTFT came out 52 % low; with a
    cap at 2 the built-in default's disaggregated P99 came out 17 % high, at 1.5 7 %).
    Against the exact M/D/c law the returned value is within 0.25 of the true SCV at 2
    to 16 servers and loads 0.5 and 0.9 (undamped ``s_1``: up to 0.3 off at 16 servers;
    ``tests/test_fidelity_formulas.py``).
    """
    rho = _arr("utilisation", utilisation)
    kappa = _arr("service_skew", service_skew)
    c = _arr("servers", servers, low=1.0, whole=True)
    one = np.maximum(2.0 * rho - 1.0 + (1.0 - rho) * (4.0 / 3.0) * kappa, 1e-6)
    return _out(np.minimum(1.0 + (one - 1.0) / np.sqrt(c), GAMMA_SCV_CAP))


def wait_quantile(q: ArrayLike, arrival_rate: ArrayLike, service_mean: ArrayLike,
                  service_scv: ArrayLike, servers: ArrayLike, method: str = DEFAULT_METHOD,
                  arrival_scv: ArrayLike = 1.0) -> float | np.ndarray:
    r"""Quantile of the wait in queue.

    The wait is a delay probability :math:`p = P(W > 0)` times a conditional law taken
    exponential with the method's mean (Tijms; Whitt 1993):

    .. math:: P(W > t) \approx p\,e^{-p t / E[W]},\qquad
              t_q = \frac{E[W]}{p}\,\ln\frac{p}{1 - q}\ \text{for}\ q > 1 - p,\ 0\ \text{else}.

    Exact for M/M/c. Deterministic service with Poisson input (M/D/c) uses the exact
    Crommelin/Franx distribution instead. Known weak: lognormal waits have heavier tails
    than exponential, so with ``cs2 > 1`` and few servers P99 can be far too low.
    Returns ``inf`` where ``rho >= 1``.
    """
    qq = np.asarray(q, dtype=float)
    if not np.all((qq > 0.0) & (qq < 1.0)):  # NaN fails both
        raise ValueError(f"q = {q!r}: must be in (0, 1)")
    fn = METHODS[check_method(method)]
    lam, es, cs2, c, ca2, qq = np.broadcast_arrays(
        *_prepare(arrival_rate, service_mean, service_scv, servers, arrival_scv), qq)
    w, p = _wait_and_delay(fn, lam, es, cs2, c, ca2)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(qq > 1.0 - p, w / p * np.log(p / (1.0 - qq)), 0.0)
    t = np.where(np.isinf(w), np.inf, t)
    det = (cs2 == 0.0) & (ca2 == 1.0) & np.isfinite(w) & (lam > 0)
    if np.any(det):
        from .mdc import MDcTooLarge, mdc_wait, warn_fallback

        t = np.array(t, dtype=float)
        idx = np.flatnonzero(det.ravel())
        flat = t.reshape(-1)
        errors = []
        for i in idx:
            try:
                w_ex = mdc_wait(float(lam.flat[i]), float(es.flat[i]), int(c.flat[i]))
            except MDcTooLarge as exc:  # keep the two-moment quantile there, named
                errors.append(exc.point)
                continue
            flat[i] = w_ex.quantile(float(qq.flat[i]))
        warn_fallback("wait quantile: the exact M/D/c chain is too large", errors,
                      instead="the two-moment quantile")
    return _out(t)
