"""The short commands through real subprocesses: post, status, result, deadletter, clear_all."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from controller.cli import cli as cli_group
from controller.display import guess_type, summarize_bytes
from controller.options import ByteSize, ConnectionSettings
from mlq.errors import JobNotFound
from mlq.queue import MLQ

from .conftest import Result, base_env, run_controller

pytestmark = pytest.mark.timeout(60)

Cli = Callable[..., Result]
PNG = b"\x89PNG\r\n\x1a\n\x00\xff"


# -- listeners run by the in-process consumer of a test -----------------------------------
def by_kind(msg: Any, context: dict[str, Any]) -> Any:
    """A result of the kind the message asks for."""
    kind = msg["kind"] if isinstance(msg, dict) else msg
    if kind == "text":
        return "hello world"
    if kind == "binary":
        return PNG
    if kind == "pair":
        context["update_progress"](50)
        return ("done", PNG)
    if kind == "dict":
        return {"labels": ["cat"], "score": 0.5}
    if kind == "words":
        return (word for word in ["Once ", "upon ", "a ", "time"])
    if kind == "values":
        return (value for value in [{"step": 1}, [2, 3]])
    if kind == "breaks":
        return _breaks()
    raise ValueError(f"bad input {kind!r}")


def _breaks() -> Any:
    yield "half a "
    raise ValueError("the model broke")


# -- post ---------------------------------------------------------------------------------
def test_post_parses_json_else_sends_a_string(cli: Cli, queue: MLQ) -> None:
    first = cli("post", '{"a": [1, 2]}')
    assert (first.rc, first.out) == (0, "1\n")
    assert cli("post", "hello there").out == "2\n"
    assert cli("post", "42").out == "3\n"
    assert cli("post", "{not json", "--raw").out == "4\n"
    assert cli("post", '{"a": 1}', "--raw").out == "5\n"
    assert queue.get_job(1)["msg"] == {"a": [1, 2]}
    assert queue.get_job(2)["msg"] == "hello there"
    assert queue.get_job(3)["msg"] == 42
    assert queue.get_job(4)["msg"] == "{not json"
    assert queue.get_job(5)["msg"] == '{"a": 1}'  # --raw: a string, even valid JSON


@pytest.mark.parametrize("msg", ["{not json", ' [1, 2', '{"a": 1,}'])
def test_post_refuses_broken_json_and_posts_nothing(cli: Cli, queue: MLQ, msg: str) -> None:
    line = cli("post", msg).assert_one_line_error(2)
    assert "not valid JSON" in line and "line 1 column" in line and "--raw" in line
    assert queue.stats()["posted"] == 0


@pytest.mark.parametrize(("how", "limit"), [("--wait", "--wait_timeout"),
                                            ("--stream", "--wait_timeout"),
                                            ("--wait", "--timeout")])
def test_post_wait_timeout_on_a_queue_nobody_serves_exits_1(cli: Cli, queue: MLQ,
                                                            how: str, limit: str) -> None:
    done = cli("post", "x", "--queue", "nobody", how, limit, "0.5")
    ended = time.time()
    line = done.assert_one_line_error(1)
    job_id = done.out.strip()
    assert f"job {job_id} did not end within 0.5 s" in line and "queued" in line
    # the wait ended near its limit, not at a default (from the post on: the start of
    # the command's interpreter is no part of it, and is slow on a loaded machine)
    waited = ended - queue.get_job(job_id)["timestamp"]
    assert waited < 4, waited
    assert queue.get_job(job_id)["status"] == "queued"  # still posted


def test_wait_timeout_needs_wait_and_leaves_timeout_the_jobs_limit(cli: Cli,
                                                                   queue: MLQ) -> None:
    refused = cli("post", "x", "--wait_timeout", "1")
    assert "needs --wait or --stream" in refused.assert_one_line_error(2)
    queue.create_listener(by_kind)
    done = cli("post", "text", "--wait", "--timeout", "30", "--wait-timeout", "20")
    assert done.rc == 0, done.err
    job_id, short = done.out.splitlines()
    assert short == "hello world" and queue.get_job(job_id)["timeout"] == 30


def test_post_options_in_dashed_and_underscored_spellings(redis_url: str, namespace: str,
                                                          queue: MLQ) -> None:
    done = run_controller("post", "x", "--functions", "a,b", "--functions", "c",
                          "--timeout", "5", "--callback", "http://127.0.0.1:9/cb",
                          "--redis-url", redis_url, "--namespace", namespace)
    assert done.rc == 0, done.err
    record = queue.get_job(done.out.strip())
    assert record["functions"] == ["a", "b", "c"]
    assert record["timeout"] == 5
    assert record["callback"] == "http://127.0.0.1:9/cb"
    assert run_controller("status", "1", "--redis_url", redis_url,
                          "--namespace", namespace).rc == 0


def test_environment_variables_stand_for_the_flags(redis_url: str, namespace: str,
                                                   queue: MLQ) -> None:
    env = base_env(MLQ_REDIS_URL=redis_url, MLQ_NAMESPACE=namespace)
    done = run_controller("post", '{"from": "env"}', env=env)
    assert done.rc == 0, done.err
    assert queue.get_job(done.out.strip())["msg"] == {"from": "env"}
    assert json.loads(run_controller("status", env=env).out)["namespace"] == namespace


def test_post_wait_shows_progress_then_prints_the_short_result(cli: Cli, queue: MLQ,
                                                               tmp_path: Path) -> None:
    queue.create_listener(by_kind)
    done = cli("post", "pair", "--wait")
    assert done.rc == 0, done.err
    job_id, short = done.out.splitlines()
    assert short == "done"
    assert queue.get_job(job_id)["status"] == "completed"
    assert "100%" in done.err and "completed" in done.err

    target = tmp_path / "out.png"
    written = cli("post", "binary", "--wait", "-o", str(target))
    assert written.rc == 0, written.err
    assert len(written.out.splitlines()) == 1  # the id alone: the result went to the file
    assert target.read_bytes() == PNG


def test_post_wait_on_a_failing_job_exits_1_with_its_error(cli: Cli, queue: MLQ) -> None:
    queue.create_listener(by_kind)
    done = cli("post", "oops", "--wait")
    assert done.rc == 1
    assert "ValueError: bad input 'oops'" in done.err
    assert done.out.strip() == "1"


def test_post_stream_prints_the_chunks_as_they_come(cli: Cli, queue: MLQ) -> None:
    queue.create_listener(by_kind)
    text = cli("post", "words", "--stream")
    assert text.rc == 0, text.err
    job_id, story = text.out.splitlines()
    assert story == "Once upon a time"  # text as it is, a line ended at the end
    assert queue.get_job(job_id)["result"] == ["Once ", "upon ", "a ", "time"]
    values = cli("post", "values", "--stream")
    assert values.out.splitlines()[1:] == ['{"step": 1}', "[2, 3]"]  # JSON lines
    plain = cli("post", "text", "--stream")  # nothing streamed: the short result
    assert plain.out.splitlines()[1:] == ["hello world"]


def test_post_stream_of_a_job_that_fails_exits_1_after_its_chunks(cli: Cli,
                                                                   queue: MLQ) -> None:
    queue.create_listener(by_kind)
    done = cli("post", "breaks", "--stream")
    assert done.rc == 1
    assert done.out.splitlines()[1:] == ["half a "]
    assert "ValueError: the model broke" in done.err
    refused = cli("post", "words", "--stream", "--wait")
    assert refused.rc == 2 and "exclude each other" in refused.err


# -- status and result ----------------------------------------------------------------------
def test_status_prints_the_record_with_bytes_as_base64(cli: Cli, queue: MLQ) -> None:
    job_id = queue.post(b"\x00\x01")
    record = json.loads(cli("status", job_id).out)
    assert record["id"] == job_id and record["status"] == "queued"
    assert record["msg"] == {"base64": "AAE="}
    counts = json.loads(cli("status").out)
    assert counts["waiting"] == 1 and counts["posted"] == 1 and counts["dead"] == 0
    queue.cancel(queue.post("later", delay=60))
    queue.post("after", depends_on=[job_id])
    counts = json.loads(cli("status").out)
    assert (counts["cancelled"], counts["scheduled"], counts["deferred"]) == (1, 0, 1)


def test_status_shows_a_binary_result_as_size_and_type(cli: Cli, queue: MLQ) -> None:
    queue.create_listener(by_kind)
    png = queue.post("binary")
    queue.wait(png, 10)
    record = json.loads(cli("status", png).out)
    assert record["result"] == {"bytes": len(PNG), "type": "image/png"}
    assert record["msg"] == "binary"
    full = json.loads(cli("status", png, "--full").out)
    assert base64.b64decode(full["result"]["base64"]) == PNG
    assert guess_type(b"\x00\x01 no magic") == "application/octet-stream"
    assert guess_type(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert summarize_bytes({"pages": [b"%PDF-1.7", "text"]}) == {
        "pages": [{"bytes": 8, "type": "application/pdf"}, "text"]}


def test_result_prints_text_and_json_and_writes_binary(cli: Cli, queue: MLQ,
                                                       tmp_path: Path) -> None:
    queue.create_listener(by_kind)
    ids = {kind: queue.post(kind) for kind in ("text", "binary", "dict")}
    for job_id in ids.values():
        queue.wait(job_id, timeout=20)
    assert cli("result", ids["text"]).out == "hello world\n"
    assert json.loads(cli("result", ids["dict"]).out) == {"labels": ["cat"], "score": 0.5}
    target = tmp_path / "r.png"
    assert cli("result", ids["binary"], "-o", str(target)).rc == 0
    assert target.read_bytes() == PNG
    piped = cli("result", ids["binary"])  # stdout is a pipe, not a terminal
    assert (piped.rc, piped.raw) == (0, PNG)


def test_result_of_a_failed_or_unfinished_job_exits_1(cli: Cli, queue: MLQ) -> None:
    queued = queue.post("text")
    assert "no result yet" in cli("result", queued).assert_one_line_error(rc=1)
    queue.create_listener(by_kind)
    failed = queue.post("oops")
    queue.wait(failed, timeout=20)
    done = cli("result", failed)
    assert done.rc == 1 and "bad input 'oops'" in done.err


# -- dead letters and clear_all --------------------------------------------------------------
def test_deadletter_list_requeue_purge(cli: Cli, queue: MLQ) -> None:
    queue.create_listener(by_kind)
    ids = [queue.post(f"bad{n}") for n in range(3)]
    for job_id in ids:
        queue.wait(job_id, timeout=20)
    queue.shutdown(timeout=10)  # so a requeued job stays queued

    listed = cli("deadletter", "list")
    assert [line.split("\t")[0] for line in listed.out.splitlines()] == ids
    assert "bad input 'bad0'" in listed.out
    assert [r["id"] for r in json.loads(cli("deadletter", "list", "--json").out)] == ids

    assert cli("deadletter", "requeue", ids[0]).out == "requeued 1\n"
    assert queue.get_job(ids[0])["status"] == "queued"
    declined = cli("deadletter", "purge", ids[1], input=b"n\n")
    assert declined.rc == 1
    assert [r["id"] for r in queue.dead_letters()] == ids[1:]
    assert cli("deadletter", "purge", ids[1], "--yes").out == "purged 1\n"
    with pytest.raises(JobNotFound):
        queue.get_job(ids[1])
    assert cli("deadletter", "purge", input=b"y\n").out.endswith("purged 1\n")
    assert queue.dead_letters() == []
    assert "not a dead letter" in cli("deadletter", "requeue", ids[0]).assert_one_line_error()


def test_clear_all_asks_first(cli: Cli, queue: MLQ) -> None:
    job_id = queue.post("keep me")
    assert cli("clear_all", input=b"n\n").rc == 1
    assert cli("clear_all").rc == 1  # no terminal, no answer: nothing deleted
    assert queue.get_job(job_id)["msg"] == "keep me"
    done = cli("clear-all", "--yes")
    assert done.rc == 0 and done.out.startswith("deleted ")
    with pytest.raises(JobNotFound):
        queue.get_job(job_id)
    assert cli("clear_all", input=b"y\n").rc == 0


# -- errors ------------------------------------------------------------------------------
def test_unknown_job_ids_exit_2_with_one_line(cli: Cli, queue: MLQ) -> None:
    for args in (("status", "999"), ("result", "999"), ("status", "abc"),
                 ("deadletter", "purge", "999", "--yes")):
        line = cli(*args).assert_one_line_error()
        assert "999" in line or "abc" in line


def test_unreachable_redis_exits_2_with_one_line() -> None:
    from mlq.embedded import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    for args in (("status",), ("post", "x"), ("deadletter", "list")):
        line = run_controller(*args, "--redis_url", url).assert_one_line_error()
        assert "cannot reach Redis at " + url in line


@pytest.mark.parametrize("args", [
    ("post",),                                  # MSG missing
    ("status", "--bogus"),
    ("nosuchcommand",),
    ("post", "x", "--timeout", "-1"),
    ("post", "x", "-o", "f"),                   # -o needs --wait
    ("status", "--redis_url", "nosuch://host"),
    ("server", "--max_body", "12X"),
    ("consumer", "--concurrency", "0"),
])
def test_usage_errors_exit_2(args: tuple[str, ...]) -> None:
    run_controller(*args).assert_one_line_error()


def test_help_on_every_command_has_an_example() -> None:
    runner = CliRunner()
    commands = [[name] for name in cli_group.list_commands(None)]  # type: ignore[arg-type]
    commands += [["deadletter", sub] for sub in ("list", "requeue", "purge")]
    for words in commands:
        done = runner.invoke(cli_group, [*words, "--help"])
        assert done.exit_code == 0, words
        assert "Example" in done.output and "controller " in done.output, words


def test_sizes_take_k_m_g_suffixes_in_powers_of_1024() -> None:
    size = ByteSize()
    assert [size.convert(v, None, None) for v in ("1048576", "512K", "64M", "1G", "2mb")] == [
        1048576, 512 * 1024, 64 * 1024 ** 2, 1024 ** 3, 2 * 1024 ** 2]


def test_connection_settings_name_a_redis_and_mask_its_password() -> None:
    assert not ConnectionSettings("ns").named
    assert ConnectionSettings("ns", port=6380).redis_url == "redis://localhost:6380/0"
    secret = ConnectionSettings("ns", url="redis://user:pw@db.example:6379/2")
    assert secret.named and secret.display == "redis://user:***@db.example:6379/2"
