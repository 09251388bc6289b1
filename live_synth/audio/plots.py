"""Spectrogram pictures for inspecting renders (main or worker thread; never the audio callback)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from live_synth.files import atomic_output
from live_synth.constants import HOP, LOG_MEL_MAX, LOG_MEL_MIN, N_MELS, SAMPLE_RATE, SEGMENT_FRAMES


def save_spectrogram_png(
    path: str | Path, log_mel: np.ndarray, title: str | None = None, segment_frames: int = SEGMENT_FRAMES
) -> None:
    """Save natural-log mel [T, 128] as a PNG: time in seconds on x, mel bin on y, dotted lines between segments.

    Colours span the model's feature range [ln 1e-5, 4]. Written atomically (`live_synth.files`).
    """
    features = np.asarray(log_mel, dtype=np.float32)
    if features.ndim != 2 or features.shape[1] != N_MELS or features.shape[0] == 0:
        raise ValueError(f"log-mel must have shape [frames > 0, {N_MELS}], got {list(features.shape)}")
    png = _render_png(features, title, segment_frames)
    with atomic_output(path) as handle:
        handle.write(png)


def _render_png(features: np.ndarray, title: str | None, segment_frames: int) -> bytes:
    # Figure + Agg canvas instead of pyplot: no global figure registry, no GUI backend, safe off the main thread.
    # Imported here so that importing live_synth.audio does not pay for matplotlib.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    frame_seconds = HOP / SAMPLE_RATE
    duration = features.shape[0] * frame_seconds
    figure = Figure(figsize=(min(4.0 + duration * 1.5, 30.0), 4.0), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(
        features.T,
        origin="lower",
        aspect="auto",
        interpolation="nearest",
        extent=(0.0, duration, -0.5, N_MELS - 0.5),
        vmin=LOG_MEL_MIN,
        vmax=LOG_MEL_MAX,
        cmap="magma",
    )
    if segment_frames > 0:
        for boundary in range(segment_frames, features.shape[0], segment_frames):
            axes.axvline(boundary * frame_seconds, color="white", linestyle=":", linewidth=1.0)
    axes.set_xlabel("time (s)")
    axes.set_ylabel("mel bin")
    if title:
        axes.set_title(title)
    figure.colorbar(image, ax=axes, label="ln mel")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def save_spectrogram_rows_png(
    path: str | Path, rows: list[tuple[str, np.ndarray]], value_range: tuple[float, float] = (LOG_MEL_MIN, LOG_MEL_MAX),
    title: str | None = None, dpi: int = 80,
) -> None:
    """Several spectrograms [T, 128] stacked on one time axis (seconds), one titled row each, one colour scale
    (`value_range`: natural-log mel by default; scaled features are (-1, 1)). For side-by-side comparisons in the
    tools (live vs offline, x̂0 probes). Written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    frame_seconds = HOP / SAMPLE_RATE
    width = max(len(features) for _, features in rows) * frame_seconds
    figure = Figure(figsize=(min(4.0 + width * 1.2, 30.0), 1.8 * len(rows) + (0.4 if title else 0.0)))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(rows), 1, squeeze=False)[:, 0]
    for ax, (label, features) in zip(axes, rows):
        ax.imshow(np.asarray(features).T, origin="lower", aspect="auto", interpolation="nearest", cmap="magma",
                  vmin=value_range[0], vmax=value_range[1],
                  extent=(0.0, len(features) * frame_seconds, -0.5, N_MELS - 0.5))
        ax.set_xlim(0.0, width)
        ax.set_title(label, fontsize=9, loc="left")
        ax.set_ylabel("mel bin")
    axes[-1].set_xlabel("time (s)")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    with atomic_output(path) as handle:
        handle.write(buffer.getvalue())
