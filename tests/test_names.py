"""One naming rule for namespaces, queues, owners and functions, at every entry, so
that no two distinct names can ever map to one Redis key (docs/SECURITY.md)."""

from __future__ import annotations

import pytest

from mlq import MLQ
from mlq.errors import InvalidName
from tests.cli.conftest import run_controller

BAD_NAMES = ["", "default:p9", "a:b", "team}:other", "a\nb", "x y", "é", "a" * 129, "q*"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_bad_namespace_is_a_value_error(redis_url: str, name: str) -> None:
    with pytest.raises(InvalidName) as caught:
        MLQ(name, redis_url=redis_url)
    assert isinstance(caught.value, ValueError)
    assert "A-Z, a-z, 0-9" in str(caught.value)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_queue_and_owner_names_post_nothing(q: MLQ, name: str) -> None:
    for options in ({"queue": name}, {"owner": name}):
        with pytest.raises(InvalidName):
            q.post("x", **options)
    with pytest.raises(InvalidName):
        q.job_count(name)
    with pytest.raises(InvalidName):
        MLQ(q.namespace, client=q.client, queues=("default", name))
    assert q.post("x") == "1"  # no rejected post took an id


def test_names_in_the_rule_are_accepted(q: MLQ) -> None:
    job_id = q.post("x", queue="gpu-A100.v2_1", owner="alice.smith-2")
    assert q.get_job(job_id)["queue"] == "gpu-A100.v2_1"
    assert q.job_count("gpu-A100.v2_1") == 1


def test_function_names_follow_their_rule(q: MLQ) -> None:
    with pytest.raises(InvalidName):
        q.post("x", functions=["has space"])
    with pytest.raises(InvalidName):
        q.remove_listener("a:b")
    assert q.register_listener(lambda msg, *args: msg) == "<lambda>"


def test_clear_all_of_one_namespace_leaves_a_similar_one(redis_url: str) -> None:
    team, other = MLQ("team", redis_url=redis_url), MLQ("team.other", redis_url=redis_url)
    try:
        kept = other.post("kept")
        team.post("gone")
        team.clear_all()
        assert other.get_job(kept)["msg"] == "kept"
    finally:
        team.clear_all()
        other.clear_all()


def test_the_cli_refuses_bad_names_with_exit_2(redis_url: str) -> None:
    bad_namespace = run_controller("status", "--redis_url", redis_url, "--namespace", "a:b")
    assert "not a valid name" in bad_namespace.assert_one_line_error(2)
    bad_queue = run_controller("post", "x", "--queue", "default:p9", "--redis_url", redis_url,
                               "--namespace", "t_names_cli")
    assert "not a valid name" in bad_queue.assert_one_line_error(2)
