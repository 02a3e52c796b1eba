"""Token-length distributions: a lognormal, rounded and clipped.

A token count is ``N = max(min_value, round(X))`` with ``X ~ LogNormal(mu, sigma)``, and
``N = min(max_value, ...)`` when a ``max_value`` is given (a context length: longer
prompts are cut to it, as a client truncating its input would).
The seed documents give ``X`` in three equivalent ways (``mode``), each converted to
``(mu, sigma)`` exactly:

``log``
    ``mean`` is ``mu`` and ``sigma`` is the standard deviation of ``log X``.
``real_mean_std``
    ``mean`` and ``std`` of ``X`` in tokens:
    ``sigma^2 = log(1 + std^2 / mean^2)``, ``mu = log(mean) - sigma^2 / 2``.
``p50_p90``
    median and 90th percentile of ``X`` in tokens:
    ``mu = log(p50)``, ``sigma = (log(p90) - log(p50)) / z_0.9`` with ``z_0.9 = Phi^-1(0.9)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from . import _check

#: The modes a :class:`TokenDist` can be given in, and the fields each one takes.
MODES: dict[str, tuple[str, ...]] = {
    "log": ("mean", "sigma"),
    "real_mean_std": ("mean", "std"),
    "p50_p90": ("p50", "p90"),
}

#: ``Phi^-1(0.9)``, the standard normal 90th percentile (``scipy.special.ndtri(0.9)``).
Z_P90: float = 1.2815515655446004

# Explicit summation of the pmf stops this many standard deviations (of log X) above mu
# (mass beyond: 3e-14); past it the tail is added in closed form (lognormal partial
# moments with Sheppard's correction and the Euler-Maclaurin boundary term), which is
# exact to far below double precision there.
_TAIL_Z = 7.5
_MAX_TERMS = 4_000_000
# Raw moments sum explicitly only until the Euler-Maclaurin remainder of the closed-form
# tail is below this fraction of the moment (see TokenDist._moment_cut).
_EM_REL = 1e-15
# Normal CDFs of up to this many points use the C library's erfc; longer arrays use scipy
# (imported then: 0.3 s, more than erfc costs for this many points).
_SCIPY_FROM = 100_000
_SQRT2 = math.sqrt(2.0)


def normal_cdf(z: np.ndarray | float) -> np.ndarray:
    """``Phi(z) = erfc(-z / sqrt 2) / 2``, with full relative precision in both tails
    (``Phi(-z)`` is the upper tail). scipy's ``ndtr`` for long arrays, ``math.erfc``
    otherwise, so that a start-up needing a few thousand values does not import scipy."""
    z = np.asarray(z, dtype=np.float64)
    if z.size >= _SCIPY_FROM:
        from scipy.special import ndtr

        return ndtr(z)
    erfc = math.erfc
    return np.array([0.5 * erfc(-v / _SQRT2) for v in z.ravel().tolist()]).reshape(z.shape)


#: Largest spread of log tokens: the squared coefficient of variation ``exp(sigma^2) - 1``
#: is then 8.9e6 (real traces: sigma 0.5 to 1.4). Beyond it moments overflow downstream.
MAX_SIGMA = 4.0
#: Largest mean of a token law (tokens): ``exp(mu + sigma^2 / 2) <= 1e9``.
MAX_MEAN_TOKENS = 1e9


def _log_params(mode: str, values: dict[str, float | None], name: str) -> tuple[float, float]:
    """Convert one of the three parameterisations to ``(mu, sigma)`` of ``log X`` and
    refuse laws beyond :data:`MAX_SIGMA` or :data:`MAX_MEAN_TOKENS`, naming the field."""
    mu, sigma = _raw_log_params(mode, values, name)
    spread = {"log": "sigma", "real_mean_std": "std", "p50_p90": "p90"}[mode]
    if sigma > MAX_SIGMA:
        raise ValueError(f"{name}.{spread} = {_check.show(values[spread])}: gives sigma of "
                         f"log tokens {sigma:.3g}; must give <= {MAX_SIGMA:g} (a squared "
                         "coefficient of variation of at most 8.9e6)")
    if mu + sigma * sigma / 2.0 > math.log(MAX_MEAN_TOKENS):
        where = {"log": "mean", "real_mean_std": "mean", "p50_p90": "p50"}[mode]
        raise ValueError(f"{name}.{where} = {_check.show(values[where])}: gives a mean of "
                         f"{math.exp(min(mu + sigma * sigma / 2.0, 700.0)):.3g} tokens; must "
                         f"give <= {MAX_MEAN_TOKENS:.0e} tokens")
    return mu, sigma


def _raw_log_params(mode: str, values: dict[str, float | None],
                    name: str) -> tuple[float, float]:
    """Convert one of the three parameterisations to ``(mu, sigma)`` of ``log X``."""
    if mode == "log":
        mu = _check.real(f"{name}.mean", values["mean"])
        sigma = _check.nonnegative(f"{name}.sigma", values["sigma"])
        if mu > 25.0:
            raise ValueError(f"{name}.mean = {mu!r}: must be <= 25 (log of tokens; exp(25) ~ 7e10)")
        return mu, sigma
    if mode == "real_mean_std":
        mean = _check.positive(f"{name}.mean", values["mean"])
        std = _check.positive(f"{name}.std", values["std"])
        ratio = std / mean
        # log1p(r^2) without overflow: 2 log r + log1p(r^-2) for large r
        sigma2 = math.log1p(ratio * ratio) if ratio < 1e150 else \
            2.0 * math.log(ratio) + math.log1p(ratio ** -2)
        return math.log(mean) - sigma2 / 2.0, math.sqrt(sigma2)
    p50 = _check.positive(f"{name}.p50", values["p50"])
    p90 = _check.positive(f"{name}.p90", values["p90"])
    if p90 <= p50:
        raise ValueError(f"{name}.p90 = {p90!r}: must be > {name}.p50 = {p50!r}")
    return math.log(p50), (math.log(p90) - math.log(p50)) / Z_P90


@dataclass(frozen=True)
class TokenDist:
    """Distribution of a token count: ``max(min_value, round(X))``, ``X`` lognormal.

    Parameters
    ----------
    mode : {"log", "real_mean_std", "p50_p90"}
        How ``X`` is given (see the module docstring for the exact conversions).
    mean, sigma : float, optional
        ``log`` mode: ``mu`` and ``sigma`` of ``log X``; ``sigma = 0`` gives a fixed length.
        ``real_mean_std`` mode: ``mean`` is the mean of ``X`` in tokens.
    std : float, optional
        ``real_mean_std`` mode: standard deviation of ``X`` in tokens (> 0).
    p50, p90 : float, optional
        ``p50_p90`` mode: median and 90th percentile of ``X`` in tokens (``p90 > p50 > 0``).
    min_value : int
        Smallest token count (>= 1).
    max_value : int, optional
        Largest token count (``min_value`` to ``min_value + 4,000,000``): longer draws are
        cut to it. Without it the law's upper tail is the lognormal's, whose high moments
        a heavy law draws from lengths no model serves (``E[N^4]`` of sigma 1.2 from about
        ``e^{4 sigma^2} = 317`` times the median).
    name : str
        Field name used in error messages (``prompt_tokens``, ``output_tokens``).

    Examples
    --------
    >>> d = TokenDist("real_mean_std", mean=1000.0, std=500.0)
    >>> round(d.mu, 6), round(d.sigma_log, 6)
    (6.796184, 0.472381)
    >>> TokenDist.fixed(512).mean_tokens()
    512.0
    """

    mode: str = "log"
    mean: float | None = None
    sigma: float | None = None
    std: float | None = None
    p50: float | None = None
    p90: float | None = None
    min_value: int = 1
    max_value: int | None = None
    name: str = field(default="tokens", compare=False, repr=False,
                      metadata={"config": False})

    #: The fields each mode takes; a config that switches mode clears the others.
    MODE_FIELDS = MODES

    def __post_init__(self) -> None:
        _check.choice(f"{self.name}.mode", self.mode, tuple(MODES))
        given = {k: getattr(self, k) for k in ("mean", "sigma", "std", "p50", "p90")}
        wanted = MODES[self.mode]
        extra = [k for k, v in given.items() if v is not None and k not in wanted]
        if extra:
            raise ValueError(
                f"{self.name}: field(s) {', '.join(extra)} do not apply to mode "
                f"{self.mode!r}, which takes {' and '.join(wanted)}"
            )
        for k in wanted:
            if given[k] is None:
                raise ValueError(f"{self.name}.{k} is missing: mode {self.mode!r} takes "
                                 f"{' and '.join(wanted)}")
        object.__setattr__(self, "min_value",
                           _check.whole(f"{self.name}.min_value", self.min_value, low=1))
        if self.max_value is not None:
            object.__setattr__(self, "max_value", _check.whole(
                f"{self.name}.max_value", self.max_value, low=self.min_value,
                high=self.min_value + _MAX_TERMS))
        mu, sigma = _log_params(self.mode, given, self.name)
        object.__setattr__(self, "_mu", mu)
        object.__setattr__(self, "_sigma", sigma)

    # ------------------------------------------------------------------ construction
    @classmethod
    def fixed(cls, tokens: int, name: str = "tokens") -> TokenDist:
        """Every request has exactly ``tokens`` tokens (``log`` mode with ``sigma = 0``)."""
        n = _check.whole(f"{name}", tokens, low=1)
        return cls("log", mean=math.log(n), sigma=0.0, min_value=n, name=name)

    @classmethod
    def lognormal(cls, mu: float, sigma: float, min_value: int = 1,
                  name: str = "tokens") -> TokenDist:
        """The seed API's ``(mu, sigma, min)`` triple."""
        return cls("log", mean=mu, sigma=sigma, min_value=min_value, name=name)

    # ------------------------------------------------------------------ parameters
    @property
    def mu(self) -> float:
        """``mu``: mean of ``log X``."""
        return self._mu  # type: ignore[attr-defined]

    @property
    def sigma_log(self) -> float:
        """``sigma``: standard deviation of ``log X``."""
        return self._sigma  # type: ignore[attr-defined]

    def as_dict(self) -> dict[str, float | int | str]:
        """The given fields only (round-trips through :func:`spec.token_dist_from_mapping`)."""
        out: dict[str, float | int | str] = {"mode": self.mode}
        out.update({k: getattr(self, k) for k in MODES[self.mode]})
        out["min_value"] = self.min_value
        if self.max_value is not None:
            out["max_value"] = self.max_value
        return out

    # ------------------------------------------------------------------ sampling
    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Draw ``size`` token counts ``max(min_value, rint(X))`` (at most ``max_value``)
        as int64."""
        return self.sample_float(rng, size).astype(np.int64)

    def sample_float(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """The same draws as :meth:`sample`, as float64 (whole numbers), without the
        integer round trip (the simulator works in float64)."""
        x = rng.lognormal(self.mu, self.sigma_log, size)
        np.rint(x, out=x)
        np.maximum(x, float(self.min_value), out=x)
        if self.max_value is not None:
            np.minimum(x, float(self.max_value), out=x)
        return x

    # ------------------------------------------------------------------ exact law
    def _cut(self) -> int:
        """Last token count summed explicitly by :meth:`pmf` and :meth:`raw_moment`."""
        if self.max_value is not None:  # the whole law, its atom at max_value included
            return self.max_value
        top = math.exp(min(self.mu + _TAIL_Z * self.sigma_log, 700.0))
        return int(min(max(self.min_value, math.ceil(top)), self.min_value + _MAX_TERMS))

    def _moment_cut(self, order: int) -> int:
        """Last token count summed explicitly for ``E[N^order]``.

        Past a cut ``a = K + 1/2`` at or above the median, the closed-form tail of
        :meth:`_raw_moment_uncached` (Sheppard's correction and the first
        Euler-Maclaurin boundary term) leaves a remainder of the order of the next
        boundary terms, bounded here, with every constant taken as 1 (the true ones are
        below 1/12), by

        ``R(a) = r |F_(r-1)''(a)| + sum_(j>=2) C(r, j) |F_(r-j)'(a)|``,
        ``F_m(x) = x^m f(x) = x^(m-1) phi(z) / sigma``, ``z = (log x - mu) / sigma``,

        with ``F_m' = F_m b / x`` and ``F_m'' = F_m (b^2 - b - 1/sigma^2) / x^2``,
        ``b = m - 1 - z / sigma``. ``K`` doubles from the median until
        ``R(a) <= 1e-15 E[X^r]``, and never passes :meth:`_cut`. For the default output
        law this sums about thirteen thousand terms instead of 1.5 million.
        """
        full = self._cut()
        if self.sigma_log == 0.0 or self.max_value is not None:
            return full
        mu, s = self.mu, self.sigma_log
        size = math.exp(order * mu + order * order * s * s / 2.0)  # E[X^order]

        def f_m(m: int, x: float) -> tuple[float, float]:
            z = (math.log(x) - mu) / s
            return x ** (m - 1) * math.exp(-0.5 * z * z) / (s * math.sqrt(2.0 * math.pi)), \
                m - 1 - z / s

        k = max(self.min_value + 1, int(math.exp(mu)))
        while k < full:
            a = k + 0.5
            fm, b = f_m(order - 1, a)
            rem = order * fm * abs(b * b - b - 1.0 / (s * s)) / (a * a)
            for j in range(2, order + 1):
                fm, b = f_m(order - j, a)
                rem += math.comb(order, j) * fm * abs(b) / a
            if rem <= _EM_REL * size:
                return k
            k *= 2
        return full

    def _sf(self, x: np.ndarray) -> np.ndarray:
        """``P(X > x)`` for the continuous lognormal, accurate in the upper tail."""
        with np.errstate(divide="ignore"):
            z = (np.log(x) - self.mu) / self.sigma_log
        return normal_cdf(-z)

    def pmf(self) -> tuple[np.ndarray, np.ndarray]:
        """Exact probabilities of the token counts (cached per distribution; see
        :meth:`_pmf_uncached`). The arrays are shared: do not modify them."""
        return _pmf(self)

    def _pmf_uncached(self) -> tuple[np.ndarray, np.ndarray]:
        """Exact probabilities of the token counts ``min_value .. K``.

        ``P(N = m) = P(X < m + 1/2)``, ``P(N = k) = P(k - 1/2 <= X < k + 1/2)`` for ``k > m``.
        ``K`` lies ``7.5`` sigma above the median (at most four million terms); the mass
        beyond it (about ``3e-14`` unless the cap binds) is *not* included, so
        ``probs.sum()`` tells how much is left.

        Returns
        -------
        values : ndarray of int64
        probs : ndarray of float64
        """
        return self._pmf_upto(self._cut())

    def _pmf_upto(self, last: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_pmf_uncached` for the token counts ``min_value .. last``."""
        m = self.min_value
        if self.sigma_log == 0.0:
            return np.array([self._fixed()], dtype=np.int64), np.array([1.0])
        if self.max_value is not None:
            last = min(last, self.max_value)
        k = np.arange(m, max(m, last) + 1, dtype=np.int64)
        # differences of the CDF below the median and of the survival function above it,
        # so that every probability keeps its relative precision
        z = (np.log(k + 0.5) - self.mu) / self.sigma_log
        below = normal_cdf(z)  # P(X < k + 1/2)
        above = normal_cdf(-z)  # P(X > k + 1/2)
        prev_below = np.concatenate(([0.0], below[:-1]))
        prev_above = np.concatenate(([1.0], above[:-1]))
        probs = np.where(z <= 0.0, below - prev_below, prev_above - above)
        if last == self.max_value:  # every draw past max_value - 1/2 is cut to it
            probs[-1] = 1.0 if k.size == 1 else float(prev_above[-1])
        return k, probs

    def _fixed(self) -> int:
        """The one token count of a ``sigma = 0`` law."""
        n = max(self.min_value, int(np.rint(math.exp(self.mu))))
        return n if self.max_value is None else min(n, self.max_value)

    def raw_moment(self, order: int) -> float:
        """Exact ``E[N^order]`` for ``order`` in 1..4 (cached per distribution; the
        method is described at :meth:`_raw_moment_uncached`)."""
        return _raw_moment(self, _check.whole("order", order, low=1, high=4))

    def _raw_moment_uncached(self, order: int) -> float:
        """Exact ``E[N^order]`` for ``order`` in 1..4.

        The pmf is summed explicitly up to ``K`` (:meth:`_moment_cut`); the tail beyond
        ``K + 1/2`` uses the lognormal partial moment
        ``E[X^k; X > a] = exp(k mu + k^2 sigma^2 / 2) Phi((mu + k sigma^2 - log a) / sigma)``
        with Sheppard's correction ``E[(X + U)^k]``, ``U ~ Uniform(-1/2, 1/2)``, for the
        rounding, plus the Euler-Maclaurin boundary term ``k a^(k-1) f(a) / 12`` of the cut
        at ``a``. The tail holds below ``1e-12`` of the moment for ``sigma <= 2``.
        """
        values, probs = self._pmf_upto(self._moment_cut(order))
        head = float(np.sum(values.astype(np.float64) ** order * probs))
        if self.sigma_log == 0.0 or self.max_value is not None:
            return head  # a law with a maximum is summed whole
        a = float(values[-1]) + 0.5

        def partial(k: int) -> float:
            if k == 0:
                return float(self._sf(np.array(a)))
            s2 = self.sigma_log**2
            z = (self.mu + k * s2 - math.log(a)) / self.sigma_log
            return math.exp(k * self.mu + k * k * s2 / 2.0) * float(normal_cdf(z))

        # E[U^2] = 1/12, E[U^4] = 1/80, odd moments vanish.
        u = {0: 1.0, 2: 1.0 / 12.0, 4: 1.0 / 80.0}
        tail = sum(math.comb(order, j) * u[j] * partial(order - j)
                   for j in range(0, order + 1, 2))
        # Euler-Maclaurin boundary term of the cut at a: + g'(a) f(a) / 12, g(x) = x^order.
        z = (math.log(a) - self.mu) / self.sigma_log
        density = math.exp(-0.5 * z * z) / (math.sqrt(2.0 * math.pi) * a * self.sigma_log)
        tail += order * a ** (order - 1) * density / 12.0
        return head + tail

    def cdf(self, n: float | np.ndarray) -> float | np.ndarray:
        """Exact ``P(N <= n)``: 0 below ``min_value``, else ``P(X < floor(n) + 1/2)``."""
        x = np.asarray(n, dtype=float)
        k = np.floor(x)
        if self.sigma_log == 0.0:
            out = (k >= self._fixed()).astype(float)
        else:
            with np.errstate(invalid="ignore"):
                out = np.where(k < self.min_value, 0.0,
                               1.0 - self._sf(np.maximum(k, self.min_value) + 0.5))
            if self.max_value is not None:
                out = np.where(k >= self.max_value, 1.0, out)
        return float(out) if out.ndim == 0 else out

    def mean_tokens(self) -> float:
        """Exact ``E[N]``."""
        return self.raw_moment(1)

    def var_tokens(self) -> float:
        """Exact ``Var[N]``."""
        m1 = self.raw_moment(1)
        return max(self.raw_moment(2) - m1 * m1, 0.0)


@lru_cache(maxsize=512)
def _raw_moment(dist: TokenDist, order: int) -> float:
    """Cache of :meth:`TokenDist.raw_moment`: the exact sums touch millions of terms."""
    return dist._raw_moment_uncached(order)


@lru_cache(maxsize=64)
def _pmf(dist: TokenDist) -> tuple[np.ndarray, np.ndarray]:
    values, probs = dist._pmf_uncached()
    values.setflags(write=False)
    probs.setflags(write=False)
    return values, probs
