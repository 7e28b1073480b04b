"""`sciot-mqtt` command line: the entry point; each command group lives in its own `cli.py`
(`service/cli.py`: `up`, `device/cli.py`: `device`, `models/`, `swarm/`, `bench/`, `creds/`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from sciot_mqtt import __version__
from sciot_mqtt.errors import SciotError
from sciot_mqtt.models.errors import ModelError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sciot-mqtt", description="MQTT-native edge service for split computing of TinyML"
    )
    parser.add_argument("--version", action="version", version=f"sciot-mqtt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    from sciot_mqtt.service.cli import add_up_parser

    add_up_parser(sub)
    from sciot_mqtt.device.cli import add_device_parser

    add_device_parser(sub)
    from sciot_mqtt.models.cli import add_models_parser

    add_models_parser(sub)
    from sciot_mqtt.swarm.cli import add_swarm_parser

    add_swarm_parser(sub)
    from sciot_mqtt.bench.cli import add_bench_parser

    add_bench_parser(sub)
    from sciot_mqtt.creds.cli import add_creds_parser

    add_creds_parser(sub)
    from sciot_mqtt.health import add_health_parser

    add_health_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except ValidationError as exc:
        print(f"sciot-mqtt: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    except (SciotError, ModelError) as exc:
        print(f"sciot-mqtt: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
