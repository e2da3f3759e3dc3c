#!/usr/bin/env python3
"""Creates, if missing, the test projects, users and roles in the Keystone at URL
(see test-servers.sh), logs each user in once, and points the catalog's endpoints at URL.
Usage: URL PASSWORD."""
import json
import sys
import urllib.request

URL, PASSWORD = sys.argv[1].rstrip("/"), sys.argv[2]


def call(method, path, body=None, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["X-Auth-Token"] = token
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(URL + path, data, headers, method=method)
    with urllib.request.urlopen(request, timeout=60) as response:
        raw = response.read()
        return response.headers, json.loads(raw) if raw else None


def password_auth(user, project):
    user = {"name": user, "domain": {"id": "default"}, "password": PASSWORD}
    scope = {"project": {"name": project, "domain": {"id": "default"}}}
    identity = {"methods": ["password"], "password": {"user": user}}
    return {"auth": {"identity": identity, "scope": scope}}


headers, _ = call("POST", "/auth/tokens", password_auth("admin", "admin"))
TOKEN = headers["X-Subject-Token"]


def ensure(kind, name, fields):
    _, found = call("GET", f"/{kind}s?name={name}", token=TOKEN)
    if found[kind + "s"]:
        return found[kind + "s"][0]["id"]
    _, created = call("POST", f"/{kind}s", {kind: {"name": name, **fields}}, TOKEN)
    return created[kind]["id"]


roles = {name: ensure("role", name, {}) for name in ("admin", "member", "service")}
for project, user, role in [
    ("service", "zaqar", "service"),
    ("zaqar-a", "zaqar-member-a", "member"),
    ("zaqar-b", "zaqar-member-b", "member"),
    ("zaqar-a", "zaqar-admin", "admin"),
]:
    project_id = ensure("project", project, {"domain_id": "default"})
    user_id = ensure("user", user, {"domain_id": "default", "password": PASSWORD})
    call("PUT", f"/projects/{project_id}/users/{user_id}/roles/{roles[role]}", token=TOKEN)
    # The first login of a user each day writes to its row; done here, one at a time,
    # so that the tests' concurrent logins do not trip over sqlite's lock.
    call("POST", "/auth/tokens", password_auth(user, project))
_, endpoints = call("GET", "/endpoints", token=TOKEN)
for endpoint in endpoints["endpoints"]:
    if endpoint["url"] != URL + "/":
        call("PATCH", f"/endpoints/{endpoint['id']}", {"endpoint": {"url": URL + "/"}}, TOKEN)
