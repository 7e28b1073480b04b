"""Settings of the service and the device: CLI flags, `SCIOT_...` environment, or `.env`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from sciot_mqtt.errors import ConfigurationError
from sciot_mqtt.logs import LogFormat
from sciot_mqtt.protocol.accounts import health_client_id, service_client_id
from sciot_mqtt.protocol.service_messages import (
    Placement,
    Tier,
)
from sciot_mqtt.protocol.topics import DEVICE_ID_PATTERN
from sciot_mqtt.transport import BrokerAddress, Credentials, TlsConfig

ModelList = Annotated[list[str], NoDecode]


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _read_password(password: SecretStr | None, password_file: str | None) -> str | None:
    """The password given directly, or the first line of `password_file` (Docker secrets)."""
    if password is not None:
        return password.get_secret_value()
    if password_file is None:
        return None
    try:
        lines = Path(password_file).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the password file {password_file}: {exc}") from exc
    if not lines or not lines[0]:
        raise ConfigurationError(f"the password file {password_file} is empty")
    return lines[0]


def _tls(ca: str | None, cert: str | None, key: str | None) -> TlsConfig | None:
    if ca is None and cert is None:
        return None
    if (cert is None) != (key is None):
        raise ConfigurationError("a TLS client certificate needs both tls_cert and tls_key")
    return TlsConfig(ca_file=ca, cert_file=cert, key_file=key)


class ServiceSettings(BaseSettings):
    """`sciot-mqtt up`. Environment: `SCIOT_<NAME>`, e.g. `SCIOT_PORT=1884`."""

    model_config = SettingsConfigDict(env_prefix="SCIOT_", env_file=".env", extra="ignore")

    host: str = Field("127.0.0.1", description="broker host (embedded: address it binds)")
    port: int = Field(1883, ge=0, le=65535, description="broker port (embedded: 0 = any free)")
    external_broker: bool = Field(False, description="connect to a running broker instead")
    instance: str = Field("edge", pattern=DEVICE_ID_PATTERN.pattern, description="service name")
    heartbeat_interval: float = Field(5.0, gt=0, le=3600, description="told to devices (s)")
    missed_heartbeats: int = Field(3, ge=1, description="missed intervals before `stale`")
    offline_grace: float = Field(15.0, ge=0, description="seconds stale before `offline`")
    stats_interval: float = Field(5.0, gt=0, description="seconds between `stats` messages")
    models: ModelList = Field(["fomo96"], description="models served, in order of preference")
    max_payload: int = Field(262_144, ge=4096, description="largest accepted payload (bytes)")
    keepalive: int = Field(10, ge=1, le=65535, description="MQTT keepalive (s)")
    split: int | None = Field(
        None, ge=0, description="pin one split for every device; unset: decide per device"
    )
    ema_alpha: float = Field(0.2, gt=0, le=1, description="weight of a new timing sample")
    hysteresis_rel: float = Field(0.10, ge=0, description="relative gain needed to move split")
    hysteresis_ms: float = Field(1.0, ge=0, description="absolute gain needed to move (ms)")
    variance_window: int = Field(10, ge=3, description="per-operator samples for variance")
    variance_cv: float = Field(0.15, gt=0, description="CV marking an operator unstable")
    measure_budget: float = Field(
        0.1, ge=0, le=1, description="share of a device's inference time measuring may cost"
    )
    explain_interval: float = Field(
        10.0,
        gt=0,
        description="seconds between a device's explanations when only predictions moved",
    )
    workers: int = Field(2, ge=1, le=64, description="threads running model tails")
    max_pending: int = Field(256, ge=1, description="inferences queued before `overloaded`")
    max_batch: int = Field(
        8, ge=1, le=32, description="waiting tails of one split run in one invoke, at most"
    )
    max_devices: int = Field(
        10_000, ge=1, description="devices held at most; births beyond get `device_limit`"
    )
    evict_after: float = Field(
        3600.0, gt=0, description="seconds a device stays offline before it is forgotten"
    )
    reply_rate: float = Field(
        500.0,
        gt=0,
        description="rebirth commands, error, pong and echo replies per second, all devices",
    )
    placement: Placement = Field(
        "hash", description="how a fleet places devices: hash, least-loaded or tiered"
    )
    capacity: float = Field(
        1.0, gt=0, le=1e6, description="this instance's weight in the placement"
    )
    tier: Tier = Field("edge", description="`tiered`: edge or cloud")
    tier_high: float = Field(
        4.0, gt=0, description="`tiered`: requests in flight per capacity making an edge busy"
    )
    tier_low: float = Field(
        1.0, ge=0, description="`tiered`: below this an edge instance has room again"
    )
    handover_timeout: float = Field(
        5.0, ge=0, description="a clean stop waits this long for the fleet to take its devices"
    )
    model_cache: str | None = Field(None, description="prepared-model cache directory")
    log_level: str = Field("info", description="debug, info, warning, error")
    log_format: LogFormat = Field("auto", description="auto, json or console")
    credentials_file: str | None = Field(
        None, description="embedded broker: password file; enables logins and ACLs"
    )
    password: SecretStr | None = Field(
        None, description="password of the instance's account, sciot-service-INSTANCE"
    )
    password_file: str | None = Field(None, description="file holding its password")
    health_password: SecretStr | None = Field(
        None, description="`health`: password of the account sciot-health-INSTANCE"
    )
    health_password_file: str | None = Field(None, description="file holding that password")
    tls_ca: str | None = Field(None, description="CA file: connect with TLS, trusting it")
    tls_cert: str | None = Field(None, description="client certificate (PEM)")
    tls_key: str | None = Field(None, description="client key (PEM)")

    _split_models = field_validator("models", mode="before")(_split_list)

    @property
    def account(self) -> str:
        """The instance's broker account, which is also its client id."""
        return service_client_id(self.instance)

    def broker_credentials(self) -> Credentials | None:
        password = _read_password(self.password, self.password_file)
        return Credentials(self.account, password) if password is not None else None

    def health_credentials(self) -> Credentials | None:
        """The login of `sciot-mqtt health`: an account of its own, so that checking never
        takes over the service's session (a client id is bound to its account)."""
        password = _read_password(self.health_password, self.health_password_file)
        return (
            Credentials(health_client_id(self.instance), password) if password is not None else None
        )

    def broker_tls(self) -> TlsConfig | None:
        return _tls(self.tls_ca, self.tls_cert, self.tls_key)


