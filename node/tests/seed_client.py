"""The seeds' protocol from a real libzmq client (pyzmq), no Rust in the loop.

Usage: python3 seed_client.py tcp://127.0.0.1:PORT
Sends the seeds' JSON messages exactly as the seeds write them (REQ socket,
as the class projects did) and checks every reply. Exits non-zero on the
first mismatch; prints "N passed, 0 failed" when all hold.
"""
import base64
import json
import sys

import zmq

endpoint = sys.argv[1]
ctx = zmq.Context()
sock = ctx.socket(zmq.REQ)
sock.setsockopt(zmq.RCVTIMEO, 5000)
sock.setsockopt(zmq.LINGER, 0)
sock.connect(endpoint)
passed = 0


def ask(raw):
    """Sends raw bytes (the seeds' text, byte for byte) and returns the JSON reply."""
    sock.send(raw if isinstance(raw, bytes) else raw.encode())
    return json.loads(sock.recv())


def check(name, got, want):
    global passed
    if got != want:
        print(f"FAILED {name}: got {got!r}, want {want!r}")
        print(f"{passed} passed, 1 failed")
        sys.exit(1)
    passed += 1


# Seed 000/001, PUT as written (pretty-printed, four-space indent).
check("PUT", ask('{\n    "op": "PUT",\n    "key": "key",\n    "value": "value"\n}'), {"status": "ok"})
check("GET_ONE", ask('{\n    "op": "GET_ONE",\n    "key": "key"\n}'), {"key": "key", "value": "value"})
for k, v in [("key1", "value1"), ("key2", "value2")]:
    check("PUT " + k, ask(json.dumps({"op": "PUT", "key": k, "value": v})), {"status": "ok"})
# Seed 000 writes GET_ALL with a trailing comma; it is accepted as written.
got = ask('{\n    "op": "GET_ALL",\n}')
check("GET_ALL", got, {"collection": [
    {"key": "key", "value": "value"},
    {"key": "key1", "value": "value1"},
    {"key": "key2", "value": "value2"},
]})
# Seed 002's encoded keys and values, binary included.
blob = bytes([0, 1, 2, 255, 254])
b64 = base64.b64encode(blob).decode()
put = {"op": "PUT", "key": {"encoding": "string", "data": "bin"}, "value": {"encoding": "binary", "data": b64}}
check("PUT binary", ask(json.dumps(put)), {"status": "ok"})
got = ask(json.dumps({"op": "GET_ONE", "key": "bin"}))
check("GET binary", got, {"key": "bin", "value": {"encoding": "binary", "data": b64}})
# DELETE and the not-found error.
check("DELETE", ask(json.dumps({"op": "DELETE", "key": "key1"})), {"status": "ok"})
got = ask(json.dumps({"op": "GET_ONE", "key": "key1"}))
check("not found code", got.get("error"), "not_found")
check("not found names the key", "key1" in got.get("message", ""), True)
# Malformed and unknown requests get an error naming the problem.
got = ask('{"op": "PUT", "key": "k"')
check("truncated JSON", got.get("error"), "bad_request")
got = ask(json.dumps({"op": "FLY", "key": "k"}))
check("unknown op", got.get("error"), "bad_request")
check("unknown op is named", "FLY" in got.get("message", ""), True)
got = ask(json.dumps({"op": "PUT", "key": "k", "value": {"encoding": "binary", "data": "@@@"}}))
check("invalid base64", got.get("error"), "bad_request")
# Batches, scan and stats.
entries = [{"key": f"b{i}", "value": str(i)} for i in range(5)]
check("PUT_BATCH", ask(json.dumps({"op": "PUT_BATCH", "entries": entries})), {"status": "ok", "count": 5})
got = ask(json.dumps({"op": "SCAN", "limit": 3}))
check("SCAN page", [e["key"] for e in got["page"]], ["b0", "b1", "b2"])
check("SCAN next", got["next"], "b2")
got = ask(json.dumps({"op": "STATS"}))
check("STATS keys", got["stats"]["keys"], 8)
# The node is still serving after all of that.
check("still serving", ask(json.dumps({"op": "GET_ONE", "key": "key2"})), {"key": "key2", "value": "value2"})
print(f"{passed} passed, 0 failed")
