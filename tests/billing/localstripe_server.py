"""Run localstripe on 127.0.0.1 only (its own entry point binds every interface), from scratch.

`python tests/billing/localstripe_server.py [--cert CERT --key KEY]` prints the port it bound, then
serves until killed. State lives in this process alone: nothing is loaded from, or written to, the
pickle localstripe otherwise keeps in /tmp.
"""

from __future__ import annotations

import argparse
import logging
import socket
import ssl

from aiohttp import web
from localstripe.resources import store
from localstripe.server import app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert", help="Serve HTTPS with this certificate chain (PEM).")
    parser.add_argument("--key", help="Private key of --cert (PEM).")
    args = parser.parse_args()
    store.dump_to_disk = lambda: None  # fresh state per process, and no shared /tmp/localstripe.pickle
    context = None
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    logging.basicConfig(level=logging.INFO)  # webhook delivery results, on stderr
    web.run_app(app, sock=sock, ssl_context=context, print=None)


if __name__ == "__main__":
    main()
