"""Good-practice accuracy assessment and area estimation of a land-cover map from a stratified random sample.

The estimators follow the three papers that define the practice:

* Olofsson, Foody, Stehman & Woodcock (2013), *Making better use of accuracy data in land change studies*,
  Remote Sens. Environ. 129, 122-131, and Olofsson, Foody, Herold, Stehman, Woodcock & Wulder (2014), *Good
  practices for estimating area and assessing accuracy of land change*, Remote Sens. Environ. 148, 42-57:
  stratified random sampling with the map classes as strata. With ``W_h = N_h / N`` (mapped share of stratum
  ``h``) and ``n_hj`` sample units of map class ``h`` and reference class ``j``, the estimated area proportion
  of cell ``(h, j)`` is ``p_hj = W_h n_hj / n_h.`` (eq. 4 of the 2014 paper); overall accuracy
  ``O = sum_j p_jj`` (eq. 1) with variance eq. 5, user's accuracy ``U_h = p_hh / p_h.`` (eq. 2) with eq. 6,
  producer's accuracy ``P_j = p_jj / p_.j`` (eq. 3) with eq. 7, the area proportion of reference class ``j``
  ``p_.j`` (eq. 9) with eq. 10, its area ``A p_.j`` (eq. 11) and 95 % interval ``± 1.96 A SE(p_.j)`` (eq. 12),
  and the sample size for a target standard error of overall accuracy (eq. 13). No finite population
  correction, as in the paper: the sample is a negligible fraction of the map's pixels.
* Stehman (2014), *Estimating area and map accuracy for stratified random sampling when the strata are
  different from the map classes*, Int. J. Remote Sens. 35, 4923-4939: every quantity is the stratified mean of a
  per-unit indicator ``y_u`` (eq. 2-4: ``sum_h N_h ybar_h / N``) or a ratio of two such estimates (eq. 27:
  user's accuracy ``y_u = 1`` if correct and of map class ``k``, ``x_u = 1`` if of map class ``k``; producer's
  with ``x_u = 1`` if of reference class ``k``), with the variances of eq. 25 and eq. 28. When the strata are the
  map classes these are algebraically Olofsson's estimators, standard errors included (without the finite
  population correction ``1 - n_h / N_h``, which the ``finite_population_correction`` option adds).

Class indices ``0 .. k-1`` name the classes of ``class_names``; rows of every matrix are map classes, columns
reference classes. :func:`write_report` turns either estimate into the Markdown / CSV / PNG report.
"""

from __future__ import annotations

import math
import os
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from lulc.io import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Standard normal quantile of the 95 % intervals (Olofsson et al. 2014, eq. 12).
Z95 = 1.96


@dataclass(frozen=True)
class AccuracyEstimates:
    """Estimated accuracy and class areas with standard errors; arrays are per class in ``class_names`` order.

    ``error_matrix[i, j]``: estimated proportion of the mapped region of map class ``i`` and reference class
    ``j``. ``mapped_proportion``: the map's class proportions (exact from the map where known, otherwise the
    sample estimate). ``area_proportion``: the estimated proportion of each reference class, the basis of the
    error-adjusted areas. ``sample_counts[i, j]``: sample units of map class ``i`` and reference class ``j``.
    """

    class_names: tuple[str, ...]
    estimator: str
    sample_counts: np.ndarray
    error_matrix: np.ndarray
    mapped_proportion: np.ndarray
    overall: float
    overall_se: float
    users: np.ndarray
    users_se: np.ndarray
    producers: np.ndarray
    producers_se: np.ndarray
    area_proportion: np.ndarray
    area_proportion_se: np.ndarray
    total_area: float
    area_unit: str

    @property
    def mapped_area(self) -> np.ndarray:
        """Mapped area per class, in ``area_unit``."""
        return self.total_area * self.mapped_proportion

    @property
    def area(self) -> np.ndarray:
        """Error-adjusted (estimated) area per reference class, in ``area_unit`` (eq. 11)."""
        return self.total_area * self.area_proportion

    @property
    def area_se(self) -> np.ndarray:
        """Standard error of :attr:`area`."""
        return self.total_area * self.area_proportion_se

    def class_table(self, z: float = Z95) -> pd.DataFrame:
        """One row per class: sample units, mapped area, user's / producer's accuracy and error-adjusted area,
        each with its standard error and the half-width of its ``z`` interval (95 % by default)."""
        unit = self.area_unit
        return pd.DataFrame(
            {
                "class": list(self.class_names),
                "sample_units": self.sample_counts.sum(axis=1).astype(np.int64),
                "mapped_proportion": self.mapped_proportion,
                f"mapped_area_{unit}": self.mapped_area,
                "users_accuracy": self.users,
                "users_accuracy_se": self.users_se,
                "users_accuracy_ci95": z * self.users_se,
                "producers_accuracy": self.producers,
                "producers_accuracy_se": self.producers_se,
                "producers_accuracy_ci95": z * self.producers_se,
                "area_proportion": self.area_proportion,
                "area_proportion_se": self.area_proportion_se,
                f"area_{unit}": self.area,
                f"area_se_{unit}": self.area_se,
                f"area_ci95_{unit}": z * self.area_se,
                f"area_low_{unit}": self.area - z * self.area_se,
                f"area_high_{unit}": self.area + z * self.area_se,
            }
        )

    def error_matrix_table(self) -> pd.DataFrame:
        """The error matrix in area proportions with its margins (rows map, columns reference)."""
        names = list(self.class_names)
        table = pd.DataFrame(self.error_matrix, index=names, columns=names)
        table["total"] = table.sum(axis=1)
        table.loc["total"] = table.sum(axis=0)
        table.index.name = "map \\ reference"
        return table


