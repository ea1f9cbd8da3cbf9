"""The systems under test: their display names, driver modules and pip requirements."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class System:
    key: str  # what --only takes
    label: str  # what the tables show
    module: str  # benchmarks/peers/<module>.py
    #: pip requirements of its own venv; None: this interpreter, with the checkout on PYTHONPATH
    requirements: tuple[str, ...] | None


SYSTEMS: tuple[System, ...] = (
    System("mlq", "MLQ (this checkout)", "mlq_bench", None),
    # Pins redis 2.10 and msgpack 0.5, hence a venv of its own. hiredis is added
    # for every system (redis-py uses it when present), this one included.
    System("mlq022", "MLQ 0.2.2 (PyPI)", "mlq022_bench", ("mlq==0.2.2", "hiredis")),
    System("rq", "RQ", "rq_bench", ("rq", "hiredis")),
    System("arq", "arq", "arq_bench", ("arq",)),  # arq requires redis[hiredis] itself
    # saq 0.26 imports typing_extensions without declaring it; its redis extra pins redis<8.
    System("saq", "SAQ", "saq_bench", ("saq[redis,hiredis]", "typing_extensions")),
    System("celery", "Celery", "celery_bench", ("celery[redis]", "hiredis")),
    System("dramatiq", "Dramatiq", "dramatiq_bench", ("dramatiq[redis]", "hiredis")),
    System("huey", "Huey", "huey_bench", ("huey", "redis", "hiredis")),  # huey does not require redis
)

BY_KEY = {s.key: s for s in SYSTEMS}
REFERENCE = "mlq"  # the system every ratio is taken against


def select(only: str | None) -> list[System]:
    """The systems named in `--only a,b` (MLQ always included: ratios need it)."""
    if not only:
        return list(SYSTEMS)
    keys = {k.strip() for k in only.split(",") if k.strip()}
    unknown = keys - set(BY_KEY)
    if unknown:
        raise SystemExit(f"unknown system(s) {sorted(unknown)}; choose from {sorted(BY_KEY)}")
    keys.add(REFERENCE)
    return [s for s in SYSTEMS if s.key in keys]
