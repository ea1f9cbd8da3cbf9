"""Every fenced Python and shell snippet of README.md and docs/*.md runs, in its
document's order, against a live server, and none prints a warning: the docs
cannot rot. One test per runnable snippet (`README.md:42`, named by the line of
its opening fence; a skipped one shows its reason), and one per document
(`README.md:end`) that stops the processes the document started and judges them.

How a fence runs is chosen by its tag, which every fence must have (a fence
without one fails `test_every_fence_has_a_tag_and_every_mark_is_known`, so no
snippet dodges the test). `python` and `py`: a script run by this interpreter,
saved in the document's own directory, its working directory. `bash`, `sh`,
`shell` and `console` (its `$ ` lines only): one bash session per document, under
`set -e` (every command must succeed; a snippet says `|| ...` where a failure is
the point), so that variables, `cd` and background jobs (`kill %1`) carry from one
snippet to the next, as in a reader's terminal. Other tags (text, json, yaml,
ini, dockerfile...) do not run.

Marks: HTML comments on the lines just before a fence, one a line, each a word or
`word: text`, e.g. `<!-- snippet: skip: needs GPUs -->`.

- `skip: REASON`: not run; reported skipped with REASON. Only for what cannot run
  here: it needs a GPU, another machine, a service this suite has not (Docker,
  Kubernetes), installs packages or runs the suite itself; or, as a last resort,
  `skip: BUG: ...` for a product bug it shows.
- `background`: a long-running process (a worker, a server) that a reader starts in
  a terminal of its own; the later snippets run while it does. At the end of the
  document, after it ran for START_UP seconds at least, it passes when it is still
  running or exited 0; then it is stopped.
- `ready: URL`: with `background`; the next snippet waits until the loopback URL
  answers 200, as a reader waits for the server to say that it listens.
- `finishes-later`: started as a background one is, because it waits on a later
  snippet (a producer shown before its worker); it must exit 0 by itself before the
  end of the document.
- `warns: TEXT`: the snippet shows a warning on purpose (a retry is logged at
  WARNING): in its document, warning lines that hold TEXT are no fault, and one
  of them must have appeared by the end of the document.

A snippet passes when it exits 0 within TIMEOUT seconds and prints no warning. A
line is a warning when `doc_snippets.WARNING_LINE` finds in it the word warn, warns,
warned, warning or warnings, in any case (a log record at WARNING level, "warning:"
messages), or a Python warning category such as `DeprecationWarning`. Checked: each
snippet's stdout and stderr, background ones' included, and every `*.log` file the
document's snippets wrote. Besides, every line a Python snippet writes to stderr
is a warning: a script that configures no logging gets a record of level WARNING
or above printed there as its bare message (logging's last resort), with no level
to tell it by; a Python snippet that fails is reported as failing instead.

A process is stopped with SIGTERM to its process group, then SIGKILL to what is
left of it and its descendants after 10 s: nothing is left running.

The server is what a reader has who followed the README: the embedded default on
127.0.0.1:6379, with its password in ~/.local/share/mlq/password, HOME being a
temporary directory for every snippet, so nothing touches the real one. The library
and the `controller` commands find that password by themselves, and behind it a
worker has no reason to warn. Each document starts on an empty server. The snippets
name ports 6379 and 5000 of 127.0.0.1 as they are written, so where either is taken
on this machine the test is skipped rather than run on rewritten snippets.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from mlq.embedded import EmbeddedServer, embedded_password, port_open
from tests.conftest import fixed_ports
from tests.doc_snippets import (DOCS, POLL, TIMEOUT, Shell, Snippet, answers, first_warning,
                                parse, report, spawn, stop, verdict, wait_for, warnings_in)

PORTS = (6379, 5000)
pytestmark = fixed_ports
#: Seconds a background snippet runs at least before it is judged.
START_UP = 1.0


@dataclass
class Background:
    snippet: Snippet
    process: subprocess.Popen[bytes]
    log: Path
    errors: Path | None  # a Python snippet's stderr, kept apart (doc_snippets.first_warning)
    started: float = field(default_factory=time.monotonic)

    def output(self) -> tuple[str, str]:
        """What it printed: stdout (with stderr, unless kept apart), and stderr apart."""
        return read(self.log), read(self.errors) if self.errors else ""


def read(path: Path) -> str:
    return path.read_text(errors="replace")


class DocumentRun:
    """A document's runnable snippets, played in order in a directory of their own."""

    def __init__(self, doc: str, base: Path, env: dict[str, str]) -> None:
        self.doc = doc
        self.snippets = [s for s in parse(doc)[0] if s.kind]
        self.cwd = base / doc.replace("/", "_")
        self.private = base / f"{self.cwd.name}.run"  # the runner's files, apart from the reader's
        self.cwd.mkdir()
        self.private.mkdir()
        self.env = env
        self.results: dict[str, str | None] = {}
        self.first_failure: str | None = None
        self.shell: Shell | None = None
        self.background: list[Background] = []
        self.shown = tuple(s.marks["warns"] for s in self.snippets if "warns" in s.marks)

    def run_through(self, target: Snippet) -> str | None:
        """Run the snippets up to `target` that have not run; what went wrong with
        `target` (None: it passed). After a failure the rest are not run."""
        for snippet in self.snippets:
            if snippet.name not in self.results:
                if self.first_failure:
                    self.results[snippet.name] = (f"{snippet.name} not run: "
                                                  f"{self.first_failure} failed before it")
                else:
                    self.results[snippet.name] = self.run(snippet)
                    self.first_failure = snippet.name if self.results[snippet.name] else None
            if snippet.name == target.name:
                return self.results[snippet.name]
        raise LookupError(target.name)

    def run(self, snippet: Snippet) -> str | None:
        if "skip" in snippet.marks:
            return None
        if {"background", "finishes-later"} & snippet.marks.keys():
            return self.start(snippet)
        if snippet.kind == "shell":
            self.shell = self.shell or Shell(self.cwd, self.env, self.private)
            return verdict(snippet, *self.shell.run(snippet), shown=self.shown)
        log, errors = self.private / f"{snippet.line}.log", self.private / f"{snippet.line}.err"
        process = spawn([sys.executable, self.script(snippet)], self.cwd, self.env, log,
                        errors=errors)
        code = wait_for(process, TIMEOUT)
        stop(process)
        return verdict(snippet, code, read(log), read(errors), self.shown)

    def script(self, snippet: Snippet) -> str:
        """A Python snippet saved in the reader's directory, so that it imports the
        modules an earlier snippet wrote there, as a script saved next to them would."""
        path = self.cwd / f"snippet_{snippet.line}.py"
        path.write_text(snippet.script())
        return path.name

    def start(self, snippet: Snippet) -> str | None:
        """Start a background snippet; with `ready`, wait until its URL answers."""
        if snippet.kind == "python":
            command = [sys.executable, self.script(snippet)]
        else:
            path = self.private / f"{snippet.line}.sh"
            path.write_text(snippet.script())
            # bash waits for its command to end on SIGTERM (the trap), so it reaps it,
            # as a terminal's shell does when Ctrl-C stops the command and not the shell
            command = ["bash", "--noprofile", "--norc", "-e", "-c", 'trap "exit 143" TERM; . "$0"',
                       str(path)]
        log = self.private / f"{snippet.line}.log"
        errors = self.private / f"{snippet.line}.err" if snippet.kind == "python" else None
        job = Background(snippet, spawn(command, self.cwd, self.env, log, errors=errors),
                         log, errors)
        self.background.append(job)
        url = snippet.marks.get("ready")
        deadline = time.monotonic() + TIMEOUT
        while url and not answers(url):
            if job.process.poll() is not None:
                return report(snippet, f"exited with status {job.process.returncode} "
                                       f"before {url} answered", *job.output())
            if time.monotonic() > deadline:
                return report(snippet, f"{url} did not answer within {TIMEOUT:g} s", *job.output())
            time.sleep(POLL)
        return None

    def close(self) -> list[str]:
        """Wait for the snippets that finish later, stop every process the document
        started, and say what went wrong with them and with their output."""
        problems = [verdict(job.snippet, wait_for(job.process, TIMEOUT), *job.output(),
                            self.shown)
                    for job in self.background if "finishes-later" in job.snippet.marks]
        # a process that cannot start (a bad import) fails within a second: let it
        time.sleep(max([0.0] + [job.started + START_UP - time.monotonic()
                                for job in self.background]))
        codes = [job.process.poll() for job in self.background]
        stop(*(job.process for job in self.background))
        for job, code in zip(self.background, codes):
            warned = first_warning(job.snippet, *job.output(), self.shown)
            if "finishes-later" in job.snippet.marks:
                continue  # judged above
            if code not in (None, 0):
                problems.append(report(job.snippet, f"exited with status {code} before the "
                                                    "end of the document", *job.output()))
            elif warned:
                problems.append(report(job.snippet, f"printed a warning: {warned!r}",
                                       *job.output()))
        outputs = {"the shell, after its last snippet": self.shell.close() if self.shell else ""}
        outputs.update((f"{log.relative_to(self.cwd)}, written by its snippets",
                        read(log)) for log in sorted(self.cwd.rglob("*.log")))
        problems += [f"{self.doc}: {where} holds a warning: {warnings_in(text, self.shown)[0]!r}"
                     for where, text in outputs.items() if warnings_in(text, self.shown)]
        everything = "\n".join([*outputs.values(),
                                 *("\n".join(job.output()) for job in self.background)])
        problems += [f"{self.doc}: no warning holding {text!r} appeared, though a snippet "
                     "shows one" for text in self.shown if text not in everything]
        return [problem for problem in problems if problem]


