"""The fenced snippets of README.md and docs/*.md, and the parts that run them: a
bash session per document, process groups stopped whole, and the warning rule.
tests/test_doc_snippets.py says what runs, how, and what the marks mean."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlsplit
from urllib.request import ProxyHandler, build_opener

from tests.processes import live_processes

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))]
#: The tags that run, and how.
KINDS = {"python": "python", "py": "python",
         "bash": "shell", "sh": "shell", "shell": "shell", "console": "shell"}
MARK_WORDS = {"skip", "background", "ready", "finishes-later", "warns"}
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
MARK = re.compile(r"^<!--\s*snippet:(?P<mark>.*?)-->\s*$")
WARNING_LINE = re.compile(r"(?i:\bwarn(?:s|ed|ings?)?\b)|[A-Za-z]Warning\b")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
#: Seconds one snippet may take; a background one, to become ready.
TIMEOUT = 30.0
#: Seconds between two looks at a process or a URL that has no event to wait on.
POLL = 0.02


@dataclass
class Snippet:
    doc: str
    line: int  # of the opening fence, from 1
    tag: str
    code: str
    marks: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str | None:
        return KINDS.get(self.tag)

    @property
    def name(self) -> str:
        return f"{self.doc}:{self.line}"

    def script(self) -> str:
        """The text to run: a console block's commands without their `$ ` prompts."""
        if self.tag != "console":
            return self.code
        return "".join(line[2:] + "\n" for line in self.code.splitlines() if line.startswith("$ "))

    def shown(self) -> str:
        """The snippet as it stands in its document, each line with its number."""
        return "".join(f"{self.line + n:5d}  {text}\n"
                       for n, text in enumerate(self.code.splitlines(), 1))


def parse(doc: str) -> tuple[list[Snippet], list[str]]:
    """Every fenced block of `doc` (relative to ROOT) with its marks, and what is wrong
    with its fences and marks."""
    lines = (ROOT / doc).read_text().splitlines()
    found: list[Snippet] = []
    problems: list[str] = []
    used: set[int] = set()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        end = next((n for n in range(index + 1, len(lines))
                    if lines[n].strip().startswith(opening["fence"])
                    and not lines[n].strip().strip(opening["fence"][0])), None)
        if end is None:
            problems.append(f"{doc}:{index + 1}: a fence that is never closed")
            break
        info = opening["info"].split()
        indent = len(opening["indent"])
        snippet = Snippet(doc, index + 1, info[0].lower() if info else "",
                          "".join(line[indent:] + "\n" for line in lines[index + 1:end]))
        if not snippet.tag:
            problems.append(f"{snippet.name}: a fence without a language tag")
        problems += _read_marks(lines, index, snippet, used)
        found.append(snippet)
        index = end + 1
    problems += [f"{doc}:{n + 1}: a snippet mark that is not just before a fence"
                 for n, line in enumerate(lines) if MARK.match(line) and n not in used]
    return found, problems


def _read_marks(lines: list[str], index: int, snippet: Snippet, used: set[int]) -> list[str]:
    """Fill `snippet.marks` from the mark lines above line `index`; what is wrong with them."""
    problems = []
    above = index - 1
    while above >= 0 and MARK.match(lines[above]):
        used.add(above)
        word, _, text = (part.strip() for part in MARK.match(lines[above])["mark"].partition(":"))
        if word not in MARK_WORDS:
            problems.append(f"{snippet.name}: unknown snippet mark {word!r}")
        snippet.marks[word] = text
        above -= 1
    marks = snippet.marks
    if marks and not snippet.kind:
        problems.append(f"{snippet.name}: a mark on a {snippet.tag or 'untagged'} block, "
                        "which never runs")
    if "skip" in marks and not marks["skip"]:
        problems.append(f"{snippet.name}: `skip` needs its reason")
    if "warns" in marks and not marks["warns"]:
        problems.append(f"{snippet.name}: `warns` needs the text of the warning it shows")
    if "ready" in marks and ("background" not in marks
                             or urlsplit(marks["ready"]).hostname not in LOOPBACK):
        problems.append(f"{snippet.name}: `ready` needs `background` and a loopback URL")
    return problems


def warnings_in(text: str, shown: tuple[str, ...] = ()) -> list[str]:
    """The warning lines of `text`, but those holding a text in `shown`: the
    warnings a document's snippets cause on purpose (the `warns` mark)."""
    return [line for line in text.splitlines()
            if WARNING_LINE.search(line) and not any(part in line for part in shown)]


def first_warning(snippet: Snippet, output: str, stderr: str = "",
                  shown: tuple[str, ...] = ()) -> str | None:
    """The first line a snippet printed that is a warning, or None."""
    lines = warnings_in(f"{output}\n{stderr}", shown)
    if snippet.kind == "python":
        # with no logging configured, Python prints a record of level WARNING or above
        # as its bare message, on stderr, which a Python snippet otherwise leaves empty
        lines += [line for line in stderr.splitlines()
                  if line.strip() and not any(part in line for part in shown)]
    return lines[0] if lines else None


