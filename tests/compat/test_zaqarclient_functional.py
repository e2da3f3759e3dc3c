"""python-zaqarclient's own functional test classes, over HTTP, against a running server.

The classes live in the installed package (zaqarclient.tests.queues.*); upstream
runs them from tests/functional/queues/v2/ by subclassing with the HTTP transport,
which is what this module does. Needs ZAQARCLIENT_TEST_FUNCTIONAL=1 and
ZAQAR_ENDPOINT=http://HOST:PORT.
"""

from zaqarclient.tests.queues import claims, queues, subscriptions
from zaqarclient.transport import http


class TestQueuesHttp(queues.QueuesV2QueueFunctionalTest):
    is_functional = True
    transport_cls = http.HttpTransport
    version = 2


class TestClaimsHttp(claims.QueuesV2ClaimFunctionalTest):
    is_functional = True
    transport_cls = http.HttpTransport
    version = 2


class TestSubscriptionsHttp(subscriptions.QueuesV2SubscriptionFunctionalTest):
    is_functional = True
    transport_cls = http.HttpTransport
    version = 2
