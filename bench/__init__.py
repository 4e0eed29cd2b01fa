"""Benchmarks: cost, speed and scale of every operation, measured side by side.

`python -m bench` (`make bench`) starts DynamoDB Local itself and writes
`bench/results/latest.{json,md}` and `latency_vs_concurrency.png`; `--quick` runs small sizes
(CI). See bench/README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LAYER_PATH = PROJECT_ROOT / "layers" / "shared"

# The functions import the layer's library as Lambda does (/opt/python on the path). pytest
# gets this from `pythonpath` in pyproject.toml; `python -m bench` runs outside pytest.
for _path in (str(LAYER_PATH), str(PROJECT_ROOT)):
    if _path not in sys.path:
        sys.path.insert(0, _path)
