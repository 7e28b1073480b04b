"""The password file: Mosquitto's own format, the `creds` command, and live reloading.

That Mosquitto accepts the files written here is shown by every Mosquitto case of
test_access.py, which log in with them.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from sciot_mqtt.broker import EmbeddedBroker
from sciot_mqtt.creds import CredentialsError, PasswordFile, hash_password, verify_password
from sciot_mqtt.errors import ConnectionLostError
from sciot_mqtt.transport import BrokerAddress, Credentials, MqttSession


def test_hashes_of_mosquitto_passwd_verify(tmp_path: Path) -> None:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd not installed")
    path = tmp_path / "passwd"
    subprocess.run([tool, "-b", "-c", str(path), "cam-1", "s3cret pass"], check=True)
    subprocess.run([tool, "-b", str(path), "service", "other"], check=True)
    store = PasswordFile.load(path)
    assert store.accounts() == ["cam-1", "service"]
    assert store.verify("cam-1", "s3cret pass")
    assert not store.verify("cam-1", "s3cret pas")
    assert not store.verify("cam-1", "other")
    assert store.verify("service", "other")


def test_own_hashes_are_salted_and_reject_malformed_ones() -> None:
    first, second = hash_password("pw"), hash_password("pw")
    assert first != second and first.startswith("$7$101$")
    assert verify_password("pw", first) and verify_password("pw", second)
    for broken in ("", "pw", "$6$abc$def", "$7$x$AAAA$AAAA", "$7$101$!!$AAAA", first[:-8] + "$"):
        assert not verify_password("pw", broken)


def _creds(
    cli: list[str], env: dict[str, str], cwd: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cli, "creds", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_creds_command_adds_lists_and_removes(
    cli: list[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    # The default file, relative to the working directory, is where compose.yaml mounts it.
    default = tmp_path / "mosquitto" / "passwd"
    added = _creds(cli, cli_env, tmp_path, "add", "cam-1", "--generate")
    assert added.returncode == 0, added.stderr
    password = added.stdout.strip()
    assert len(password) >= 20 and "added cam-1" in added.stderr
    assert PasswordFile.load(default).verify("cam-1", password)
    assert default.stat().st_mode & 0o777 == 0o600

    secret = tmp_path / "service.password"
    secret.write_text("from-a-file\n")
    other = tmp_path / "elsewhere" / "passwd"
    env = cli_env | {"SCIOT_CREDENTIALS_FILE": str(other)}
    service = _creds(cli, env, tmp_path, "add", "sciot-service-b", "--password-file", str(secret))
    assert service.returncode == 0, service.stderr
    assert PasswordFile.load(other).verify("sciot-service-b", "from-a-file")
    assert "from-a-file" not in other.read_text()
    # A service instance's accounts need their lines in Mosquitto's ACL: the command says how.
    assert "python -m sciot_mqtt.broker.acl --write mosquitto/acl --instance b" in service.stderr
    health = _creds(cli, env, tmp_path, "add", "sciot-health-a", "--password", "h")
    assert health.returncode == 0, health.stderr
    assert "--instance a --instance b" in health.stderr

    for bad_name in ("cam/2", "sciot-dev-x", "sciot-service-", "sciot-service-a/b"):
        bad = _creds(cli, cli_env, tmp_path, "add", bad_name, "--password", "x")
        assert bad.returncode == 1 and "is no account name" in bad.stderr, bad_name
    no_tty = _creds(cli, cli_env, tmp_path, "add", "cam-2")
    assert no_tty.returncode == 1 and "--generate" in no_tty.stderr

    assert _creds(cli, cli_env, tmp_path, "add", "cam-2", "--password", "pw2").returncode == 0
    listed = _creds(cli, cli_env, tmp_path, "--file", str(default), "list")
    assert listed.stdout.split() == ["cam-1", "cam-2"] and "$7$" not in listed.stdout
    assert _creds(cli, cli_env, tmp_path, "remove", "cam-1").returncode == 0
    assert _creds(cli, cli_env, tmp_path, "list", "cam-1").returncode == 1
    assert _creds(cli, cli_env, tmp_path, "list", "cam-2").stdout.strip() == "cam-2"
    gone = _creds(cli, cli_env, tmp_path, "remove", "cam-1")
    assert gone.returncode == 1 and "no account 'cam-1'" in gone.stderr


def test_malformed_password_file_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    path.write_text("# comment\ncam-1:$7$101$AAAA$AAAA\nno-colon-here\n")
    with pytest.raises(CredentialsError, match=r"passwd:3: expected `user:hash`"):
        PasswordFile.load(path)


async def test_embedded_broker_takes_new_accounts_without_restart(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    store = PasswordFile.load(path, missing_ok=True)
    store.add("cam-1", "first")
    store.save()
    async with EmbeddedBroker(port=0, credentials_file=path) as broker:

        def login(user: str, password: str) -> BrokerAddress:
            return dataclasses.replace(broker.address, credentials=Credentials(user, password))

        async with MqttSession(login("cam-1", "first"), client_id="cam-1"):
            pass
        store.add("cam-2", "second")
        store.add("cam-1", "changed")
        store.save()
        async with MqttSession(login("cam-2", "second"), client_id="cam-2"):
            pass
        with pytest.raises(ConnectionLostError, match="refused"):
            async with MqttSession(login("cam-1", "first"), client_id="cam-1"):
                pass
