"""Key names: every key of a namespace carries its hash tag (one Redis Cluster slot),
and no two namespaces or queue names ever share a key."""

from __future__ import annotations

import inspect

import redis

from mlq import MLQ
from mlq.keys import LUA_KEY_BUILDERS, Keys


def _every_key(keys: Keys) -> set[str]:
    """Every key and channel name `keys` can spell, found by looking at the class, so
    that a key added later is checked without this test being edited."""
    names: set[str] = set()
    for attr, member in inspect.getmembers(Keys):
        if attr.startswith("_") or attr.endswith("pattern"):
            continue  # patterns are SCAN/PSUBSCRIBE globs, not names
        if callable(member):
            params = list(inspect.signature(member).parameters.values())[1:]
            value = getattr(keys, attr)(*["x" for p in params if p.default is p.empty])
        else:
            value = getattr(keys, attr)
        names.update([value] if isinstance(value, str) else value)
    return names


def test_every_key_of_a_namespace_carries_its_tag_and_no_other_namespace_has_it() -> None:
    team, other = _every_key(Keys("team")), _every_key(Keys("team.other"))
    assert len(team) > 30  # the class was really looked at
    assert all(name.startswith("mlq:{team}:") for name in team)
    assert all(name.startswith("mlq:{team.other}:") for name in other)
    assert not team & other


def test_every_key_shares_the_hash_tag() -> None:
    keys = Keys("app")
    names = [keys.counter, keys.job(1), keys.queue(), keys.processing("w"), keys.running,
             keys.dead, keys.stats, keys.tally, keys.workers, keys.heartbeat("w"), keys.registry,
             keys.registry_order, keys.registry_seq, keys.data("k"), keys.queues]
    assert all(name.startswith("mlq:{app}:") for name in names)
    assert Keys("a*[b]").pattern == "mlq:{a\\*\\[b\\]}:*"


def test_distinct_names_never_share_a_key() -> None:
    # what used to collide: a queue's priority lane, owner lists, the hash tag
    assert Keys("team").pattern != Keys("team.other").pattern
    assert not Keys("team.other").prefix.startswith(Keys("team").prefix)
    keys = Keys("ns")
    assert len({keys.queue("a", 9), keys.queue("a.p9"), keys.queue("a_p9")}) == 3


def test_every_key_carries_the_namespace_hash_tag(q: MLQ, redis_url: str) -> None:
    def listener(msg: object, *args: object) -> str:
        return "done"

    q.create_listener(listener)
    q.store_data("x")
    q.wait(q.post("a"), timeout=10)
    client = redis.Redis.from_url(redis_url)
    tagged = [k for k in client.scan_iter(match=q.keys.pattern)]
    assert len(tagged) >= 8
    every = [k.decode() for k in client.scan_iter() if f"{{{q.namespace}}}".encode() in k]
    assert all(k.startswith(f"mlq:{{{q.namespace}}}:") for k in every)




def test_the_lua_key_builders_name_the_same_keys_as_keys_py(q: MLQ) -> None:
    """Steps that learn a job's queue or a dependent's id from a record build its
    key names in Lua (LUA_KEY_BUILDERS); each must be the name Keys gives."""
    k = q.keys
    calls = {
        "job_hash(P, '7')": k.job("7"),
        "lane_key(P, 'gpu', 0, nil)": k.queue("gpu"),
        "lane_key(P, 'gpu', 3, 'ann')": k.queue("gpu", 3),
        "lane_key(P, 'gpu', 0, 'ann')": k.owned("gpu", "ann"),
        "owners_key(P, 'gpu')": k.owners("gpu"),
        "wake_key(P, 'gpu')": k.wake("gpu"),
        "idle_key(P, 'gpu')": k.idle("gpu"),
        "channel_key(P, '7')": k.job_channel("7"),
        "chunks_channel_key(P, '7')": k.chunks_channel("7"),
        "stream_key(P, '7')": k.stream("7"),
        "status_index_key(P, 'expired')": k.index_status("expired"),
        "dedup_key(P, 'resize:42')": k.dedup("resize:42"),
        "dependents_key(P, '7')": k.dependents("7"),
        "scheduled_key(P)": k.scheduled,
        "expiring_key(P)": k.expiring,
        "paused_key(P)": k.paused,
        "waiting_on_key(P)": k.waiting_on,
        "stats_key(P)": k.stats,
        "schedule_times_key(P)": k.schedule_times,
    }
    script = LUA_KEY_BUILDERS + "local P = KEYS[1]\nreturn {" + ", ".join(calls) + "}"
    built = [name.decode() for name in q.client.eval(script, 1, k.prefix)]
    assert dict(zip(calls, built)) == calls
