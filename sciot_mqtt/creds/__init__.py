"""Broker credentials: one password file that Mosquitto and the embedded broker both read.

The file is Mosquitto 2's format (`user:$7$101$salt$hash`, PBKDF2-SHA512, as
`mosquitto_passwd` writes it), so `mosquitto` itself can load it and `sciot-mqtt creds` can
manage it without the Mosquitto tools installed.
"""

from sciot_mqtt.creds.passwd import (
    DEFAULT_CREDENTIALS_FILE,
    CredentialsError,
    PasswordFile,
    check_account_name,
    generate_password,
    hash_password,
    verify_password,
)

__all__ = [
    "DEFAULT_CREDENTIALS_FILE",
    "CredentialsError",
    "PasswordFile",
    "check_account_name",
    "generate_password",
    "hash_password",
    "verify_password",
]
