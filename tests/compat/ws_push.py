"""Websocket push subscriptions as a python websocket-client sees them: a
connection subscribes a queue (`subscription_create` without subscriber),
messages posted over REST come down it as frames, in order, and only down it;
once it closes, its subscription is gone.

    .venv/bin/python tests/compat/ws_push.py WS_URL REST_URL [REF_WS_URL REF_REST_URL]

With a second server (the reference Zaqar 23, which needs
`[storage] message_pipeline = zaqar.notification.notifier` to notify at all),
the replies and frames of both are compared, ids, ages and the subscriber URL
aside. Exit status 0 when every check passes and nothing differs but KNOWN.
"""
import json
import re
import sys
import time
import uuid

import requests
import websocket  # websocket-client

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
URL = re.compile(r"http://[^/\"]+/[0-9a-f-]{36}")
PROJECT = re.compile(r"wspush-[0-9a-f]{8}")
# Differences we know of and keep: step name -> reason.
KNOWN = {
    "list": "zaqar-rs shows subscriptions confirmed when no confirmation is required",
    "get": "zaqar-rs shows subscriptions confirmed when no confirmation is required",
}
WAIT = 20


class Failed(Exception):
    pass


def check(condition, what):
    if not condition:
        raise Failed(what)


def normal(value):
    text = json.dumps(value, sort_keys=True)
    text = URL.sub("<subscriber>", text)
    text = UUID.sub("<id>", PROJECT.sub("<project>", text))
    return re.sub(r'"age": \d+', '"age": 0', text)


def scenario(ws_url, rest_url):
    """Runs the scenario; returns [(step, normalised reply or frame)]."""
    project = "wspush-" + uuid.uuid4().hex[:8]
    queue = "pushq"
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": project}
    rest = {**headers, "Content-Type": "application/json"}
    seen = []

    def connect():
        return websocket.create_connection(ws_url, timeout=WAIT)

    def call(ws, step, action, body):
        ws.send(json.dumps({"action": action, "headers": headers, "body": body}))
        reply = json.loads(ws.recv())
        check(reply["request"]["action"] == action, f"{step}: not the reply: {reply}")
        seen.append((step, normal(reply)))
        return reply["headers"]["status"], reply["body"]

    ws, other = connect(), connect()
    call(ws, "queue", "queue_create", {"queue_name": queue})
    status, body = call(ws, "subscribe", "subscription_create", {"queue_name": queue, "ttl": 600})
    check(status == 201, f"subscribe: {status} {body}")
    status, _ = call(ws, "again", "subscription_create", {"queue_name": queue})
    check(status == 409, f"subscribing twice: {status}")
    status, body = call(ws, "list", "subscription_list", {"queue_name": queue})
    check(len(body["subscriptions"]) == 1, f"list: {body}")
    sub = body["subscriptions"][0]
    check(sub["subscriber"].startswith("http://"), f"subscriber: {sub}")
    call(ws, "get", "subscription_get", {"queue_name": queue, "subscription_id": sub["id"]})

    posted = [{"body": {"n": 1}, "ttl": 300}, {"body": "two", "ttl": 120}]
    r = requests.post(f"{rest_url}/v2/queues/{queue}/messages", headers=rest,
                      data=json.dumps({"messages": posted}), timeout=WAIT)
    check(r.status_code == 201, f"post: {r.status_code} {r.text}")
    for i, message in enumerate(posted):
        frame = json.loads(ws.recv())
        want = {**message, "Message_Type": "Notification", "queue_name": queue}
        check(frame == want, f"push {i}: {frame} != {want}")
        seen.append((f"push {i}", normal(frame)))
    # The other connection's next frame is its reply: nothing was pushed to it.
    call(other, "other", "queue_get", {"queue_name": queue})

    ws.close()
    for _ in range(100):
        r = requests.get(f"{rest_url}/v2/queues/{queue}/subscriptions", headers=rest, timeout=WAIT)
        if r.json()["subscriptions"] == []:
            break
        time.sleep(0.1)
    else:
        raise Failed("the subscription outlived its connection")
    r = requests.post(f"{rest_url}/v2/queues/{queue}/messages", headers=rest,
                      data=json.dumps({"messages": [{"body": "after close"}]}), timeout=WAIT)
    check(r.status_code == 201, f"post after close: {r.status_code}")
    call(other, "other after", "queue_get", {"queue_name": queue})
    other.close()
    return seen


def main():
    if len(sys.argv) not in (3, 5):
        sys.exit(__doc__)
    try:
        ours = scenario(sys.argv[1], sys.argv[2])
    except Failed as failure:
        print(f"ws push: FAILED: {failure}")
        return 1
    print(f"ws push: {len(ours)} replies and frames as expected")
    if len(sys.argv) == 3:
        return 0
    theirs = scenario(sys.argv[3], sys.argv[4])
    differ = 0
    for (step, got), (_, want) in zip(ours, theirs):
        if got != want:
            label = "known" if step in KNOWN else "DIFFERS"
            differ += step not in KNOWN
            print(f"{label} {step}: {KNOWN.get(step, '')}\n  ours:      {got}\n  reference: {want}")
    print(f"ws push vs reference: {differ} unexpected differences")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
