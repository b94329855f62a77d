"""Animations of optimizer paths that play inside the built book, offline and reproducibly.

:func:`animate_paths` draws the contours of a 2-D function once and moves
every optimizer along its path, frame by frame, drawing only what moves over a
background rendered once, into matplotlib's ``HTMLWriter``. The result is matplotlib's JavaScript
player (the HTML of ``Animation.to_jshtml``) with every frame embedded as a
PNG, so the HTML page needs no extra files. :func:`offline_jshtml` makes that player fit
the book:

* matplotlib's player loads the Font Awesome stylesheet from a CDN for its
  button icons; the book must read offline, so the link is removed and the
  icons are replaced by plain Unicode symbols;
* the player's element ids carry a random ``uuid4``; they are replaced by an
  id the caller chooses, so that re-executing a chapter stores byte-identical
  HTML (the frames themselves are deterministic PNGs from the Agg renderer).

To keep a notebook small, :func:`animate_paths` stores each frame as a
palette PNG of at most 64 colours (median-cut quantisation without
dithering, which is deterministic): contour lines and a few coloured paths
need no more, and a frame shrinks several-fold.
"""

from __future__ import annotations

import base64
import re
import tempfile
from collections.abc import Mapping
from io import BytesIO
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.animation import HTMLWriter
from PIL import Image

__all__ = ["offline_jshtml", "draw_contours", "draw_paths", "animate_paths"]

_FONT_AWESOME = re.compile(r'<link rel="stylesheet"\s*href="https://[^"]*font-awesome[^"]*">\s*')
_ICONS = {
    "fa fa-minus": "&#8722;",  # minus sign: slower
    "fa fa-fast-backward": "&#8676;",  # leftwards arrow to bar: first frame
    "fa fa-step-backward": "&#8249;",  # single left angle quotation mark: previous frame
    "fa fa-play fa-flip-horizontal": "&#9664;",  # left-pointing triangle: play backwards
    "fa fa-pause": "&#10074;&#10074;",  # two heavy vertical bars: pause
    "fa fa-play": "&#9654;",  # right-pointing triangle: play
    "fa fa-step-forward": "&#8250;",  # single right angle quotation mark: next frame
    "fa fa-fast-forward": "&#8677;",  # rightwards arrow to bar: last frame
    "fa fa-plus": "+",  # faster
}
_ICON = re.compile(r'<i class="(fa [^"]*)"></i>')
_UUID_IN_IMG = re.compile(r'id="_anim_img([0-9a-f]{32})"')


