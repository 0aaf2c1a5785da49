"""This replica's kopf peering identity, worked out without the passwd database and without DNS.

kopf's own `detect_own_id()` (used whenever POD_ID is unset) calls `getpass.getuser()`, which raises
`KeyError: 'getpwuid(): uid not found'` for a uid that has no passwd entry, and resolves the host name
through DNS. The image runs as uid 65532, which has no entry, as do the random uids some platforms
assign, so every install without POD_ID crashed on start (issue #16). Here the user part comes from the
environment, else the passwd entry when there is one, else the bare uid; the host part is the kernel's
host name (the pod name in a pod).
"""

from __future__ import annotations

import datetime
import os
import pwd
import secrets
import socket
from collections.abc import Mapping

_USER_VARIABLES = ("LOGNAME", "USER", "LNAME", "USERNAME")  # getpass.getuser()'s order


def user_name(environ: Mapping[str, str], uid: int) -> str:
    """The login name as getpass.getuser() finds it, or `uid<N>` where that would raise."""
    for variable in _USER_VARIABLES:
        if environ.get(variable):
            return environ[variable]
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid{uid}"


def peer_identity(
    environ: Mapping[str, str] | None = None,
    *,
    uid: int | None = None,
    now: datetime.datetime | None = None,
) -> str:
    """POD_ID when set (the chart sets it to the pod name with HA), else `user@host/<UTC time>/<random>`.

    The shape is kopf's own, so peering objects read the same; unlike kopf's it never raises.
    """
    environ = os.environ if environ is None else environ
    pod = environ.get("POD_ID")
    if pod:
        return pod
    user = user_name(environ, os.getuid() if uid is None else uid)
    host = socket.gethostname() or "localhost"
    stamp = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y%m%d%H%M%S")
    return f"{user}@{host}/{stamp}/{secrets.token_hex(2)}"
