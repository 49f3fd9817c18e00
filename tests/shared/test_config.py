"""Config loading: every shipped profile validates; each kind of mistake names file, key and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.commands.config_cmd import describe
from shared.config import EdgeConfig, GatewayConfig, load_config
from shared.config.edge import HttpSource, MqttSource, SimulatorSource
from shared.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
PROFILES = sorted((ROOT / "firmware_configs").glob("*.toml"))
EDGE_PROFILES = [p for p in PROFILES if p.name != "gateway.toml"]

MINIMAL_EDGE = """
[device]
twin_id = "home1"
profile = "test"
arch = "x86_64"
memory_mb = 4096
cpu_cores = 2
data_dir = "state"

[gateway]
endpoint = "tcp://127.0.0.1:7455"
server_public_key = "keys/server.key"
client_secret_key = "keys/device.key_secret"

[[sources]]
type = "simulator"
home = 1
"""


def write(tmp_path: Path, text: str, name: str = "edge.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_shipped_profiles_cover_the_required_devices() -> None:
    names = {p.stem for p in EDGE_PROFILES}
    assert {"smart-home-hub-x86", "raspberry-pi4-4gb", "jetson-orin-nano"} <= names


@pytest.mark.parametrize("path", EDGE_PROFILES, ids=lambda p: p.stem)
def test_every_edge_profile_validates(path: Path) -> None:
    cfg = load_config(EdgeConfig, path)
    assert cfg.device.profile == path.stem
    assert cfg.finetune.memory_cap_mb < cfg.device.memory_mb
    assert cfg.budget.daily_bytes > 0 and cfg.finetune.lambda_h > 0
    assert cfg.gateway.endpoint.startswith("tcp://")
    assert cfg.gateway.client_secret_key.is_absolute()


def test_the_example_gateway_config_validates() -> None:
    cfg = load_config(GatewayConfig, ROOT / "firmware_configs" / "gateway.toml")
    assert cfg.model.base == "smollm2-135m"
    assert cfg.limits.max_frame_bytes == 1 << 20


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    cfg = load_config(EdgeConfig, write(tmp_path, MINIMAL_EDGE))
    assert cfg.device.data_dir == tmp_path / "state"
    assert cfg.gateway.server_public_key == tmp_path / "keys" / "server.key"
    assert isinstance(cfg.sources[0], SimulatorSource)
    assert cfg.finetune.targets == ("q_proj", "v_proj", "up_proj", "down_proj")  # defaults apply


def test_tagged_sources_pick_their_type(tmp_path: Path) -> None:
    text = (
        MINIMAL_EDGE
        + """
[[sources]]
type = "http"
port = 9000

[[sources]]
type = "mqtt"
  [[sources.topics]]
  topic = "zigbee2mqtt/lamp"
  entity_id = "light.home1_lamp"
  fields = { brightness = "brightness" }
