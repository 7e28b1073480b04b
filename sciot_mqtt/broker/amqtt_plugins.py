"""amqtt plugins that make the embedded broker enforce what Mosquitto does with the shipped
password file and ACL file: the same accounts (`sciot_mqtt.creds`) and the same rules
(`sciot_mqtt.broker.acl`). Loaded by `EmbeddedBroker` when it has a credentials file.

amqtt's own plugins do not fit: its file plugin reads only Argon2/bcrypt hashes, and its ACL
plugin has no per-user substitution, checks no will topic, and sends retained messages on
subscribing without asking the topic plugins; hence the subscription coverage rule in
`acl.allowed()` and the will check at login.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from sciot_mqtt.broker.acl import Access, allowed
from sciot_mqtt.creds import CredentialsError, PasswordFile
from sciot_mqtt.protocol.accounts import parse_account

_log = logging.getLogger("sciot.broker.access")


class _Accounts:
    """The password file, read again whenever it changes, so `sciot-mqtt creds add` takes
    effect at the next login, as a SIGHUP does for Mosquitto."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp: tuple[int, int, int] | None = None
        self._file = PasswordFile.load(path)  # fails at start-up if unreadable
        self._stamp = self._current_stamp()

    def _current_stamp(self) -> tuple[int, int, int] | None:
        try:
            stat = os.stat(self._path)
        except OSError:
            return None
        # The inode too: `creds` replaces the file, which two quick saves may not show in
        # the modification time.
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    def verify(self, username: str, password: str) -> bool:
        stamp = self._current_stamp()
        if stamp is not None and stamp != self._stamp:
            try:
                self._file = PasswordFile.load(self._path)
                self._stamp = stamp
            except CredentialsError as exc:
                # Keep the accounts we had: a half-edited file must not lock everyone out.
                _log.warning("kept the previous accounts: %s", exc)
        return self._file.verify(username, password)


class SciotAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]  # amqtt ships no types
    """Logins from the password file; no anonymous clients; the client id must be the
    account's name (`protocol.accounts`: what Mosquitto's `use_username_as_clientid` makes
    it), so no login takes over another's session; a will only on a topic the account may
    publish (Mosquitto 2 refuses such a CONNECT the same way).

    `amqtt_fixes.FixedBroker` asks this before it looks at any stored session."""

    @dataclass
    class Config:
        password_file: str = ""

    def __init__(self, context: object) -> None:
        super().__init__(context)
        self._accounts = _Accounts(Path(self.config.password_file))

    async def authenticate(self, *, session: Session) -> bool | None:
        username, password = session.username, session.password
        if not username or password is None:
            _log.info("refused client %s: no username and password", session.client_id)
            return False
        if not self._accounts.verify(username, password):
            _log.info("refused client %s: bad credentials for %s", session.client_id, username)
            return False
        if parse_account(username) is None:
            _log.info(
                "refused client %s: %s is no account of the contract", session.client_id, username
            )
            return False
        if session.client_id != username:
            _log.info(
                "refused client %s: account %s may connect only as client %s",
                session.client_id,
                username,
                username,
            )
            return False
        will = session.will_topic if session.will_flag else None
        if will is not None and not allowed(username, will, Access.WRITE):
            _log.info("refused client %s (%s): will on %s", session.client_id, username, will)
            return False
        return True


class SciotTopicPlugin(BaseTopicPlugin):  # type: ignore[misc]
    """Publish, subscribe and delivery checks of `acl.allowed()` for the logged-in account."""

    @dataclass
    class Config:
        pass

    async def topic_filtering(
        self,
        *,
        session: Session | None = None,
        topic: str | None = None,
        action: Action | None = None,
    ) -> bool | None:
        username = session.username if session is not None else None
        if not username or topic is None:
            return False
        if action == Action.PUBLISH:
            ok = allowed(username, topic, Access.WRITE)
        elif action == Action.SUBSCRIBE:
            ok = allowed(username, topic, Access.READ, subscription=True)
        elif action == Action.RECEIVE:
            return allowed(username, topic, Access.READ)
        else:
            return False
        if not ok:
            _log.info("denied %s %s on %s", username, action, topic)
        return ok