class DeviceSettings(BaseSettings):
    """`sciot-mqtt device`. Environment: `SCIOT_DEVICE_<NAME>`."""

    model_config = SettingsConfigDict(
        env_prefix="SCIOT_DEVICE_", env_file=".env", extra="ignore", populate_by_name=True
    )

    id: str = Field("device-1", pattern=DEVICE_ID_PATTERN.pattern, description="device id")
    host: str = Field("127.0.0.1", description="broker host")
    port: int = Field(1883, ge=1, le=65535, description="broker port")
    kind: str = Field("python", max_length=64, description="device kind announced in birth")
    models: ModelList = Field(["fomo96"], description="models this device carries")
    max_payload: int = Field(262_144, ge=256, description="largest payload it accepts (bytes)")
    heartbeat_interval: float = Field(5.0, gt=0, description="until `assign` says otherwise (s)")
    keepalive: int = Field(10, ge=1, le=65535, description="MQTT keepalive (s)")
    reconnect_min: float = Field(0.2, gt=0, description="first reconnect delay (s)")
    reconnect_max: float = Field(2.0, gt=0, description="longest reconnect delay (s)")
    network: str = Field("loopback", description="link profile or schedule to emulate")
    profile: str = Field("host", description="compute profile: host, esp32s3[:scale], file")
    emulation_seed: int = Field(0, description="seed of the link and compute emulation")
    split: int | None = Field(None, ge=0, description="pin the split point (testing)")
    result_timeout: float = Field(5.0, gt=0, description="wait for a result before local (s)")
    # One variable for every command; SCIOT_DEVICE_MODEL_CACHE is its deprecated old name.
    model_cache: str | None = Field(
        None,
        description="prepared-model cache directory",
        validation_alias=AliasChoices("SCIOT_MODEL_CACHE", "SCIOT_DEVICE_MODEL_CACHE"),
    )
    log_level: str = Field("info", description="as for the service")
    log_format: LogFormat = Field("auto", description="as for the service")
    password: SecretStr | None = Field(None, description="broker password (username = id)")
    password_file: str | None = Field(None, description="file holding the password")
    tls_ca: str | None = Field(None, description="CA file: connect with TLS, trusting it")
    tls_cert: str | None = Field(None, description="client certificate (PEM)")
    tls_key: str | None = Field(None, description="client key (PEM)")

    _split_models = field_validator("models", mode="before")(_split_list)

    def broker_address(self) -> BrokerAddress:
        """The broker, with this device's login (its id) when a password is set."""
        password = _read_password(self.password, self.password_file)
        return BrokerAddress(
            self.host,
            self.port,
            tls=_tls(self.tls_ca, self.tls_cert, self.tls_key),
            credentials=Credentials(self.id, password) if password is not None else None,
        )