"""
    )
    cfg = load_config(EdgeConfig, write(tmp_path, text))
    assert isinstance(cfg.sources[1], HttpSource) and cfg.sources[1].port == 9000
    mqtt = cfg.sources[2]
    assert isinstance(mqtt, MqttSource) and mqtt.topics[0].fields == {"brightness": "brightness"}


@pytest.mark.parametrize(
    ("edit", "key", "fragment"),
    [
        (lambda t: t.replace('profile = "test"\n', ""), "device.profile", "missing required key"),
        (
            lambda t: t.replace("memory_mb = 4096", 'memory_mb = "4 GB"'),
            "device.memory_mb",
            "expected an integer",
        ),
        (lambda t: t.replace("cpu_cores = 2", "cpu_cores = 0"), "device.cpu_cores", "out of range [1, 256]"),
        (lambda t: t.replace("cpu_cores = 2", "cpu_cores = 2\ncolour = 3"), "device.colour", "unknown key"),
        (lambda t: t.replace('arch = "x86_64"', 'arch = "sparc"'), "device.arch", "must be one of"),
        (lambda t: t.replace("tcp://127.0.0.1:7455", "http://x"), "gateway.endpoint", "must match"),
        (
            lambda t: t.replace('type = "simulator"', 'type = "carrier-pigeon"'),
            "sources[0].type",
            "must be one of",
        ),
        (lambda t: t.replace("home = 1", "home = 4"), "sources[0].home", "must be <= homes"),
        (lambda t: t + "[finetune]\nthreads = 8\n", "finetune.threads", "cpu_cores"),
        (lambda t: t + "[finetune]\nalpha = nan\n", "finetune.alpha", "finite"),
        (lambda t: t + "[finetune]\ntargets = []\n", "finetune.targets", "length 0"),
        (lambda t: t + '[finetune]\nadapter_dtype = "int3"\n', "finetune.adapter_dtype", "must be one of"),
        (
            lambda t: "sources = []\n" + t.replace('[[sources]]\ntype = "simulator"\nhome = 1\n', ""),
            "sources",
            "length 0",
        ),
    ],
)
def test_errors_name_file_key_and_value(tmp_path: Path, edit: object, key: str, fragment: str) -> None:
    path = write(tmp_path, edit(MINIMAL_EDGE))  # type: ignore[operator]
    with pytest.raises(ConfigError) as info:
        load_config(EdgeConfig, path)
    assert info.value.file == str(path)
    assert info.value.key == key
    assert fragment in info.value.reason
    assert str(path) in str(info.value) and key in str(info.value)


def test_bad_value_is_shown(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL_EDGE.replace("cpu_cores = 2", "cpu_cores = 999"))
    with pytest.raises(ConfigError, match=r"device\.cpu_cores = 999: out of range"):
        load_config(EdgeConfig, path)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(EdgeConfig, tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(EdgeConfig, write(tmp_path, "[device\n"))


def test_gateway_cross_field_rule(tmp_path: Path) -> None:
    text = """
[server]
bind = "tcp://127.0.0.1:7455"
server_secret_key = "k"
tenants_dir = "t"
[storage]
data_dir = "d"
[admission]
max_inflight_per_tenant = 10
queue_cap = 5
"""
    with pytest.raises(ConfigError) as info:
        load_config(GatewayConfig, write(tmp_path, text, "gateway.toml"))
    assert info.value.key == "admission.queue_cap"


def test_codec_limits_are_validated_in_gateway_config(tmp_path: Path) -> None:
    text = """
[server]
bind = "tcp://127.0.0.1:7455"
server_secret_key = "k"
tenants_dir = "t"
[storage]
data_dir = "d"
[limits]
max_frame_bytes = 4096
max_body_bytes = 8192
"""
    with pytest.raises(ConfigError) as info:
        load_config(GatewayConfig, write(tmp_path, text, "gateway.toml"))
    assert info.value.key == "limits.max_body_bytes"


def test_describe_detects_the_kind(tmp_path: Path) -> None:
    assert describe(write(tmp_path, MINIMAL_EDGE)).startswith("edge profile 'test'")
    with pytest.raises(ConfigError, match="neither an edge profile"):
        describe(write(tmp_path, "[other]\nx = 1\n", "x.toml"))


def test_the_systemd_unit_is_hardened() -> None:
    unit: dict[str, str] = {}
    for line in (ROOT / "firmware_configs" / "llmtwin-edge.service").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            unit[key.strip()] = value.strip()
    expected = {
        "Type": "notify", "DynamicUser": "yes", "StateDirectory": "llmtwin", "ProtectSystem": "strict",
        "NoNewPrivileges": "yes", "IPAccounting": "yes", "ProtectHome": "yes", "PrivateTmp": "yes",
    }
    assert {k: unit.get(k) for k in expected} == expected
    assert unit["ExecStart"].endswith("llmtwin edge --config /etc/llmtwin/edge.toml")
    assert int(unit["WatchdogSec"]) > 0 and unit["MemoryMax"] and unit["CPUQuota"]
    assert unit["ExecReload"] == "/bin/kill -HUP $MAINPID"  # SIGHUP reloads the profile
