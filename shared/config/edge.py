"""Edge daemon configuration (one device profile per file in ``firmware_configs/``).

Times are seconds (``*_s``) or hours (``*_h``), sizes bytes (``*_bytes``) or MiB (``*_mb``).
Relative paths resolve against the config file's folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from shared.modelspec import DEFAULT_LORA_TARGETS
from shared.protocol.messages import TWIN_ID_RE
from shared.typed import FieldError, Length, Pattern, Range

Seconds = Annotated[float, Range(0.001, 30 * 86400)]
Port = Annotated[int, Range(1, 65535)]
AdapterDtype = Literal["float32", "float16", "int8", "int4"]  # shared.adapter_codec.STORED_DTYPES
ZMQ_ENDPOINT = r"tcp://[A-Za-z0-9_.\-\[\]:*]+:([0-9]{1,5}|\*)"
ENTITY_ID = r"[a-z0-9_]+\.[a-z0-9_]+"


@dataclass(frozen=True, slots=True)
class DeviceSection:
    twin_id: Annotated[str, Length(1, 64), Pattern(TWIN_ID_RE)]
    profile: Annotated[str, Length(1, 64)]
    arch: Literal["x86_64", "aarch64", "armv7l"]
    memory_mb: Annotated[int, Range(256, 1 << 20)]
    cpu_cores: Annotated[int, Range(1, 256)]
    data_dir: Path


@dataclass(frozen=True, slots=True)
class GatewayLink:
    endpoint: Annotated[str, Length(1, 256), Pattern(ZMQ_ENDPOINT)]
    server_public_key: Path  # zmq.auth certificate of the gateway (public part)
    client_secret_key: Path  # this device's zmq.auth secret certificate (mode 0600)
    request_timeout_s: Seconds = 30.0
    backoff_initial_s: Seconds = 1.0
    backoff_max_s: Seconds = 300.0

    def validate(self) -> None:
        if self.backoff_max_s < self.backoff_initial_s:
            raise FieldError("backoff_max_s", self.backoff_max_s, "must be >= backoff_initial_s")


@dataclass(frozen=True, slots=True)
class Sampling:
    tick_s: Seconds = 10.0  # compressor tick: how often changed state is turned into a prompt
    keyframe_every_s: Seconds = 3600.0  # a full-state prompt so the gateway can resync
    history_retention_h: Annotated[float, Range(1, 24 * 365)] = 72.0


@dataclass(frozen=True, slots=True)
class SimulatorSource:
    type: Literal["simulator"]
    home: Annotated[int, Range(1, 500)] = 1  # which home of the scenario this device is
    seed: Annotated[int, Range(0, 2**31)] = 7
    homes: Annotated[int, Range(1, 500)] = 3
    speed: Annotated[float, Range(0.001, 100_000)] = 1.0  # simulated seconds per real second
    start_h: Annotated[float, Range(0.0, 24.0 * 31)] = 0.0  # start the replay this far into the scenario

    def validate(self) -> None:
        if self.home > self.homes:
            raise FieldError("home", self.home, f"must be <= homes ({self.homes})")


@dataclass(frozen=True, slots=True)
class MqttTopic:
    topic: Annotated[str, Length(1, 256)]
    entity_id: Annotated[str, Length(3, 255), Pattern(ENTITY_ID)]
    style: Literal["zigbee2mqtt", "tasmota", "plain"] = "zigbee2mqtt"
    # JSON key in the payload -> entity attribute ("state" for the main state)
    fields: Annotated[dict[str, Annotated[str, Length(1, 64)]], Length(0, 64)] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MqttSource:
    type: Literal["mqtt"]
    host: Annotated[str, Length(1, 255)] = "127.0.0.1"
    port: Port = 1883
    client_id: Annotated[str, Length(0, 64)] = ""
    topics: Annotated[tuple[MqttTopic, ...], Length(1, 4096)] = ()


@dataclass(frozen=True, slots=True)
class HttpSource:
    type: Literal["http"]
    host: Annotated[str, Length(1, 255)] = "127.0.0.1"
    port: Annotated[int, Range(0, 65535)] = 8124  # 0: pick a free port
    max_body_bytes: Annotated[int, Range(1024, 16 << 20)] = 1 << 20
    token_file: Path | None = None


@dataclass(frozen=True, slots=True)
class HomeAssistantSource:
    type: Literal["homeassistant"]
    url: Annotated[str, Length(1, 512), Pattern(r"https?://\S+")]
    token_file: Path
    mode: Literal["websocket", "rest"] = "websocket"
    poll_s: Seconds = 30.0
    entities: Annotated[tuple[Annotated[str, Pattern(ENTITY_ID)], ...], Length(0, 10_000)] = ()


@dataclass(frozen=True, slots=True)
class HostSource:
    type: Literal["host"]
    period_s: Seconds = 60.0
    hwmon_root: Path = Path("/sys/class/hwmon")
    disks: Annotated[tuple[Path, ...], Length(0, 32)] = (Path("/"),)


Source = SimulatorSource | MqttSource | HttpSource | HomeAssistantSource | HostSource


@dataclass(frozen=True, slots=True)
class StateSection:
    """Which attributes are static (fine-tuned) or sensitive (never sent), beyond scenario markings."""

    share: Literal["private", "group", "region"] = "private"  # who may see this twin's state prompts
    static_attributes: Annotated[tuple[str, ...], Length(0, 1024)] = ()
    sensitive_attributes: Annotated[tuple[str, ...], Length(0, 1024)] = ()
    deadbands: Annotated[dict[str, Annotated[float, Range(0, 1e9)]], Length(0, 256)] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FinetuneSection:
    """λ-periodic LoRA rounds and the budget a round may use on this device."""

    enabled: bool = True
    base: Annotated[str, Length(1, 4096)] = "smollm2-135m"  # a builtin base name or a local model path
    model_cache: Path | None = None  # where `llmtwin model prepare` put it (default: the user cache)
    lambda_h: Annotated[float, Range(0.01, 24 * 365)] = 24.0
    threads: Annotated[int, Range(1, 256)] = 2
    niceness: Annotated[int, Range(0, 19)] = 10
    memory_cap_mb: Annotated[int, Range(256, 1 << 20)] = 1536
    max_steps: Annotated[int, Range(1, 1_000_000)] = 1000  # a cap; max_time_s is what bounds a round
    max_time_s: Seconds = 300.0
    rank: Annotated[int, Range(1, 64)] = 8
    alpha: Annotated[float, Range(0.01, 1024)] = 16.0
    targets: Annotated[tuple[str, ...], Length(1, 16)] = DEFAULT_LORA_TARGETS
    eval_threshold: Annotated[float, Range(0.0, 1.0)] = 0.9
    static_change_threshold: Annotated[float, Range(0.0, 1.0)] = 0.05
    # still gaining a point a round (below the gate, or past it on the same facts): the next round runs after
    # this pause instead of λ, at most catchup_rounds in a row (edge.trainer)
    catchup_rounds: Annotated[int, Range(0, 1000)] = 12
    catchup_pause_s: Seconds = 600.0
    keep_versions: Annotated[int, Range(1, 100)] = 3
    seed: Annotated[int, Range(0, 2**31)] = 0
    # how the adapter is stored and uploaded (shared.adapter_codec); the eval gate scores the adapter after
    # this rounding, so what it accepts is what the gateway serves. int4 is a quarter of float16 on the wire;
    # on SmolLM2-135M its held-out accuracy stayed within sampling noise of float16 (README, Fine-tuning)
    adapter_dtype: AdapterDtype = "int4"
    # train on keyed pseudonyms of the objects' names (shared.pseudonyms): the state prompts and readings name
    # "home1 vetopila light", the static facts "home1 kisufa device", never "home1 kitchen ceiling light"; the
    # key and the table stay in device.data_dir, and `llmtwin query --config` rewrites questions and answers
    pseudonyms: bool = False


@dataclass(frozen=True, slots=True)
class BudgetSection:
    daily_bytes: Annotated[int, Range(1024, 1 << 40)] = 5_000_000


@dataclass(frozen=True, slots=True)
class AdminSection:
    host: Annotated[str, Length(1, 255)] = "127.0.0.1"
    port: Annotated[int, Range(0, 65535)] = 8765  # 0: pick a free port


@dataclass(frozen=True, slots=True)
class LogSection:
    bandwidth_log: Path | None = None  # default: <device.data_dir>/bandwidth.jsonl
    # opt-in, for audits (leak scans): every payload sent, plain, before compression and encryption
    # (format: shared.capture). Unset (the default): nothing is captured.
    payload_capture: Path | None = None
    max_bytes: Annotated[int, Range(4096, 1 << 40)] = 10_000_000
    backups: Annotated[int, Range(0, 1000)] = 5


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    device: DeviceSection
    gateway: GatewayLink
    sources: Annotated[tuple[Source, ...], Length(1, 64)]
    sampling: Sampling = Sampling()
    state: StateSection = StateSection()
    finetune: FinetuneSection = FinetuneSection()
    budget: BudgetSection = BudgetSection()
    admin: AdminSection = AdminSection()
    log: LogSection = LogSection()

    def validate(self) -> None:
        if self.finetune.threads > self.device.cpu_cores:
            raise FieldError(
                "finetune.threads",
                self.finetune.threads,
                f"more than the device's cpu_cores ({self.device.cpu_cores})",
            )
        if self.finetune.memory_cap_mb >= self.device.memory_mb:
            raise FieldError(
                "finetune.memory_cap_mb",
                self.finetune.memory_cap_mb,
                f"must leave memory for the daemon (device has {self.device.memory_mb} MiB)",
            )
