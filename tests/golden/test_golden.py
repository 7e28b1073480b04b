"""The golden vectors decode in Python as their names say (the C core checks the same files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sciot_mqtt.errors import ProtocolError
from tests.golden.make_golden import HERE, MESSAGE_TYPES, VALID, vectors

FILES = sorted(HERE.glob("*.msgpack"))


def test_vectors_are_current() -> None:
    """A change of the contract's encoding shows up as a diff of these files."""
    on_disk = {p.name: p.read_bytes() for p in FILES}
    assert on_disk == vectors(), "run python tests/golden/make_golden.py and review the diff"


def test_every_message_type_has_a_valid_vector() -> None:
    assert {p.name.split("__")[0] for p in FILES if p.name.endswith("__valid__ok.msgpack")} == set(
        MESSAGE_TYPES
    )


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_python_decodes_as_named(path: Path) -> None:
    message, case, expect = path.stem.split("__")
    cls = MESSAGE_TYPES[message]
    payload = path.read_bytes()
    if expect == "ok":
        decoded = cls.decode(payload)
        if case == "valid":
            assert decoded == VALID[message]
            assert decoded.encode() == payload
    else:
        with pytest.raises(ProtocolError) as raised:
            cls.decode(payload)
        assert raised.value.code.value == expect
