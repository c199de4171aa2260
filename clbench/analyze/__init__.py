"""Feature-level forgetting with crosscoders (Masip et al. 2026, "Putting a Face to Forgetting").

    $ clbench run --stream split-digits --strategy naive --seeds 0 --keep-checkpoints
    $ clbench analyze results/split-digits/mlp/naive/seed0.json
    $ clbench analyze results/split-digits/mlp/naive/seed0.json --null   # checkpoint 0 repeated
    >>> from clbench.analyze import AnalyzeSettings, analyze
    >>> analyze("results/split-digits/mlp/naive/seed0.json", AnalyzeSettings(probe_size=1000))

One module per stage: ``loading`` -> ``probe`` -> ``sources`` -> ``fit`` -> ``measures`` ->
``report``, run in order by ``pipeline``. See each module for its definitions; ``text`` maps a
text run (a language model's trained part on ``text-v1``, checkpoints of that part only) onto
the same stages.
"""
from __future__ import annotations

from clbench.analyze.fit import CrosscoderSettings
from clbench.analyze.measures import FEATURE_FORGETTING_METRICS, FeatureMeasures
from clbench.analyze.pipeline import AnalyzeSettings, analyze

__all__ = ["FEATURE_FORGETTING_METRICS", "AnalyzeSettings", "CrosscoderSettings",
           "FeatureMeasures", "analyze"]