def report(snippet: Snippet, problem: str, output: str, stderr: str = "") -> str:
    """What a failure says: where, why, the snippet, and (the end of) what it printed."""
    shown = output[-8000:] + (f"--- stderr ---\n{stderr[-8000:]}" if stderr else "")
    return (f"{snippet.name} ({snippet.tag}): {problem}\n--- snippet ---\n{snippet.shown()}"
            f"--- output ---\n{shown}")


def verdict(snippet: Snippet, code: int | None, output: str, stderr: str = "",
            shown: tuple[str, ...] = ()) -> str | None:
    """None when the snippet passed: it exited 0 in time and printed no warning.
    `output` is its stdout, with its stderr unless that is given apart."""
    if code is None:
        return report(snippet, f"did not finish within {TIMEOUT:g} s", output, stderr)
    if code != 0:
        return report(snippet, f"exited with status {code}", output, stderr)
    warned = first_warning(snippet, output, stderr, shown)
    return report(snippet, f"printed a warning: {warned!r}", output, stderr) if warned else None


def spawn(command: list[str], cwd: Path, env: dict[str, str], log: Path,
          stdin: int = subprocess.DEVNULL, errors: Path | None = None) -> subprocess.Popen[bytes]:
    """`command` in a process group of its own (so that all it starts can be stopped
    together), stdout to `log`, stderr to `errors` or `log` too."""
    with open(log, "ab") as out, open(errors or os.devnull, "ab") as err:
        # the child keeps its own copies of the descriptors
        return subprocess.Popen(command, cwd=cwd, env=env, stdin=stdin, stdout=out,
                                stderr=err if errors else subprocess.STDOUT,
                                start_new_session=True)


def _family(group: int) -> set[int]:
    """The processes of a group and all their descendants, wherever they went."""
    table = live_processes()
    family = {pid for pid, (_, pgid) in table.items() if pgid == group}
    grown = True
    while grown:
        more = {pid for pid, (ppid, _) in table.items() if ppid in family} - family
        family |= more
        grown = bool(more)
    return family


def stop(*processes: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM to each process's group, then SIGKILL to what is left of them and of
    their descendants after `grace` seconds; returns once none of them is left."""
    family = set().union(*(_family(process.pid) for process in processes))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        # SIGTERM to the groups: a process started elsewhere (an HTTP server in a
        # session of its own) is stopped by its parent; SIGKILL to all that is left
        targets = [-process.pid for process in processes]
        for pid in targets + (sorted(family) if sig == signal.SIGKILL else []):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while family and time.monotonic() < deadline:
            time.sleep(POLL)
            for process in processes:
                process.poll()  # reaps a leader, which would otherwise stay a zombie
            family &= set(live_processes())
        if not family:
            break
    for process in processes:
        process.wait()


def wait_for(process: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def answers(url: str) -> bool:
    """True when `url` (a loopback one, checked when the mark was read) answers 200;
    never through a proxy."""
    try:
        with build_opener(ProxyHandler({})).open(url, timeout=1) as response:
            return bool(response.status == 200)
    except (URLError, OSError):
        return False


class Shell:
    """A document's bash session (`set -e`), fed one snippet at a time; its output
    goes to one log, read a snippet at a time."""

    def __init__(self, cwd: Path, env: dict[str, str], private: Path) -> None:
        self.private = private
        self.log = private / "shell.log"
        self.read = 0
        self.process = spawn(["bash", "--noprofile", "--norc", "-e"], cwd, env, self.log,
                             stdin=subprocess.PIPE)

    def run(self, snippet: Snippet) -> tuple[int | None, str]:
        """Run `snippet` in the session: its status (None: still running after
        TIMEOUT) and its output."""
        path = self.private / f"{snippet.line}.sh"
        path.write_text(snippet.script())
        done = path.with_suffix(".done")
        assert self.process.stdin is not None
        # stdin of the snippet's commands is /dev/null, so no command can read the
        # session's next lines as its input
        self.process.stdin.write(f"source {shlex.quote(str(path))} < /dev/null\n"
                                 f": > {shlex.quote(str(done))}\n".encode())
        self.process.stdin.flush()
        deadline = time.monotonic() + TIMEOUT
        code: int | None = None
        while code is None and time.monotonic() < deadline:
            if done.exists():
                code = 0
            elif self.process.poll() is not None:
                code = self.process.returncode or -1  # a snippet that exits the shell fails too
            else:
                time.sleep(POLL)
        return code, self.output()

    def output(self) -> str:
        """What the session printed since the last call."""
        with open(self.log, "rb") as log:
            log.seek(self.read)
            data = log.read()
        self.read += len(data)
        return data.decode(errors="replace")

    def close(self) -> str:
        """End the session and whatever it left running; its last output."""
        if self.process.poll() is None and self.process.stdin is not None:
            self.process.stdin.close()  # bash ends at the end of its input
            wait_for(self.process, 5)
        stop(self.process)
        if self.process.stdin is not None:
            self.process.stdin.close()
        return self.output()
