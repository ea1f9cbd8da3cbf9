"""A notebook, as a script: run functions defined here on MLQ's workers.

Each `# %%` line starts a cell (VS Code and Jupytext open this file as a
notebook). The workers have none of this code: `q.submit` and `q.map` send each
function by value (cloudpickle), with the globals it uses, such as DATA below.

    python -m controller consumer --concurrency 2     # terminal 1: the workers
    python examples/notebook/notebook.py              # terminal 2: this "notebook"
"""

# %%
import os
import random
from typing import Any

from mlq import MLQ

# the same defaults and variables as `controller consumer`, so both find one Redis
q = MLQ(os.environ.get("MLQ_NAMESPACE", "mlq_default"),
        redis_url=os.environ.get("MLQ_REDIS_URL", "redis://127.0.0.1:6379/0"))

# %% A toy data set made here, in the notebook: y = 3x + 2, plus noise
random.seed(0)
DATA = [(x / 100, 3 * x / 100 + 2 + random.gauss(0, 0.1)) for x in range(100)]


def fit(learning_rate: float, epochs: int = 300) -> dict[str, Any]:
    """Fit y = a*x + b to DATA by gradient descent; the coefficients and the final loss."""
    if not learning_rate > 0:
        raise ValueError(f"the learning rate must be positive, not {learning_rate}")
    a = b = 0.0
    for _ in range(epochs):
        grad_a = sum((a * x + b - y) * x for x, y in DATA) * 2 / len(DATA)
        grad_b = sum(a * x + b - y for x, y in DATA) * 2 / len(DATA)
        a, b = a - learning_rate * grad_a, b - learning_rate * grad_b
    loss = sum((a * x + b - y) ** 2 for x, y in DATA) / len(DATA)
    return {"learning_rate": learning_rate, "a": a, "b": b, "loss": loss}


# %% One job, with a progress bar (a widget in Jupyter, text in a terminal)
job = q.submit(fit, 0.5, epochs=3000)
job.wait(progress=True, timeout=120)
model = job.result()
print(f"job {job.id}: y = {model['a']:.2f}x + {model['b']:.2f} (loss {model['loss']:.4f})")

# %% A sweep over learning rates: one job each, run in parallel, results in order
rates = [0.01, 0.03, 0.1, 0.3]
results = q.map(fit, rates, timeout=120)
for result in results:
    print(f"learning rate {result['learning_rate']:<5} loss {result['loss']:.4f}")
best = min(results, key=lambda r: r["loss"])
print(f"best learning rate: {best['learning_rate']}")

# %% A failure comes back as the remote exception, with the worker's traceback
try:
    q.submit(fit, -1.0).result(timeout=120)
except ValueError as exc:
    print(f"remote error: {exc}")
