"""Render topics.md's tables from the message models, so the document cannot drift.

python -m sciot_mqtt.protocol.docs --write topics.md   # regenerate
python -m sciot_mqtt.protocol.docs --check topics.md   # exit 1 if out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sciot_mqtt.errors import ErrorCode
from sciot_mqtt.protocol.catalog import ALL_MESSAGES
from sciot_mqtt.protocol.codec import Message
from sciot_mqtt.protocol.topics import ADDRESSED, NAMESPACE, DeviceTopic

BEGIN = "<!-- BEGIN GENERATED: {name} (python -m sciot_mqtt.protocol.docs --write topics.md) -->"
END = "<!-- END GENERATED: {name} -->"


def _topic_pattern(message: type[Message]) -> str:
    if isinstance(message.TOPIC, DeviceTopic):
        to = "/{instance}" if message.TOPIC in ADDRESSED else ""
        return f"`{NAMESPACE}/dev/{{id}}/{message.TOPIC.value}{to}`"
    return f"`{NAMESPACE}/service/{{instance}}/{message.TOPIC.value}`"


def _type_of(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    if "anyOf" in prop:
        kinds = [_type_of(p, defs) for p in prop["anyOf"] if p.get("type") != "null"]
        return " or ".join(kinds)
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        target = defs[name]
        if "enum" in target:
            return "str, one of " + ", ".join(f"`{v}`" for v in target["enum"])
        return f"map ({name})"
    if "const" in prop:
        return f"str `{prop['const']}`"
    if "enum" in prop:
        return "str, one of " + ", ".join(f"`{v}`" for v in prop["enum"])
    raw_kind = str(prop.get("type", "?"))
    kind = {"integer": "int", "number": "float", "string": "str", "boolean": "bool"}.get(
        raw_kind, raw_kind
    )
    if kind == "str" and prop.get("format") == "binary":
        kind = "bytes"  # msgpack bin on the wire, not a UTF-8 string
    if kind == "array":
        kind = f"array of {_type_of(prop.get('items', {}), defs)}"
    limits = []
    for key, text in (
        ("minimum", ">= {}"),
        ("exclusiveMinimum", "> {}"),
        ("maximum", "<= {}"),
        ("exclusiveMaximum", "< {}"),
        ("maxLength", "len <= {}"),
        ("minItems", "items >= {}"),
        ("maxItems", "items <= {}"),
    ):
        if key in prop:
            value = prop[key]
            if isinstance(value, float) and value.is_integer():
                value = int(value)  # 10000000, not 10000000.0
            text = text.format(value)
            limits.append(text.replace("4294967295", "2^32-1"))
    if "pattern" in prop:
        limits.append(f"pattern `{prop['pattern']}`")
    return kind + (f" ({', '.join(limits)})" if limits else "")


def _fields_table(schema: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    rows = ["| field | type | required | meaning |", "|---|---|---|---|"]
    for name, prop in schema.get("properties", {}).items():
        description = prop.get("description", "")
        rows.append(
            f"| `{name}` | {_type_of(prop, defs)} | {'yes' if name in required else 'no'} "
            f"| {description} |"
        )
    return rows


def render_topics() -> str:
    rows = [
        "| topic | from | QoS | retained | payload |",
        "|---|---|---|---|---|",
    ]
    for message in ALL_MESSAGES:
        name = message.__name__
        rows.append(
            f"| {_topic_pattern(message)} | {message.PUBLISHER} | {message.QOS} "
            f"| {'yes' if message.RETAIN else 'no'} | [{name}](#{name.lower()}) |"
        )
    return "\n".join(rows)


def render_payloads() -> str:
    out: list[str] = []
    for message in ALL_MESSAGES:
        schema = message.model_json_schema()
        defs = schema.get("$defs", {})
        doc = (message.__doc__ or "").strip().splitlines()[0]
        out += [
            f"### {message.__name__}",
            "",
            f"{_topic_pattern(message)}, from the {message.PUBLISHER}, QoS {message.QOS}, "
            f"{'retained' if message.RETAIN else 'not retained'}, "
            f"at most {message.MAX_BYTES} bytes. {doc}",
            "",
            *_fields_table(schema, defs),
            "",
        ]
        for name, sub in defs.items():
            if "properties" in sub:
                out += [f"`{name}`:", "", *_fields_table(sub, defs), ""]
    return "\n".join(out).rstrip()


def render_error_codes() -> str:
    rows = ["| code | meaning |", "|---|---|"]
    meanings = {
        ErrorCode.MALFORMED: "not msgpack, not a map, or not valid UTF-8",
        ErrorCode.INVALID: "a field is missing, of the wrong type or out of range",
        ErrorCode.TOO_LARGE: "payload over the topic's size limit",
        ErrorCode.UNSUPPORTED_VERSION: "`protocol` in birth is not one the service speaks",
        ErrorCode.INVALID_DEVICE_ID: "the `{id}` level is not a valid device id",
        ErrorCode.NO_MODEL: "none of the models in birth is served by this service",
        ErrorCode.NOT_REGISTERED: "inference from a device with no current birth here",
        ErrorCode.WRONG_MODEL: "inference for a model other than the one assigned",
        ErrorCode.BAD_SPLIT: "split point outside 0..N of the model",
        ErrorCode.TENSOR_MISMATCH: "tensors differ from the manifest at that split "
        "(names, dtype, shape, quantization or byte count)",
        ErrorCode.OVERLOADED: "the inference queue is full; the device should run it locally",
        ErrorCode.DEVICE_LIMIT: "the service holds `max_devices` devices, none of them offline; "
        "the device runs locally (and may try again after a while)",
        ErrorCode.INTERNAL: "the service failed on a valid message (a bug; it is logged)",
    }
    for code in ErrorCode:
        rows.append(f"| `{code.value}` | {meanings[code]} |")
    return "\n".join(rows)


SECTIONS = {
    "topics": render_topics,
    "payloads": render_payloads,
    "error-codes": render_error_codes,
}


def update(text: str) -> str:
    """`text` with every generated section replaced by its current rendering."""
    for name, render in SECTIONS.items():
        begin, end = BEGIN.format(name=name), END.format(name=name)
        if begin not in text or end not in text:
            raise ValueError(f"topics.md lacks the markers of section {name!r}")
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{begin}\n{render()}\n{end}{tail}"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", type=Path, metavar="FILE")
    mode.add_argument("--check", type=Path, metavar="FILE")
    args = parser.parse_args(argv)
    path: Path = args.write or args.check
    current = path.read_text()
    wanted = update(current)
    if args.write:
        path.write_text(wanted)
        return 0
    if wanted != current:
        print(f"{path} is out of date: run python -m sciot_mqtt.protocol.docs --write {path}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
