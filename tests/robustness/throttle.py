"""``Throttle``: a test-only callback that slows ``predict`` so a test can signal it mid-run."""

from __future__ import annotations

import time
from typing import Any

from lightning.pytorch import Callback


class Throttle(Callback):
    """Sleep ``seconds`` after every predict batch."""

    def __init__(self, seconds: float = 1.0) -> None:
        self.seconds = seconds

    def on_predict_batch_end(self, *args: Any, **kwargs: Any) -> None:
        time.sleep(self.seconds)
