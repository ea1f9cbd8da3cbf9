"""The retraining job: a scikit-learn classifier of handwritten digits.

A worker runs it:

    python -m controller consumer --import examples.retrain.listeners:retrain
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import mlq


def load_data() -> dict[str, Any]:
    """Runs once per worker process, before its first job: what every retrain reuses.

    Here the digits set (1,797 8x8 images, shipped inside scikit-learn, so
    nothing is downloaded); in a real app, a large data set or a base model.
    """
    features, labels = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=0.25, random_state=0, stratify=labels)
    scaler = StandardScaler().fit(x_train)
    return {"x_train": scaler.transform(x_train), "y_train": y_train,
            "x_test": scaler.transform(x_test), "y_test": y_test,
            "classes": np.unique(labels)}


@mlq.listener(setup=load_data)
def retrain(msg: dict[str, Any] | None, context: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Train a logistic-regression model epoch by epoch, reporting progress; return its accuracy.

    `msg` may set `epochs` (default 20), `seed` and `pause`: seconds to rest after
    each epoch, since an epoch of this small set takes milliseconds and the
    progress bar would otherwise have nothing to show.
    """
    options = msg or {}
    epochs = int(options.get("epochs", 20))
    pause = float(options.get("pause", 0.1))
    data = context["state"]  # load_data()'s result, made once per worker process
    rng = np.random.default_rng(int(options.get("seed", 0)))
    # log_loss: logistic regression, trained by SGD so that it can go one epoch at a time
    model = SGDClassifier(loss="log_loss", alpha=1e-4, random_state=0)
    for epoch in range(epochs):
        context["update_progress"](round(100 * epoch / epochs))  # 0..95; 100 is "completed"
        order = rng.permutation(len(data["y_train"]))
        model.partial_fit(data["x_train"][order], data["y_train"][order], classes=data["classes"])
        time.sleep(pause)
    accuracy = float(model.score(data["x_test"], data["y_test"]))
    # (short_result, result): the short text for listings, the dict for the app
    return f"accuracy {accuracy:.3f}", {"accuracy": accuracy, "epochs": epochs,
                                        "train_size": len(data["y_train"])}
