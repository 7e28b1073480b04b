"""`sciot-mqtt creds add|remove|list`: manage the broker password file."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from sciot_mqtt.creds.passwd import (
    DEFAULT_CREDENTIALS_FILE,
    CredentialsError,
    PasswordFile,
    check_account_name,
    generate_password,
)
from sciot_mqtt.protocol.accounts import Role, parse_account

ENV_FILE = "SCIOT_CREDENTIALS_FILE"


def add_creds_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "creds",
        help="manage broker accounts (a Mosquitto password file both brokers read)",
        description="Accounts are device ids, sciot-service-INSTANCE for each service instance "
        "and sciot-health-INSTANCE for its health check; a client's id is its account name. "
        f"The file is Mosquitto 2's password_file format. Default file: ${ENV_FILE}, else "
        f"{DEFAULT_CREDENTIALS_FILE} (what compose.yaml mounts).",
    )
    p.add_argument(
        "--file", type=Path, help=f"password file (${ENV_FILE} or {DEFAULT_CREDENTIALS_FILE})"
    )
    actions = p.add_subparsers(dest="creds_action", required=True)

    add = actions.add_parser("add", help="add an account or change its password")
    add.add_argument("account", help="device id, sciot-service-INSTANCE, or sciot-health-INSTANCE")
    source = add.add_mutually_exclusive_group()
    source.add_argument("--password", help="the password (visible in the process list)")
    source.add_argument("--password-file", type=Path, help="read the password from this file")
    source.add_argument(
        "--generate", action="store_true", help="generate a password and print it once"
    )
    add.set_defaults(handler=_cmd_add)

    remove = actions.add_parser("remove", help="remove an account")
    remove.add_argument("account")
    remove.set_defaults(handler=_cmd_remove)

    show = actions.add_parser("list", help="list the accounts (never the hashes)")
    show.add_argument("account", nargs="?", help="only this account (exit 1 if absent)")
    show.set_defaults(handler=_cmd_list)


def _file(args: argparse.Namespace) -> Path:
    if args.file is not None:
        return Path(args.file)
    return Path(os.environ.get(ENV_FILE) or DEFAULT_CREDENTIALS_FILE)


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """The new password, and whether it was generated (then it is printed)."""
    if args.password is not None:
        return args.password, False
    if args.password_file is not None:
        try:
            lines = args.password_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise CredentialsError(f"cannot read {args.password_file}: {exc}") from exc
        return (lines[0] if lines else ""), False
    if args.generate:
        return generate_password(), True
    if not sys.stdin.isatty():
        raise CredentialsError(
            "no terminal to ask on: give --password-file, --password or --generate"
        )
    first = getpass.getpass(f"password for {args.account}: ")
    if getpass.getpass("again: ") != first:
        raise CredentialsError("the passwords differ")
    return first, False


def _cmd_add(args: argparse.Namespace) -> int:
    account = check_account_name(args.account)
    path = _file(args)
    store = PasswordFile.load(path, missing_ok=True)
    password, generated = _password(args)
    replaced = args.account in store.entries
    store.add(args.account, password)
    store.save()
    if generated:
        # The only time it is shown: the file keeps a hash.
        print(password)
    verb = "changed the password of" if replaced else "added"
    print(f"{verb} {args.account} in {path}", file=sys.stderr)
    if not replaced and account.role is not Role.DEVICE:
        # Mosquitto's ACL names every service instance's accounts; the embedded broker
        # needs nothing more.
        instances = sorted(
            {
                found.scope
                for found in map(parse_account, store.accounts())
                if found is not None and found.role is not Role.DEVICE
            }
        )
        flags = " ".join(f"--instance {name}" for name in instances)
        print(
            f"for Mosquitto, give instance {account.scope} its ACL entries: "
            f"python -m sciot_mqtt.broker.acl --write mosquitto/acl {flags}",
            file=sys.stderr,
        )
    return 0


def _cmd_remove(args: argparse.Namespace) -> int:
    path = _file(args)
    store = PasswordFile.load(path)
    store.remove(args.account)
    store.save()
    print(f"removed {args.account} from {path}", file=sys.stderr)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    store = PasswordFile.load(_file(args), missing_ok=True)
    names = store.accounts()
    if args.account is not None:
        if args.account not in names:
            return 1
        names = [args.account]
    for name in names:
        print(name)
    return 0
