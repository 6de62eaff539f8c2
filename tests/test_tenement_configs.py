"""A corpus of tenement.toml snippets (tests/fixtures/tenement): each starts, with one warning per
key slum does not act on that names the key, or is refused with a message naming the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from slum import config as cfg
from slum.errors import ConfigError

FIXTURES = Path(__file__).parent / "fixtures" / "tenement"

# file -> the keys its warnings must name (and nothing else may warn)
ACCEPTED: dict[str, set[str]] = {
    "ok-minimal.toml": set(),
    "ok-legacy-process.toml": set(),
    # isolation and cpu_shares are honoured (specs/isolation.md): no warning
    "ok-multi-runtime.toml": set(),
    "ok-multi-env.toml": {"service.api.port"},
    "ok-tls.toml": {"settings.tls"},
    "ok-routing.toml": {"routing.subdomain", "routing.path"},
    "ok-storage.toml": set(),
    "ok-unknown-key.toml": {"service.api.healthcheck"},
}
REFUSED: dict[str, str] = {
    "refused-underscore-service.toml": r":1: service.user_code: .*rename it to 'user-code'",
    "refused-underscore-id.toml": r":5: instances.api: invalid instance id 'wr_a'.*'wr-a'",
    "refused-tilde-data-dir.toml": r":2: settings.data_dir: '~/tenement' starts with '~'",
    "refused-both-sections.toml": r":4: process.api: defined in both \[service.api\]",
    "refused-undefined-instance.toml": r":5: instances.worker: no \[service.worker\]",
    "refused-firecracker.toml": r":3: service.vm.isolation: firecracker VMs are not supported",
}


def test_the_corpus_is_all_checked() -> None:
    assert {p.name for p in FIXTURES.glob("*.toml")} == set(ACCEPTED) | set(REFUSED)


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_accepted_with_one_warning_per_key(name: str) -> None:
    config = cfg.load(FIXTURES / name)
    named = {m.group(1) for w in config.warnings if (m := re.search(r"\.toml:\d+: ([\w.]+): ", w))}
    assert named == ACCEPTED[name], config.warnings
    assert len(config.warnings) == len(named), "one warning per key"
    for warning in config.warnings:
        if "does not act on" in warning:
            assert warning.split("does not act on: ")[1]  # says what slum does instead


def test_what_the_warnings_say() -> None:
    tls = cfg.load(FIXTURES / "ok-tls.toml").warnings[0]
    assert "slum caddy" in tls
    port = cfg.load(FIXTURES / "ok-multi-env.toml")
    assert any("own free port in PORT" in w for w in port.warnings)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_naming_the_key(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        cfg.load(FIXTURES / name)
    assert re.search(REFUSED[name], info.value.message), info.value.message
    assert info.value.message.startswith(str(FIXTURES / name))


def test_strict_refuses_what_tenement_would_ignore() -> None:
    with pytest.raises(ConfigError, match=r"service.api.healthcheck: unknown key.*--strict"):
        cfg.load(FIXTURES / "ok-unknown-key.toml", strict=True)


def test_what_the_accepted_ones_mean() -> None:
    legacy = cfg.load(FIXTURES / "ok-legacy-process.toml").services["api"]
    assert legacy.argv(instance_id="a", port=1, data_dir=Path("/d")) == [
        "./api",
        "--socket",
        "/tmp/api-a.sock",
        "--data",
        "/d/a",
    ]
    assert legacy.restart == "always"
    minimal = cfg.load(FIXTURES / "ok-minimal.toml")
    assert minimal.settings.data_dir == Path.cwd() / "tenement-data"
    storage = cfg.load(FIXTURES / "ok-storage.toml").services["notes"]
    assert (storage.storage_persist, storage.storage_quota_mb, storage.request_timeout) == (False, 50, 30.0)
    env = cfg.load(FIXTURES / "ok-multi-env.toml")
    assert env.services["api"].env == {"APP_VERSION": "1.0.0"}
    assert env.instances["cache"] == ("prod", "staging")


def test_the_deploys_example_is_valid() -> None:
    config = cfg.load(FIXTURES.parents[2] / "examples" / "deploys" / "tenement.toml")
    assert config.warnings == ()
    assert config.services["tenants"].auto_spawn and config.instances == {"notes": ("v1",)}