def offline_jshtml(html: str, anim_id: str) -> str:
    """Make matplotlib's ``to_jshtml`` output self-contained and reproducible.

    Removes the remote Font Awesome stylesheet, replaces its icons by Unicode
    symbols, and replaces the random element id by ``anim_id`` (letters, digits
    and underscores; it must be unique within a page).
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", anim_id):
        raise ValueError(f"anim_id must be letters, digits and underscores (a JavaScript name), got {anim_id!r}.")
    match = _UUID_IN_IMG.search(html)
    if match is None:
        raise ValueError("this does not look like the output of matplotlib's Animation.to_jshtml().")
    html = html.replace(match.group(1), anim_id)
    html = _FONT_AWESOME.sub("", html)

    def icon(m: re.Match) -> str:
        return f'<span aria-hidden="true">{_ICONS.get(m.group(1), "&#8226;")}</span>'

    html = _ICON.sub(icon, html)
    if "https://" in html or "http://" in html:
        raise ValueError("the animation HTML still refers to a remote resource.")
    return html


class _PaletteHTMLWriter(HTMLWriter):
    """matplotlib's HTML writer, storing every frame as a palette PNG of at most ``colors`` colours."""

    def __init__(self, *args, colors: int = 64, **kwargs):
        super().__init__(*args, **kwargs)
        self._colors = colors

    def grab_frame(self, **savefig_kwargs):
        raw = BytesIO()
        self.fig.savefig(raw, format="png", dpi=self.dpi, **savefig_kwargs)
        self._store(Image.open(raw).convert("RGB"))

    def grab_drawn_frame(self):
        """Store the frame the figure's Agg canvas has just drawn, without drawing it a second time.

        ``savefig`` would render the figure again; the canvas's buffer already holds the
        same pixels when the figure's dpi is the writer's.
        """
        if self.fig.dpi != self.dpi:
            return self.grab_frame()
        self._store(Image.frombuffer("RGBA", self.fig.canvas.get_width_height(physical=True),
                                     self.fig.canvas.buffer_rgba(), "raw", "RGBA", 0, 1).convert("RGB"))

    def _store(self, image):
        palette = image.quantize(colors=self._colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        out = BytesIO()
        palette.save(out, format="png", optimize=True)
        self._saved_frames.append(base64.encodebytes(out.getvalue()).decode("ascii"))


def draw_contours(ax, f, *, xlim, ylim, levels=25, log_levels: bool = True, grid: int = 200):
    """Draw the contour lines of ``f`` (which accepts shape ``(..., 2)``) in one mid grey, on ``ax``.

    With ``log_levels`` and an integer ``levels``, the levels are spaced
    logarithmically between the smallest and largest value on the grid (which
    must then be positive); otherwise ``levels`` is passed to ``ax.contour``.
    One colour for every line keeps the low levels, near the minimum, as visible
    as the high ones.
    """
    xs, ys = np.linspace(*xlim, grid), np.linspace(*ylim, grid)
    xx, yy = np.meshgrid(xs, ys)
    zz = f(np.stack([xx, yy], axis=-1))
    if log_levels and isinstance(levels, int) and np.all(zz > 0):
        lv = np.geomspace(max(zz.min(), 1e-6), zz.max(), levels)
    else:
        lv = levels
    return ax.contour(xx, yy, zz, levels=lv, colors="0.7", linewidths=0.6)


def draw_paths(ax, f, paths: Mapping[str, np.ndarray], *, xlim, ylim, minimizer=None, levels=25,
               log_levels: bool = True, grid: int = 200, markersize: float = 2.0):
    """A static figure: the contours of ``f`` with each path of ``paths`` (shape ``(steps + 1, 2)``) on top.

    Axis labels are left to the caller, who knows the units.
    """
    draw_contours(ax, f, xlim=xlim, ylim=ylim, levels=levels, log_levels=log_levels, grid=grid)
    for name, p in paths.items():
        p = np.asarray(p, dtype=float)
        ax.plot(p[:, 0], p[:, 1], ".-", ms=markersize, lw=1, label=name)
    if minimizer is not None:
        ax.plot(*minimizer, "k*", ms=10, label="minimum")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.legend(fontsize=7)
    return ax


def animate_paths(
    f,
    paths: Mapping[str, np.ndarray],
    *,
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    anim_id: str,
    frames: int = 30,
    dpi: int = 60,
    figsize: tuple[float, float] = (6.0, 4.2),
    levels=25,
    log_levels: bool = True,
    minimizer: np.ndarray | None = None,
    title: str = "",
    interval_ms: int = 150,
    tail: int | None = None,
    grid: int = 120,
    colors: int = 64,
    xlabel: str = "$x$ (dimensionless)",
    ylabel: str = "$y$ (dimensionless)",
):
    """Animate optimizer paths over the contours of ``f``; returns an ``IPython.display.HTML`` object.

    ``paths[name]`` has shape ``(steps + 1, 2)``; all paths are shown at the same
    iteration in each frame, with ``frames`` frames spread evenly (in iterations)
    from the start to the end of the longest path. Each path is drawn up to the
    current iteration (only its last ``tail`` iterations if ``tail`` is given),
    with a dot at its current point. The figure is closed, so no static copy is
    drawn under the player. Keep ``frames`` and ``dpi`` small: every frame is an
    embedded palette PNG of at most ``colors`` colours (roughly 10 to 20 kB each at the defaults).
    """
    from IPython.display import HTML

    if frames < 2:
        raise ValueError(f"frames must be >= 2, got {frames}.")
    paths = {name: np.asarray(p, dtype=float) for name, p in paths.items()}
    for name, p in paths.items():
        if p.ndim != 2 or p.shape[1] != 2:
            raise ValueError(f"path {name!r} must have shape (steps + 1, 2), got {p.shape}.")
    n_iter = max(len(p) for p in paths.values()) - 1
    iterations = np.unique(np.linspace(0, n_iter, frames).round().astype(int))

    fig, ax = plt.subplots(figsize=figsize, dpi=dpi)
    draw_contours(ax, f, xlim=xlim, ylim=ylim, levels=levels, log_levels=log_levels, grid=grid)
    if minimizer is not None:
        ax.plot(*minimizer, "k*", ms=10, label="minimum")
    lines, dots = {}, {}
    for i, name in enumerate(paths):
        color = f"C{i % 10}"
        (lines[name],) = ax.plot([], [], "-", lw=1.3, color=color, label=name)
        (dots[name],) = ax.plot([], [], "o", ms=5, color=color)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, loc="upper right")
    stamp = ax.set_title("")
    # The paths, their dots and the title change from frame to frame; the spines and the legend lie above
    # them. These are drawn on every frame, over a background (contours, axes, labels) rendered only once.
    for artist in (*lines.values(), *dots.values(), stamp, ax.legend_, *ax.spines.values()):
        artist.set_animated(True)

    def draw(frame: int):
        it = int(iterations[frame])
        for name, p in paths.items():
            k = min(it, len(p) - 1)
            lo = 0 if tail is None else max(0, k - tail)
            lines[name].set_data(p[lo : k + 1, 0], p[lo : k + 1, 1])
            dots[name].set_data(p[k : k + 1, 0], p[k : k + 1, 1])
        stamp.set_text(f"{title}  iteration {it}".strip())
        return [*lines.values(), *dots.values(), stamp]

    try:
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp, "animation.html")
            writer = _PaletteHTMLWriter(fps=1000 / interval_ms, embed_frames=True, default_mode="once", colors=colors)
            with writer.saving(fig, str(target), dpi):
                fig.canvas.draw()  # the background: every artist that is not animated
                background = fig.canvas.copy_from_bbox(fig.bbox)
                # in the order a full draw would use: by zorder, ties in the order the artists were added
                animated = sorted((a for a in ax.get_children() if a.get_animated()), key=lambda a: a.get_zorder())
                for frame in range(len(iterations)):
                    draw(frame)
                    fig.canvas.restore_region(background)
                    for artist in animated:
                        ax.draw_artist(artist)
                    writer.grab_drawn_frame()
            html = target.read_text()
    finally:
        plt.close(fig)
    return HTML(offline_jshtml(html, anim_id))
