"""The generation job: a stand-in for a language model that answers word by word.

A generator listener: each `yield` is one chunk, appended to the job's stream at
once, so readers see it while the job still runs. A worker runs it:

    python -m controller consumer --import examples.fastapi.listeners:generate
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

ANSWER = ("Queues let a web app answer at once while a worker does the slow part; "
          "streaming lets the user watch that slow part arrive word by word.")


def generate(msg: dict[str, Any], context: dict[str, Any]) -> Iterator[str]:
    """Yield the answer to `msg["prompt"]` one word at a time, `msg["pause"]`
    seconds apart (default 0.05), as a model emits tokens."""
    pause = float(msg.get("pause", 0.05))
    words = f"You asked: {msg.get('prompt', '')}. {ANSWER}".split()
    for word in words[:int(msg.get("max_words", len(words)))]:
        time.sleep(pause)  # the model's time per token
        yield word + " "