class Runs:
    """The documents' runs, one at a time: each starts on an empty server."""

    def __init__(self, server: EmbeddedServer, base: Path, env: dict[str, str]) -> None:
        self.server, self.base, self.env = server, base, env
        self.open: dict[str, DocumentRun] = {}

    def of(self, doc: str) -> DocumentRun:
        if doc not in self.open:
            self.close_all()  # another document's server on port 5000 would be in the way
            with redis.Redis.from_url(self.server.url) as client:
                client.flushall()
            self.open[doc] = DocumentRun(doc, self.base, self.env)
        return self.open[doc]

    def close(self, doc: str) -> list[str]:
        run = self.open.pop(doc, None)
        return run.close() if run else []

    def close_all(self) -> None:
        for doc in list(self.open):
            self.close(doc)


def reader_env(home: Path) -> dict[str, str]:
    """A reader's shell: this virtual environment first on PATH (as after `activate`),
    HOME a private directory, none of MLQ's variables set, and no proxy, so that
    every request goes where the snippet says: to loopback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLQ_", "PYTEST_"))}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent),
                                   env.get("PATH", "/usr/bin:/bin")])
    env = {k: v for k, v in env.items() if not k.lower().endswith("_proxy")}
    env["HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"  # output in the order it happened, as on a terminal
    return env


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    taken = [port for port in PORTS if port_open("127.0.0.1", port)]
    if taken:
        pytest.skip(f"127.0.0.1 port(s) {taken} taken: the snippets name them as they are")
    home = tmp_path_factory.mktemp("home")
    data = home / ".local" / "share" / "mlq"  # what `controller consumer` would start
    with EmbeddedServer(port=PORTS[0], data_dir=data,
                        password=embedded_password(data, create=True)) as server:
        registry = Runs(server, tmp_path_factory.mktemp("docs"), reader_env(home))
        try:
            yield registry
        finally:
            registry.close_all()


def cases() -> list[object]:
    """A test per runnable snippet, in document order, and one closing each document."""
    params = []
    for doc in DOCS:
        snippets = [s for s in parse(doc)[0] if s.kind]
        params += [pytest.param(doc, s, id=s.name) for s in snippets]
        params += [pytest.param(doc, None, id=f"{doc}:end")] if snippets else []
    return params


@pytest.mark.parametrize(("doc", "snippet"), cases())
def test_doc_snippet(doc: str, snippet: Snippet | None, runs: Runs) -> None:
    if snippet is None:
        problems = runs.close(doc)
        assert not problems, "\n\n".join(problems)
    elif "skip" in snippet.marks:
        pytest.skip(snippet.marks["skip"])
    else:
        failure = runs.of(doc).run_through(snippet)
        if failure:
            pytest.fail(failure, pytrace=False)


def test_every_fence_has_a_tag_and_every_mark_is_known() -> None:
    problems = [problem for doc in DOCS for problem in parse(doc)[1]]
    assert not problems, "\n".join(problems)
