#!/usr/bin/env python3
"""s3_tls_proxy.py - a TLS-terminating forwarder for tests.

Listens on 127.0.0.1 with TLS (--cert, --key: PEM files, made by the test
with the openssl CLI) and copies the decrypted bytes of every connection,
unchanged, to --upstream (plain HTTP on 127.0.0.1), and the answers back.

Unchanged matters: the client signs (SigV4) the Host header it sends,
"127.0.0.1:<this proxy's port>" or "localhost:<port>", and the server
checks the signature against the Host header it receives, so the proxy
must not rewrite it (nor anything else).  Being a byte pipe, it needs
no HTTP parsing and keeps connections alive as the two ends decide.

The number of connections whose TLS handshake succeeded goes to --stats
as JSON ({"connections": N}) whenever it changes; a client that refuses
the certificate is not counted.  The chosen port is written to
--port-file.  Standard library only.
"""

import argparse
import asyncio
import json
import os
import ssl

COPY_CHUNK = 1 << 16


class Stats:
    def __init__(self, path):
        self.path = path
        self.data = {"connections": 0}

    def bump(self, key):
        self.data[key] += 1
        if self.path:
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self.data, f)
            os.replace(tmp, self.path)


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(COPY_CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
            else:
                writer.close()
        except (OSError, RuntimeError, ssl.SSLError):
            pass


async def handle(client_r, client_w, upstream, stats):
    stats.bump("connections")
    try:
        up_r, up_w = await asyncio.open_connection(*upstream)
    except OSError:
        client_w.close()
        return
    await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))
    for w in (client_w, up_w):
        try:
            w.close()
            await w.wait_closed()
        except (OSError, ssl.SSLError):
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True,
                    help="http://127.0.0.1:PORT of the real server")
    ap.add_argument("--cert", required=True, help="server certificate "
                    "(PEM, the chain after it)")
    ap.add_argument("--key", required=True, help="its private key (PEM)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--stats")
    args = ap.parse_args()
    up = args.upstream.split("://", 1)[-1].rstrip("/")
    host, _, port = up.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        ap.error("the upstream must be on 127.0.0.1")
    upstream = ("127.0.0.1", int(port))
    stats = Stats(args.stats)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)

    async def serve():
        srv = await asyncio.start_server(
            lambda r, w: handle(r, w, upstream, stats), "127.0.0.1",
            args.port, ssl=ctx, ssl_handshake_timeout=10)
        if args.port_file:
            tmp = args.port_file + ".tmp"
            with open(tmp, "w") as f:
                f.write(str(srv.sockets[0].getsockname()[1]))
            os.replace(tmp, args.port_file)
        async with srv:
            await srv.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
