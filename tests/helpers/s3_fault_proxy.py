#!/usr/bin/env python3
"""s3_fault_proxy.py - an HTTP proxy for tests that breaks S3 requests.

Listens on 127.0.0.1, forwards every request to --upstream (also on
127.0.0.1) with its headers unchanged (Host included, so SigV4 signatures
stay valid), and injects a fault into a fraction --rate of the requests,
chosen with a seeded generator:

  500      answer HTTP 500 InternalError without forwarding
  503      answer HTTP 503 SlowDown without forwarding
  lost     forward (the server acts on it), then answer 500: the client
           must retry a request that already took effect
  slow     wait 0.3-1.5 s, then forward
  drop     close the connection without answering
  cut      forward, send the headers and half of the body, then close
           (a connection dropped mid-body)

While the file --down-file exists, every request is answered by closing
the connection (an outage), counted as "down".

Statistics (requests, faults per kind) are written as JSON to --stats
after every request.  With --record FILE, every request's method, path
and headers are appended to FILE as one JSON line (for tests that check
what the client sent: Host, the signed headers; the file holds whatever
the client sent, secrets in headers included, so it belongs in the
test's private directory).  With --refuse-token CODE, a request that
carries x-amz-security-token is answered 400 CODE without forwarding: a
server refusing a session token (AWS says InvalidToken; radosgw, with
its STS on, InvalidArgument), which radosgw as the tests run it does
not do (it ignores tokens; with its STS on, a wrong secret is no longer
reported as SignatureDoesNotMatch).  The chosen port is written to
--port-file.
Standard library only.
"""

import argparse
import http.client
import http.server
import json
import os
import random
import socket
import socketserver
import threading
import time

KINDS = ["500", "503", "lost", "slow", "drop", "cut"]
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length",
       "proxy-connection", "te", "trailer", "upgrade"}


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.rng = random.Random(args.seed)
        self.stats = {"requests": 0, "faults": 0, "down": 0,
                      **{k: 0 for k in KINDS}}
        self.local = threading.local()
        self.bag = []

    def pick(self):
        with self.lock:
            self.stats["requests"] += 1
            if self.args.down_file and os.path.exists(self.args.down_file):
                self.stats["down"] += 1
                return "drop", 0.0
            if self.rng.random() >= self.args.rate:
                return None, self.rng.random()
            # every kind once per round, in a random order
            if not self.bag:
                self.bag = list(KINDS)
                self.rng.shuffle(self.bag)
            kind = self.bag.pop()
            self.stats["faults"] += 1
            self.stats[kind] += 1
            return kind, self.rng.random()

    def record(self, handler):
        if not self.args.record:
            return
        line = json.dumps({
            "method": handler.command, "path": handler.path,
            "headers": [[k, v] for k, v in handler.headers.items()],
        })
        with self.lock:
            with open(self.args.record, "a") as f:
                f.write(line + "\n")

    def save(self):
        if not self.args.stats:
            return
        with self.lock:
            data = json.dumps(self.stats)
        tmp = self.args.stats + ".tmp"
        with open(tmp, "w") as f:
            f.write(data)
        os.replace(tmp, self.args.stats)

    def upstream(self, fresh=False):
        conn = getattr(self.local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            host, port = self.args.upstream_hostport
            conn = http.client.HTTPConnection(host, port, timeout=120)
            self.local.conn = conn
        return conn


def error_xml(code, message):
    return (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}'
            f'</Code><Message>{message}</Message><RequestId>fault-proxy'
            f'</RequestId></Error>').encode()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "s3-fault-proxy"

    def log_message(self, fmt, *args):
        pass

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        data = b""
        while len(data) < n:
            chunk = self.rfile.read(n - len(data))
            if not chunk:
                break
            data += chunk
        return data

    def _answer(self, status, body, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _forward(self, body):
        st = self.server.state
        for attempt in range(2):
            conn = st.upstream(fresh=attempt > 0)
            try:
                conn.putrequest(self.command, self.path, skip_host=True,
                                skip_accept_encoding=True)
                for k, v in self.headers.items():
                    if k.lower() not in HOP:
                        conn.putheader(k, v)
                if body or self.command in ("PUT", "POST"):
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body if body else None)
                resp = conn.getresponse()
                data = resp.read()
                return resp, data
            except (OSError, http.client.HTTPException):
                if attempt:
                    raise
        raise OSError("unreachable")

    def _relay(self, resp, data, cut=False):
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in HOP:
                self.send_header(k, v)
        if self.command == "HEAD":
            length = resp.getheader("Content-Length")
            if length is not None:
                self.send_header("Content-Length", length)
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if cut:
            self.wfile.write(data[:len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.wfile.write(data)

    def _handle(self):
        st = self.server.state
        body = self._body()
        st.record(self)
        kind, r = st.pick()
        refuse = st.args.refuse_token and \
            "x-amz-security-token" in self.headers
        try:
            if refuse:
                self._answer(400, error_xml(st.args.refuse_token,
                                            "refused by the proxy"))
            elif kind == "500":
                self._answer(500, error_xml("InternalError", "injected"))
            elif kind == "503":
                self._answer(503, error_xml("SlowDown", "injected"))
            elif kind == "drop":
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            else:
                if kind == "slow":
                    time.sleep(0.3 + 1.2 * r)
                resp, data = self._forward(body)
                if kind == "lost":
                    self._answer(500, error_xml("InternalError",
                                                "injected after"))
                else:
                    self._relay(resp, data, cut=(kind == "cut" and
                                                 len(data) > 1))
        except (OSError, http.client.HTTPException):
            self.close_connection = True
        st.save()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True,
                    help="http://127.0.0.1:PORT of the real server")
    ap.add_argument("--rate", type=float, default=0.15)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--stats")
    ap.add_argument("--down-file")
    ap.add_argument("--record")
    ap.add_argument("--refuse-token", metavar="CODE")
    args = ap.parse_args()
    up = args.upstream.split("://", 1)[-1].rstrip("/")
    host, _, port = up.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        ap.error("the upstream must be on 127.0.0.1")
    args.upstream_hostport = (host, int(port))
    srv = Server(("127.0.0.1", args.port), Handler)
    srv.state = State(args)
    srv.state.save()
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(str(srv.server_address[1]))
        os.replace(args.port_file + ".tmp", args.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