def sample_size(users_accuracy: Sequence[float], weights: Sequence[float], target_se: float) -> int:
    """Sample size for stratified random sampling that reaches ``target_se`` for overall accuracy (Olofsson et
    al. 2014, eq. 13): ``n = (sum_h W_h S_h / S(O))^2`` with ``S_h = sqrt(U_h (1 - U_h))``, rounded up.

    ``users_accuracy``: the expected user's accuracy of each stratum; ``weights``: the mapped proportions
    ``W_h`` (normalised to sum 1, so mapped pixel counts work as well).
    """
    u = np.asarray(users_accuracy, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if u.ndim != 1 or u.shape != w.shape or u.size == 0:
        raise ValueError("users_accuracy and weights must be non-empty sequences of the same length")
    if np.any((u < 0) | (u > 1)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("user's accuracies must lie in [0, 1] and weights be non-negative with a positive sum")
    if not target_se > 0:
        raise ValueError(f"target_se must be positive, got {target_se}")
    n = (np.sum(w / w.sum() * np.sqrt(u * (1 - u))) / target_se) ** 2
    return math.ceil(float(n) - 1e-9)


def allocate(
    total: int,
    mapped_pixels: Sequence[int],
    minimum: int | None = None,
    per_class: Sequence[int] | None = None,
) -> np.ndarray:
    """Sample units per stratum: fixed counts, or a minimum for rare strata with the rest proportional to area.

    * ``per_class`` given: returned as is (``total`` and ``minimum`` are not used) after checks: one
      non-negative integer per stratum, at most the stratum's mapped pixels.
    * Otherwise (``minimum`` None means 0): strata with 0 mapped pixels get 0. Starting with no stratum
      fixed, repeat: ``rest = total - sum over fixed strata of min(minimum, N_h)``; every other stratum's share
      is ``rest N_h / sum of their N_h``; strata whose share is below ``minimum`` become fixed; until no share
      is below ``minimum``. Fixed strata get ``min(minimum, N_h)`` (a stratum smaller than the minimum is
      sampled completely); the others get their share rounded by largest remainder: the integer parts, then
      one more unit to each of the largest fractional parts (ties to the lower stratum index) until the sum is
      ``total``. The shares are computed exactly in integers. ``ValueError`` where ``total`` exceeds the mapped
      pixels or cannot be met (the minima alone exceed it, or every stratum is fixed and smaller).
    """
    sizes = np.asarray(mapped_pixels)
    if sizes.ndim != 1 or sizes.size == 0 or not np.issubdtype(sizes.dtype, np.integer) or np.any(sizes < 0):
        raise ValueError("mapped_pixels must be a non-empty sequence of non-negative integers")
    sizes = sizes.astype(np.int64)
    if per_class is not None:
        counts = np.asarray(per_class)
        if counts.shape != sizes.shape or not np.issubdtype(counts.dtype, np.integer):
            raise ValueError(f"per_class must hold one integer per stratum ({sizes.size}), got {list(per_class)}")
        bad = np.flatnonzero((counts < 0) | (counts > sizes))
        if bad.size:
            raise ValueError(f"per_class count of stratum {int(bad[0])} ({int(counts[bad[0]])}) is negative or "
                             f"exceeds its {int(sizes[bad[0]])} mapped pixels")
        return counts.astype(np.int64)
    floor = 0 if minimum is None else int(minimum)
    if total < 0 or floor < 0:
        raise ValueError(f"total and minimum must be non-negative, got {total} and {minimum}")
    if total > sizes.sum():
        raise ValueError(f"total {total} exceeds the {int(sizes.sum())} mapped pixels")
    size_list = [int(s) for s in sizes]
    fixed = [False] * len(size_list)
    while True:
        rest = int(total) - sum(min(floor, s) for s, f in zip(size_list, fixed, strict=True) if f)
        free = [h for h, s in enumerate(size_list) if s > 0 and not fixed[h]]
        area = sum(size_list[h] for h in free)
        below = [h for h in free if rest * size_list[h] < floor * area]
        if not below:
            break
        for h in below:
            fixed[h] = True
    counts = np.array([min(floor, s) if f else 0 for s, f in zip(size_list, fixed, strict=True)], dtype=np.int64)
    if free and rest >= 0:
        quotients = [divmod(rest * size_list[h], area) for h in free]
        extra = rest - sum(q for q, _ in quotients)
        order = sorted(range(len(free)), key=lambda i: (-quotients[i][1], free[i]))
        for i, h in enumerate(free):
            counts[h] = quotients[i][0]
        for i in order[:extra]:
            counts[free[i]] += 1
    if counts.sum() != total:
        raise ValueError(f"cannot allocate {total} units with a minimum of {floor} per stratum over mapped "
                         f"pixels {size_list}: the rule gives {counts.tolist()}")
    return counts


def _class_names(class_names: Sequence[str], k: int) -> tuple[str, ...]:
    names = tuple(str(n) for n in class_names)
    if len(names) != k or len(set(names)) != k:
        raise ValueError(f"class_names must be {k} distinct names, got {list(class_names)}")
    return names


def stratified_estimates(
    counts: np.ndarray | Sequence[Sequence[int]],
    mapped_pixels: Sequence[int],
    class_names: Sequence[str],
    *,
    pixel_area: float = 1.0,
    area_unit: str = "px",
) -> AccuracyEstimates:
    """Olofsson et al. (2014) stratified estimators, strata = map classes (module docstring: eq. 1-12).

    ``counts[h, j]``: sample units of map class ``h`` and reference class ``j``; ``mapped_pixels[h]``: the map's
    pixels of class ``h`` (``N_h``); areas are ``pixel_area`` per pixel, in ``area_unit`` (e.g. 0.09 ha for 30 m
    pixels). A stratum with mapped pixels and no sample units is an error; a statistic that is undefined is
    NaN: the accuracies of a class without units, and every standard error that a stratum of a single unit
    enters (it has no variance estimate).
    """
    n = np.asarray(counts, dtype=np.float64)
    sizes = np.asarray(mapped_pixels, dtype=np.float64)
    k = sizes.size
    if n.shape != (k, k) or np.any(n < 0) or np.any(sizes < 0) or sizes.sum() <= 0:
        raise ValueError(f"counts must be a non-negative {k} x {k} matrix and mapped_pixels non-negative")
    names = _class_names(class_names, k)
    n_h = n.sum(axis=1)
    unsampled = np.flatnonzero((sizes > 0) & (n_h == 0))
    if unsampled.size:
        raise ValueError(f"map class {names[unsampled[0]]!r} has mapped pixels but no sample units")
    empty = np.flatnonzero((sizes == 0) & (n_h > 0))
    if empty.size:
        raise ValueError(f"map class {names[empty[0]]!r} has sample units but no mapped pixels")
    w = sizes / sizes.sum()
    sampled = n_h > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(sampled[:, None], n / n_h[:, None], 0.0)  # n_hj / n_h.
        # q (1 - q) / (n_h. - 1): the variance term shared by eq. 5, 6, 7 and 10; 0 for unmapped strata.
        var_q = np.where(sampled[:, None], q * (1 - q) / (n_h[:, None] - 1), 0.0)
        p = w[:, None] * q
        diag = np.diag(p)
        area_prop = p.sum(axis=0)
        users = np.where(sampled, np.diag(q), np.nan)
        producers = np.where(area_prop > 0, diag / area_prop, np.nan)
        overall_var = float(np.sum(w**2 * np.diag(var_q)))
        users_var = np.where(sampled, np.diag(var_q), np.nan)
        area_var = np.sum(w[:, None] ** 2 * var_q, axis=0)
        # eq. 7: N_.j (estimated pixels of reference class j), N_j. (mapped pixels of class j)
        ref_pixels = (sizes[:, None] * q).sum(axis=0)
        off_diagonal = (sizes[:, None] ** 2 * var_q).sum(axis=0) - sizes**2 * np.diag(var_q)
        producers_var = (sizes**2 * (1 - producers) ** 2 * np.diag(var_q) + producers**2 * off_diagonal) / ref_pixels**2
    return AccuracyEstimates(
        class_names=names,
        estimator="Olofsson et al. (2014) stratified estimator (strata = map classes)",
        sample_counts=n.astype(np.int64),
        error_matrix=p,
        mapped_proportion=w,
        overall=float(diag.sum()),
        overall_se=math.sqrt(overall_var) if overall_var >= 0 else math.nan,
        users=users,
        users_se=np.sqrt(users_var),
        producers=producers,
        producers_se=np.sqrt(producers_var),
        area_proportion=area_prop,
        area_proportion_se=np.sqrt(area_var),
        total_area=float(sizes.sum() * pixel_area),
        area_unit=area_unit,
    )


def _stratified_mean(
    values: np.ndarray, stratum: np.ndarray, sizes: np.ndarray, fpc: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Stehman (2014) eq. 2-4 and 25 for every column of ``values`` (units x variables): the stratified mean
    ``sum_h N_h ybar_h / N`` and its variance ``sum_h N_h^2 (1 - f_h) s_yh^2 / n_h / N^2`` (``f_h = n_h / N_h``
    with ``fpc``, else 0). ``stratum``: each unit's stratum index into ``sizes``; unsampled strata have N_h 0."""
    total = sizes.sum()
    mean = np.zeros(values.shape[1])
    var = np.zeros(values.shape[1])
    for h, size in enumerate(sizes):
        if size == 0:
            continue
        rows = values[stratum == h]
        n_h = rows.shape[0]
        mean += size * rows.mean(axis=0) / total
        s2 = rows.var(axis=0, ddof=1) if n_h > 1 else np.full(values.shape[1], np.nan)
        var += size**2 * (1 - (n_h / size if fpc else 0.0)) * s2 / n_h / total**2
    return mean, var


def _stratified_ratio(
    y: np.ndarray, x: np.ndarray, stratum: np.ndarray, sizes: np.ndarray, fpc: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Stehman (2014) eq. 27 and 28 for every column: ``R = Y / X`` of stratified totals, and its variance
    ``sum_h N_h^2 (1 - f_h) (s_yh^2 + R^2 s_xh^2 - 2 R s_xyh) / n_h / X^2``, computed as the stratified variance
    of the residual ``d_u = y_u - R x_u`` (whose sample variance is exactly that combination) over ``(X / N)^2``."""
    y_mean, _ = _stratified_mean(y, stratum, sizes, fpc)
    x_mean, _ = _stratified_mean(x, stratum, sizes, fpc)
    defined = x_mean > 0
    ratio = np.where(defined, y_mean / np.where(defined, x_mean, 1.0), np.nan)
    _, d_var = _stratified_mean(y - np.where(defined, ratio, 0.0) * x, stratum, sizes, fpc)
    var = np.where(defined, d_var / np.where(defined, x_mean, 1.0) ** 2, np.nan)
    return ratio, var


def stehman_estimates(
    strata: Sequence[Hashable] | np.ndarray,
    map_class: Sequence[int] | np.ndarray,
    reference_class: Sequence[int] | np.ndarray,
    stratum_sizes: Mapping[Hashable, int],
    class_names: Sequence[str],
    *,
    pixel_area: float = 1.0,
    area_unit: str = "px",
    mapped_pixels: Sequence[int] | None = None,
    finite_population_correction: bool = False,
) -> AccuracyEstimates:
    """Stehman (2014) estimators for stratified random sampling whose strata differ from the map classes.

    One entry per sample unit in ``strata`` (its stratum label), ``map_class`` and ``reference_class`` (class
    indices into ``class_names``); ``stratum_sizes``: pixels ``N_h`` of every stratum (all of the region, also
    the strata without units when ``N_h`` is 0). Units without a reference must be dropped by the caller (they
    are then taken as missing at random within their stratum). ``mapped_pixels``: the map's pixels per class,
    for the mapped-area column only (the sample estimate otherwise). Same point estimates as
    :func:`stratified_estimates` when the strata are the map classes, and the same standard errors unless
    ``finite_population_correction`` (eq. 25's ``1 - n_h / N_h``) is asked for. A stratum of a single unit has
    no variance estimate: every standard error is then NaN.
    """
    labels = list(stratum_sizes)
    sizes = np.array([stratum_sizes[s] for s in labels], dtype=np.float64)
    index = {label: h for h, label in enumerate(labels)}
    unit_strata = list(strata)
    unknown = [s for s in unit_strata if s not in index]
    if unknown:
        raise ValueError(f"sample units in stratum {unknown[0]!r}, which stratum_sizes does not list")
    stratum = np.array([index[s] for s in unit_strata], dtype=np.int64)
    m = np.asarray(map_class, dtype=np.int64)
    r = np.asarray(reference_class, dtype=np.int64)
    k = len(class_names)
    names = _class_names(class_names, k)
    if m.shape != stratum.shape or r.shape != stratum.shape:
        raise ValueError("strata, map_class and reference_class must have one entry per sample unit")
    if np.any((m < 0) | (m >= k) | (r < 0) | (r >= k)):
        raise ValueError(f"map and reference classes must be class indices 0..{k - 1}")
    n_h = np.bincount(stratum, minlength=len(labels))
    bad = [labels[h] for h in range(len(labels)) if (sizes[h] > 0) != (n_h[h] > 0) or n_h[h] > sizes[h]]
    if bad or np.any(sizes < 0) or sizes.sum() <= 0:
        raise ValueError(f"stratum {bad[0] if bad else ''!r}: every stratum with pixels needs sample units, "
                         "none beyond its pixels, and no units in an empty stratum")
    on_map = np.eye(k)[m]
    on_ref = np.eye(k)[r]
    correct = on_map * on_ref
    cells = (on_map[:, :, None] * on_ref[:, None, :]).reshape(len(m), k * k)
    fpc = finite_population_correction
    area_prop, area_var = _stratified_mean(on_ref, stratum, sizes, fpc)
    overall, overall_var = _stratified_mean(correct.sum(axis=1, keepdims=True), stratum, sizes, fpc)
    matrix, _ = _stratified_mean(cells, stratum, sizes, fpc)
    users, users_var = _stratified_ratio(correct, on_map, stratum, sizes, fpc)
    producers, producers_var = _stratified_ratio(correct, on_ref, stratum, sizes, fpc)
    error_matrix = matrix.reshape(k, k)
    if mapped_pixels is None:
        mapped = error_matrix.sum(axis=1)
    else:
        known = np.asarray(mapped_pixels, dtype=np.float64)
        if known.shape != (k,) or not math.isclose(known.sum(), sizes.sum(), rel_tol=1e-9):
            raise ValueError("mapped_pixels must hold one count per class and sum to the strata's pixels")
        mapped = known / known.sum()
    return AccuracyEstimates(
        class_names=names,
        estimator="Stehman (2014) stratified estimator (strata may differ from the map classes)",
        sample_counts=(on_map.T @ on_ref).astype(np.int64),
        error_matrix=error_matrix,
        mapped_proportion=mapped,
        overall=float(overall[0]),
        overall_se=float(np.sqrt(overall_var[0])),
        users=users,
        users_se=np.sqrt(users_var),
        producers=producers,
        producers_se=np.sqrt(producers_var),
        area_proportion=area_prop,
        area_proportion_se=np.sqrt(area_var),
        total_area=float(sizes.sum() * pixel_area),
        area_unit=area_unit,
    )


def _pm(value: float, half: float, digits: int) -> str:
    """``value ± half`` (``n/a`` where undefined)."""
    if not np.isfinite(value):
        return "n/a"
    return f"{value:,.{digits}f} ± {half:,.{digits}f}" if np.isfinite(half) else f"{value:,.{digits}f} ± n/a"


def _markdown_table(table: pd.DataFrame) -> str:
    """A pipe table of ``table`` (index as first column) without the optional ``tabulate`` dependency."""
    header = [str(table.index.name or ""), *map(str, table.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * table.shape[1]) + "|"]
    for label, row in table.iterrows():
        lines.append("| " + " | ".join([str(label), *map(str, row.tolist())]) + " |")
    return "\n".join(lines)


def report_markdown(estimates: AccuracyEstimates, title: str) -> str:
    """The Markdown report of :func:`write_report`."""
    e = estimates
    unit = e.area_unit
    matrix = e.error_matrix_table().map(lambda v: f"{v:.4f}")
    rows = []
    for i, name in enumerate(e.class_names):
        rows.append({
            "class": name,
            "sample units": int(e.sample_counts[i].sum()),
            f"mapped area ({unit})": f"{e.mapped_area[i]:,.0f}",
            "user's accuracy": _pm(e.users[i], Z95 * e.users_se[i], 3),
            "producer's accuracy": _pm(e.producers[i], Z95 * e.producers_se[i], 3),
            f"error-adjusted area ({unit})": _pm(e.area[i], Z95 * e.area_se[i], 0),
        })
    per_class = pd.DataFrame(rows).set_index("class")
    return "\n".join([
        f"# {title}",
        "",
        f"{e.estimator}; {int(e.sample_counts.sum())} sample units; mapped region {e.total_area:,.0f} {unit}. "
        "Intervals are 95 % confidence intervals (± 1.96 standard errors).",
        "",
        "## Error matrix in estimated area proportions",
        "",
        "Rows: map class; columns: reference class.",
        "",
        _markdown_table(matrix),
        "",
        "## Overall accuracy",
        "",
        f"{_pm(e.overall, Z95 * e.overall_se, 3)}",
        "",
        "## Per class",
        "",
        _markdown_table(per_class),
        "",
    ])


def area_figure(estimates: AccuracyEstimates, title: str) -> Figure:
    """Mapped vs error-adjusted area per class, the latter with its 95 % interval as error bars."""
    from matplotlib.figure import Figure  # the object API: no pyplot state, no backend to choose

    e = estimates
    x = np.arange(len(e.class_names))
    fig = Figure(figsize=(max(5.0, 1.1 * len(x) + 2), 4.0))
    ax = fig.add_subplot()
    ax.bar(x - 0.2, e.mapped_area, width=0.4, label="mapped", color="#9e9e9e")
    ax.bar(x + 0.2, e.area, width=0.4, yerr=Z95 * e.area_se, capsize=4, label="error-adjusted (95 % CI)",
           color="#3b7dd8")
    ax.set_xticks(x, list(e.class_names), rotation=30, ha="right")
    ax.set_ylabel(f"area ({e.area_unit})")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def write_report(
    estimates: AccuracyEstimates,
    out_md: str | os.PathLike[str],
    out_csv: str | os.PathLike[str],
    out_png: str | os.PathLike[str],
    title: str,
    note: str = "",
) -> None:
    """Write the accuracy report: Markdown (error matrix in area proportions, overall accuracy, per-class
    table, then ``note``), a CSV of :meth:`AccuracyEstimates.class_table` and a PNG of :func:`area_figure`, each
    atomically."""
    from lulc.figures import save_png

    with atomic_path(out_md) as tmp:
        tmp.write_text(report_markdown(estimates, title) + note)
    with atomic_path(out_csv) as tmp:
        estimates.class_table().to_csv(tmp, index=False, float_format="%.10g")
    save_png(area_figure(estimates, title), out_png, dpi=110)


__all__ = [
    "Z95",
    "AccuracyEstimates",
    "allocate",
    "area_figure",
    "report_markdown",
    "sample_size",
    "stehman_estimates",
    "stratified_estimates",
    "write_report",
]
