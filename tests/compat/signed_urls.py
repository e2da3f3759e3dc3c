"""Pre-signed URL interop between zaqar-rs and the reference Zaqar 23.

    python signed_urls.py record http://127.0.0.1:8888          # against real Zaqar
    python signed_urls.py cross  http://127.0.0.1:PORT http://127.0.0.1:8888

`record` asks the reference (whose `[signed_url] secret_key` must be
SECRET_KEY) to sign fixed share requests that expire in 2099, uses each URL
there, and records the shares and the answers to bad signatures in
signed_urls.json beside this file. api-node/tests/signed_url_interop.rs
replays that file against zaqar-rs.

`cross` needs both servers running with SECRET_KEY: it takes URLs signed by
each one and uses them on the other, and exits 1 if one is refused (404) or
if a forged signature is not.
"""

import json
import pathlib
import sys
import uuid

import requests

HERE = pathlib.Path(__file__).parent
RECORD = HERE / "signed_urls.json"
SECRET_KEY = "zaqar-reference-secret-key"
CLIENT_ID = "6f3a4b2e-2b9e-11e3-b191-71861300734c"
EXPIRES = "2099-01-01T00:00:00"

# (project, queue, share request body)
SHARES = [
    ("interop-a", "shared", {"expires": EXPIRES}),
    ("interop-a", "shared", {"expires": EXPIRES, "methods": ["GET", "POST"]}),
    (
        "interop-b",
        "q-2",
        {
            "expires": EXPIRES,
            "paths": ["messages", "claims", "subscriptions"],
            "methods": ["POST", "GET", "DELETE"],
        },
    ),
    ("interop-b", "q-2", {"expires": "2099-12-31T23:59:59", "paths": ["claims"]}),
]


def headers_of(share, project=None):
    return {
        "URL-Signature": share["signature"],
        "URL-Expires": share["expires"],
        "URL-Methods": ",".join(share["methods"]),
        "URL-Paths": ",".join(share["paths"]),
        "X-Project-ID": project or share["project"],
        "Client-ID": CLIENT_ID,
    }


def share(base, project, queue, body):
    reply = requests.post(
        f"{base}/v2/queues/{queue}/share",
        json=body,
        headers={"X-Project-ID": project, "Client-ID": CLIENT_ID},
        timeout=10,
    )
    reply.raise_for_status()
    return reply.json()


def use(base, method, path, headers):
    """A signed request; a POST of messages carries one message."""
    body = None
    if method == "POST" and path.endswith("/messages"):
        body = json.dumps({"messages": [{"body": "signed", "ttl": 300}]})
    elif method == "POST" and path.endswith("/claims"):
        body = json.dumps({"ttl": 60, "grace": 60})
    sent = dict(headers)
    if body is not None:
        sent["Content-Type"] = "application/json"
    reply = requests.request(method, base + path, data=body, headers=sent, timeout=10)
    try:
        document = reply.json()
    except ValueError:
        document = None
    return reply.status_code, document


def rejections(first):
    """Bad uses of a URL signed for GET on `first["paths"][0]`."""
    path = first["paths"][0]
    good = headers_of(first)
    forged = dict(good, **{"URL-Signature": "0" * 64})
    expired = dict(good, **{"URL-Expires": "2001-01-01T00:00:00"})
    other_project = headers_of(first, project="interop-intruder")
    stats = path.rsplit("/", 1)[0] + "/stats"
    return [
        ("forged_signature", "GET", path, forged),
        ("expired", "GET", path, expired),
        ("wrong_method", "DELETE", path, good),
        ("wrong_path", "GET", stats, good),
        ("wrong_project", "GET", path, other_project),
    ]


def record(base):
    base = base.rstrip("/")
    for project, queue in {(project, queue) for project, queue, _ in SHARES}:
        requests.delete(
            f"{base}/v2/queues/{queue}",
            headers={"X-Project-ID": project, "Client-ID": CLIENT_ID},
            timeout=10,
        ).raise_for_status()
    shares = []
    for project, queue, body in SHARES:
        reply = share(base, project, queue, body)
        uses = []
        for path in reply["paths"]:
            for method in reply["methods"]:
                status, _ = use(base, method, path, headers_of(reply))
                uses.append({"method": method, "path": path, "status": status})
        shares.append(
            {"project": project, "queue": queue, "request": body, "reply": reply, "uses": uses}
        )
    refused = []
    for label, method, path, headers in rejections(shares[0]["reply"]):
        status, document = use(base, method, path, headers)
        refused.append(
            {
                "label": label,
                "method": method,
                "path": path,
                "headers": headers,
                "status": status,
                "body": document,
            }
        )
    RECORD.write_text(
        json.dumps(
            {"secret_key": SECRET_KEY, "shares": shares, "rejections": refused},
            indent=1,
            sort_keys=True,
        )
        + "\n"
    )
    print(f"recorded {len(shares)} shares and {len(refused)} rejections in {RECORD}")


def cross(rs, reference):
    failures = 0
    for signer, user, name in ((rs, reference, "zaqar-rs -> zaqar"), (reference, rs, "zaqar -> zaqar-rs")):
        for project, queue, body in SHARES:
            project = f"{project}-{uuid.uuid4().hex[:8]}"
            signed = share(signer.rstrip("/"), project, queue, body)
            for path in signed["paths"]:
                for method in signed["methods"]:
                    status, document = use(user.rstrip("/"), method, path, headers_of(signed))
                    # A refused signature is a 404; anything else is the route's own answer.
                    ok = status != 404
                    failures += not ok
                    print(f"{name}: {method} {path} -> {status} {document or ''}")
            forged = dict(headers_of(signed), **{"URL-Signature": "f" * 64})
            status, _ = use(user.rstrip("/"), "GET", signed["paths"][0], forged)
            failures += status != 404
            print(f"{name}: forged signature -> {status}")
    print("failures:", failures)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    if sys.argv[1:2] == ["record"] and len(sys.argv) == 3:
        record(sys.argv[2])
    elif sys.argv[1:2] == ["cross"] and len(sys.argv) == 4:
        cross(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
