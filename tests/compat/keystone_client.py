"""python-zaqarclient with Keystone auth (auth_opts backend `keystone`: os_auth_url,
user, password, project) against a zaqar-rs with `auth = "keystone"`: queues, messages
and claims as two projects' members, who do not see each other's queues.
Usage: keystone_client.py ZAQAR_URL KEYSTONE_URL PASSWORD (users of test-servers.sh)."""
import sys
import uuid

from zaqarclient.queues import client
from zaqarclient.transport import errors

ZAQAR, KEYSTONE, PASSWORD = sys.argv[1:4]


def connect(user, project, password=PASSWORD):
    options = {
        "os_auth_url": KEYSTONE, "os_username": user, "os_password": password,
        "os_project_name": project, "os_user_domain_name": "Default",
        "os_project_domain_name": "Default",
    }
    conf = {"auth_opts": {"backend": "keystone", "options": options}}
    return client.Client(ZAQAR, version=2, conf=conf)


def queue_names(c):
    queues, _ = c.queues()
    return [q.name for q in queues]


a = connect("zaqar-member-a", "zaqar-a")
b = connect("zaqar-member-b", "zaqar-b")
name = "kc-" + uuid.uuid4().hex[:8]
queue = a.queue(name)
queue.post([{"body": {"n": 1}, "ttl": 300}, {"body": {"n": 2}, "ttl": 300}])
bodies = sorted(m.body["n"] for m in queue.messages(echo=True))
assert bodies == [1, 2], bodies
claim = queue.claim(ttl=60, grace=60)
claimed = list(claim)
assert len(claimed) == 2, claimed
for message in claimed:
    message.delete()
claim.delete()
assert list(queue.messages(echo=True)) == []
assert name in queue_names(a)
assert name not in queue_names(b)
assert list(b.queue(name).messages(echo=True)) == []
queue.delete()
assert name not in queue_names(a)

# A token Keystone refuses is a 401 (the client sends whatever token it was given).
bad = client.Client(ZAQAR, version=2, conf={"auth_opts": {"backend": "keystone", "options": {
    "os_auth_url": KEYSTONE, "os_auth_token": "gAAAAABnot-a-token"}}})
try:
    queue_names(bad)
    raise AssertionError("a bad token was accepted")
except errors.UnauthorizedError:
    pass
print("python-zaqarclient with keystone auth: ok")
