#!/usr/bin/env python3
"""A stand-in for Odoo's XML-RPC endpoints, built on Python's own xmlrpc.server (a real
XML-RPC implementation, so mxgate's requests are parsed the way Odoo parses them).

  /xmlrpc/2/common  authenticate(db, login, password, ctx) -> uid 7 for login "admin"
  /xmlrpc/2/object  execute_kw(db, uid, password, model, method, args[, kw])

Usage: fake_odoo.py CALLS_LOG FAULTS [CERT KEY]
With CERT and KEY (PEM files) it serves HTTPS (Odoo.sh, an Odoo behind a TLS proxy).
Every call is appended to CALLS_LOG as one JSON line (binary arguments as text). The first
FAULTS execute_kw calls answer an XML-RPC fault, as Odoo does when it cannot route a mail.
mail.alias search_read answers the names in the environment variable ODOO_ALIASES
(comma-separated). With the environment variable SIGNING_SECRET set, each logged call has "signature_ok":
the X-Mxgate-Signature check of README (HMAC-SHA256 of "<t>." + body, t at most 5 minutes
old). Prints the listening port on stdout, then serves until killed or stdin closes.
"""
import hashlib
import hmac
import json
import os
import sys
import time
import threading
import xmlrpc.client
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer, SimpleXMLRPCDispatcher

log_path = sys.argv[1]
faults = [int(sys.argv[2])]
lock = threading.Lock()
secret = os.environ.get("SIGNING_SECRET", "").encode()
# The server handles one request at a time: the check of the request being dispatched.
current = {"signature_ok": None}


def verify(header, body):
    f = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    if "t" not in f or abs(time.time() - int(f["t"])) > 300:
        return False
    mac = hmac.new(secret, f["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, f.get("v1", ""))


def plain(v):
    if isinstance(v, xmlrpc.client.Binary):
        return {"binary": v.data.decode("utf-8", "replace")}
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


def record(service, method, args):
    with lock, open(log_path, "a") as f:
        entry = {"service": service, "method": method, "args": plain(list(args))}
        if secret:
            entry["signature_ok"] = current["signature_ok"]
        f.write(json.dumps(entry) + "\n")


def authenticate(db, login, password, ctx):
    record("common", "authenticate", (db, login, password, ctx))
    return 7 if login == "admin" and password == "s3cret" else False


def execute_kw(db, uid, password, model, method, args, kw=None):
    record("object", "execute_kw", (db, uid, password, model, method, args))
    if model == "mail.alias" and method == "search_read":
        # ODOO_ALIASES="sales,helpdesk": Odoo's alias table (and one alias without a name).
        names = [n for n in os.environ.get("ODOO_ALIASES", "").split(",") if n]
        rows = [{"id": i + 1, "alias_name": n} for i, n in enumerate(names)]
        return rows + [{"id": len(rows) + 1, "alias_name": False}]
    with lock:
        if faults[0] > 0:
            faults[0] -= 1
            raise xmlrpc.client.Fault(1, "ValueError: No possible route found for incoming message")
    return 42


class Handler(SimpleXMLRPCRequestHandler):
    rpc_paths = ("/xmlrpc/2/common", "/xmlrpc/2/object")

    def log_message(self, *a):
        pass


class Server(SimpleXMLRPCServer):
    def __init__(self):
        super().__init__(("127.0.0.1", 0), requestHandler=Handler, allow_none=True, logRequests=False)
        self.common = SimpleXMLRPCDispatcher(allow_none=True)
        self.common.register_function(authenticate)
        self.object = SimpleXMLRPCDispatcher(allow_none=True)
        self.object.register_function(execute_kw)

    def _dispatch(self, method, params):
        raise RuntimeError("unused")


class PathHandler(Handler):
    def do_POST(self):
        d = self.server.common if self.path.endswith("/common") else self.server.object
        if secret:
            dispatch = d._marshaled_dispatch
            header = self.headers.get("X-Mxgate-Signature", "")

            def checked(data, *a, **kw):
                current["signature_ok"] = verify(header, data)
                return dispatch(data, *a, **kw)

            self.server._marshaled_dispatch = checked
        else:
            self.server._marshaled_dispatch = d._marshaled_dispatch
        return super().do_POST()


server = Server()
server.RequestHandlerClass = PathHandler
if len(sys.argv) > 4:
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[3], sys.argv[4])
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.stdin.read()
