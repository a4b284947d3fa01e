"""Viser servers for the viewer: the optional import, the listening address, start and stop.

Servers listen on 127.0.0.1 unless told otherwise: Viser's own default (every interface) would
show the scene to the whole network, unauthenticated. Viser is imported only when a server
starts (`pip install "dex4d-jax[viewer]"`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import viser

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
INSTALL_HINT = 'pip install "dex4d-jax[viewer]"'


class ViewerError(ValueError):
    """An input the viewer cannot show, or an address it cannot listen on (one-line message)."""


class ViserMissingError(ImportError):
    """Viser, the optional `viewer` extra, is not installed."""


def require_viser():
    """The `viser` module.

    Raises:
      ViserMissingError: it is not installed; the message says how to install it.
    """
    try:
        import viser  # noqa: PLC0415
    except ImportError as err:
        raise ViserMissingError(f"the viewer needs Viser, an optional extra: {INSTALL_HINT}"
                                ) from err
    return viser


# Servers.
def check_host(host: str) -> None:
    """Checks that a server can listen on `host`: it resolves, to an address of this machine.

    Raises:
      ViewerError: it cannot (a one-line message).
    """
    try:
        infos = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as err:
        raise ViewerError(f"--host {host}: unknown address ({err})") from err
    reason = "no address"
    for family, kind, proto, _, address in infos:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.bind(address)
            return
        except OSError as err:
            reason = err.strerror or str(err)
    raise ViewerError(f"cannot listen on --host {host}: {reason} (not this machine's address?)")


def url_of(server: viser.ViserServer) -> str:
    """The http URL a browser on this machine opens to see `server`'s scene."""
    host = server.get_host()
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{server.get_port()}"


def _quiet(enabled: bool = True):
    """A context that swallows what Viser prints to stdout (its banner, 'Server stopped')."""
    return contextlib.redirect_stdout(io.StringIO()) if enabled else contextlib.nullcontext()


def make_server(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                environment_map: bool = False, quiet: bool = True) -> viser.ViserServer:
    """A started Viser server, z up.

    Args:
      host: The address to listen on; 127.0.0.1 (this machine only) by default.
      port: The port; Viser takes the next free one when it is busy; 0: any free port.
      environment_map: Viser's HDR environment lighting (glossier, paler colours; its first
        frames take seconds without a GPU) instead of plain lights that keep MuJoCo's colours.
      quiet: Keep Viser's banner off stdout, and websockets' tracebacks for connections a
        browser opens and never uses (Chromium's pre-connections) off stderr.

    Raises:
      ViserMissingError: Viser is not installed.
      ViewerError: the host cannot be listened on, or the port is not 0 to 65535.
    """
    viser = require_viser()
    if not 0 <= int(port) <= 65535:
        raise ViewerError(f"port must be 0 to 65535 (0: any free port), got {port}")
    check_host(host)
    if quiet:
        logging.getLogger("websockets.server").setLevel(logging.CRITICAL)
    with _quiet(quiet):
        server = viser.ViserServer(host=host, port=int(port), label="dex4d", verbose=not quiet)
    server.scene.set_up_direction("+z")
    if not environment_map:  # Viser's default lights, and a sky light for the shaded sides
        server.scene.configure_environment_map(hdri=None)
        server.scene.add_light_hemisphere("/lights/sky", sky_color=(255, 255, 255),
                                          ground_color=(110, 100, 90), intensity=1.2)
    return server


def stop_server(server: viser.ViserServer, quiet: bool = True) -> None:
    """Stops a server made by `make_server` (its threads too), printing nothing when quiet."""
    with _quiet(quiet):
        server.stop()
