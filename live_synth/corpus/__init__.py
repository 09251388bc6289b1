"""Rendering whole MIDI corpora on Ray (`live-synth render-corpus`, tools/make_dataset.py --ray).

Above `synth.py` in the import order, like the CLI's commands: nothing below imports it. Ray is the optional
`cluster` extra and is imported only when a run starts.

- `sources.py`: which files a folder, list file or glob names, and the names of their outputs;
- `runner.py`: the actor pool (one loaded job per worker, retries after a worker's death, clean stop);
- `job.py`: the synth job a worker holds (MIDI bytes -> encoded audio, mel);
- `render.py`: the driver (atomic outputs, sidecars, resume, manifest and failures tables, progress).
"""

from live_synth.corpus.job import RenderSettings, SynthJob
from live_synth.corpus.render import CorpusRun, render_corpus
from live_synth.corpus.runner import INSTALL_HINT, Outcome, Pool, PoolOptions, import_ray
from live_synth.corpus.sources import Source, find_sources

__all__ = ["INSTALL_HINT", "CorpusRun", "Outcome", "Pool", "PoolOptions", "RenderSettings", "Source", "SynthJob",
           "find_sources", "import_ray", "render_corpus"]
