"""Runs the same WebSocket requests against two servers (the reference Zaqar and
zaqar-rs) and prints the replies that differ, ids, ages and times aside.

    .venv/bin/python tests/compat/ws_compare.py ws://127.0.0.1:9000/ ws://127.0.0.1:19000/

Exit status 0 when every reply matches (the known differences listed in
KNOWN are reported but do not fail), 1 otherwise.
"""
import json
import re
import sys
import uuid

import websocket  # websocket-client

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Differences we know of and keep (see the issue note): step name -> reason.
KNOWN = {
    "stats": "claim_count of a claimed message: 1 here, 0 in Zaqar's Redis store",
    "bad json": "the decoder's own error text (Python's json vs serde_json)",
    "bad msgpack": "the decoder's own error text (Python's msgpack vs rmp-serde)",
    "pop": "Zaqar's Redis pop claims then deletes, and shows that claim's id",
    "claim nothing": "no claim id when nothing was claimed (Zaqar invents one)",
}


def steps(project):
    cid = str(uuid.uuid4())
    hdr = {"Client-ID": cid, "X-Project-ID": project}
    q = "wscmp"

    def req(action, body=None, headers=hdr):
        doc = {"action": action, "headers": headers}
        if body is not None:
            doc["body"] = body
        return json.dumps(doc)

    return [
        ("create", req("queue_create", {"queue_name": q, "metadata": {"a": 1}})),
        ("create again", req("queue_create", {"queue_name": q})),
        ("list", req("queue_list", {"detailed": True})),
        ("list plain", req("queue_list", {})),
        ("get", req("queue_get", {"queue_name": q})),
        ("get missing", req("queue_get", {"queue_name": "nosuchq"})),
        ("post", req("message_post", {"queue_name": q, "messages": [{"body": {"x": 1}, "ttl": 120}, {"body": "y"}]})),
        ("post empty", req("message_post", {"queue_name": q, "messages": []})),
        ("post bad ttl", req("message_post", {"queue_name": q, "messages": [{"body": 1, "ttl": 5}]})),
        ("list messages", req("message_list", {"queue_name": q, "echo": True})),
        ("list missing queue", req("message_list", {"queue_name": "nosuchq"})),
        ("claim", req("claim_create", {"queue_name": q, "ttl": 60, "grace": 60, "limit": 1})),
        ("stats", req("queue_get_stats", {"queue_name": q})),
        ("stats missing", req("queue_get_stats", {"queue_name": "nosuchq"})),
        ("claim missing", req("claim_get", {"queue_name": q, "claim_id": "nope"})),
        ("message missing", req("message_get", {"queue_name": q, "message_id": "nope"})),
        ("subscription missing", req("subscription_get", {"queue_name": q, "subscription_id": "nope"})),
        ("bad limit", req("queue_list", {"limit": 0})),
        ("bad limit type", req("queue_list", {"limit": "x"})),
        ("bad queue name", req("queue_create", {"queue_name": "bad name!"})),
        ("no body", req("queue_create")),
        ("no client id", req("queue_list", {}, {"X-Project-ID": project})),
        ("no project", req("queue_list", {}, {"Client-ID": cid})),
        ("pop", req("message_delete_many", {"queue_name": q, "pop": 1})),
        ("purge", req("queue_purge", {"queue_name": q})),
        ("claim nothing", req("claim_create", {"queue_name": q})),
        ("delete", req("queue_delete", {"queue_name": q})),
        ("ping", req("ping")),
        ("bogus", req("bogus_action")),
        ("pool schema", req("pool_list", {})),
        ("bad json", "not json"),
        ("not a dict", "[1, 2]"),
        ("no action", "{}"),
        ("bad msgpack", b"\xc1garbage"),
        ("msgpack", b"\x81\xa6action\xaaqueue_list"),
    ]


def normalize(value):
    if isinstance(value, dict):
        return {k: ("<n>" if k in ("age", "created") else normalize(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    if isinstance(value, str):
        return UUID.sub("<uuid>", value)
    return value


def run(url, project):
    ws = websocket.create_connection(url, timeout=5)
    replies = {}
    for name, frame in steps(project):
        if isinstance(frame, bytes):
            ws.send_binary(frame)
            import msgpack  # only for binary steps

            _, data = ws.recv_data()
            reply = msgpack.unpackb(data)
        else:
            ws.send(frame)
            reply = json.loads(ws.recv())
        reply["request"]["headers"] = normalize(reply["request"].get("headers"))
        # zaqar-rs adds a request id of its own to each reply's headers.
        reply.get("headers", {}).pop("X-Openstack-Request-Id", None)
        replies[name] = normalize(reply)
    ws.close()
    return replies


def main():
    reference, ours = sys.argv[1], sys.argv[2]
    project = "wscmp-" + uuid.uuid4().hex[:8]
    left, right = run(reference, project), run(ours, project)
    failed = False
    for name, _ in steps(project):
        if left[name] == right[name]:
            print(f"same   {name}")
            continue
        tag = "known " if name in KNOWN else "DIFF  "
        failed = failed or name not in KNOWN
        print(f"{tag} {name}" + (f"  ({KNOWN[name]})" if name in KNOWN else ""))
        print("   reference:", json.dumps(left[name], sort_keys=True))
        print("   zaqar-rs: ", json.dumps(right[name], sort_keys=True))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
