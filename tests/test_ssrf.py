"""SSRF payloads over HTTP, with private networks closed (the production setting).

Every payload must be refused with one of the two codes of README's error table:
``url_not_allowed`` when the URL itself is refused before any network access (scheme, userinfo,
backslashes, control characters, a host urllib3 cannot parse, length), and
``image_fetch_failed`` for everything that reaches address checking (a forbidden address, in
any spelling, through DNS, a redirect or a rebinding answer).

No payload may ever open a connection to a forbidden address. That is asserted at the socket
layer with conftest's ``connections`` spy on ``socket.socket.connect``, and twice more: an
"internal" listener on loopback that answers with a real image (so a leak would come back as a
200) must see no connection, and DNS is stubbed so that no test depends on, or reaches, a real
resolver. The only address connections may go to is ``PUBLIC``, a stand-in for a public image
host that the stub routes to the local pytest-httpserver; the guard tests at the top prove the
spy and the listener really see the connections they are meant to.
"""

from __future__ import annotations

import ipaddress
import itertools
import socket
import threading

import falcon
import hug
import pytest

import api
from conftest import no_face_image

PUBLIC = "93.184.216.34"  # the same stand-in as test_fetch.py: globally routable, never reached

IMAGE = no_face_image()
_REPLY = (b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n"
          b"Content-Length: %d\r\n\r\n" % len(IMAGE)) + IMAGE


class Listener:
    """A loopback TCP server that records every connection and answers with a real image.

    It listens on 127.0.0.1 and, when the host has IPv6, on ::1 at the same port, so that any
    payload that leaked to loopback would get a 200 with a decodable PNG.
    """

    def __init__(self) -> None:
        self.accepted: list[tuple] = []
        self._stop = threading.Event()
        first = socket.create_server(("127.0.0.1", 0))
        self.port = first.getsockname()[1]
        self._sockets = [first]
        try:
            self._sockets.append(
                socket.create_server(("::1", self.port), family=socket.AF_INET6))
        except OSError:
            pass  # no IPv6 loopback here; the spy still sees any attempt
        self._threads = [threading.Thread(target=self._serve, args=(sock,), daemon=True)
                         for sock in self._sockets]
        for thread in self._threads:
            thread.start()

    def _serve(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                connection, peer = listener.accept()
            except OSError:  # shut down by close()
                return
            self.accepted.append(peer)
            with connection:
                try:
                    connection.settimeout(2)
                    connection.recv(65536)
                    connection.sendall(_REPLY)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        for sock in self._sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
            except OSError:
                pass
        for thread in self._threads:
            thread.join(2)
        for sock in self._sockets:
            sock.close()


@pytest.fixture
def internal():
    """The 'internal service' every loopback payload points at."""
    listener = Listener()
    yield listener
    listener.close()


def _answer(address: str, port: int) -> tuple:
    ip = ipaddress.ip_address(address)
    if ip.version == 6:
        return (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))
    return (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))


# Names the stub resolver knows. A list is the answer every time; an iterator gives its next
# answer at each lookup (DNS rebinding). Any other name does not resolve.
NAMES = {
    "images.example": [PUBLIC],
    "evil.com": [PUBLIC],
    "localhost": ["127.0.0.1", "::1"],
    "localhost.": ["127.0.0.1", "::1"],
    "localtest.me": ["127.0.0.1"],
    # a resolver that answers for dotted numbers with a trailing dot (the worst case)
    "127.0.0.1.": ["127.0.0.1"],
    "169.254.169.254.": ["169.254.169.254"],
    "127.0.0.1.nip.io": ["127.0.0.1"],
    "metadata.google.internal": ["169.254.169.254"],
    "metadata.google.internal.": ["169.254.169.254"],
    "metadata": ["169.254.169.254"],
    "instance-data": ["169.254.169.254"],
    "instance-data.ec2.internal": ["169.254.169.254", "fd00:ec2::254"],
    "kubernetes.default.svc": ["10.96.0.1"],
    "db.internal.example": ["10.0.0.5"],
    "router.example": ["192.168.1.1"],
    "cgnat.example": ["100.64.0.1"],
    "v6-only-loopback.example": ["::1"],
    "mapped.example": ["::ffff:127.0.0.1"],
    "nat64.example": ["64:ff9b::a9fe:a9fe"],
    "split.example": [PUBLIC, "127.0.0.1"],
    "split-reversed.example": ["127.0.0.1", PUBLIC],
    "split-private.example": [PUBLIC, "10.0.0.5"],
    "split6.example": [PUBLIC, "::1"],
    "split-metadata.example": [PUBLIC, "169.254.169.254"],
}


class Network:
    """The stubbed network: a resolver, and a router that sends PUBLIC to the local server."""

    def __init__(self, port: int, server: tuple[str, int]) -> None:
        self.port = port  # the internal listener's port: every URL uses it
        self.server = server  # where connections to PUBLIC really go
        self.names = dict(NAMES)
        self.lookups: list[str] = []

    def url(self, path: str = "/image.png", host: str = "images.example",
            scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def getaddrinfo(self, real, host, port, family=0, type=0, proto=0, flags=0):
        self.lookups.append(host)
        try:  # numeric hosts, in every spelling glibc accepts, never reach a real resolver
            return real(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)
        except (socket.gaierror, UnicodeError):
            pass
        answer = self.names.get(host.lower() if isinstance(host, str) else host)
        if answer is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        addresses = answer if isinstance(answer, list) else next(answer)
        return [_answer(address, port) for address in addresses
                if family in (0, socket.AF_UNSPEC)
                or _answer(address, port)[0] == family]


@pytest.fixture
def network(reconfigure, monkeypatch, httpserver, internal):
    """Private networks closed, DNS stubbed, PUBLIC routed to pytest-httpserver.

    Every other non-loopback address is refused at connect time (after the spy recorded the
    attempt), so a leak shows up at once instead of waiting for a timeout.
    """
    reconfigure(allow_private_networks=0, fetch_timeout=5)
    net = Network(internal.port, (httpserver.host, httpserver.port))
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect

    def getaddrinfo(host, port, *args, **kwargs):
        return net.getaddrinfo(real_getaddrinfo, host, port, *args, **kwargs)

    def route(sock, address):
        if sock.family == socket.AF_UNIX:  # the service's own image decoders, not the network
            return real_connect(sock, address)
        if address[0] == PUBLIC:
            return real_connect(sock, net.server)
        if ipaddress.ip_address(address[0].split("%")[0]).is_loopback:
            return real_connect(sock, address)
        raise ConnectionRefusedError(f"test network: {address[0]} is unreachable")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", route)
    return net


@pytest.fixture
def spy(network, connections):
    """conftest's connection spy, installed over the router so it records the address the
    service asked for (PUBLIC), not where the test network sent it."""
    return connections


def refused(response, code: str, spy, internal) -> None:
    assert response.status == falcon.HTTP_400, (response.status, response.data)
    assert response.data == {"errors": {"image_url": code}}
    assert [address for address in spy if address[0] != PUBLIC] == []
    assert internal.accepted == []


# -- guards: the spy, the listener and the router really see what they are meant to -------------


def test_guard_the_spy_sees_an_allowed_connection(network, spy, httpserver, internal):
    httpserver.expect_request("/image.png").respond_with_data(IMAGE, content_type="image/png")
    response = hug.test.get(api, "recognize", image_url=network.url())
    assert response.status == falcon.HTTP_200, response.data
    assert response.data["image"] == {"width": 320, "height": 240}
    assert spy == [(PUBLIC, network.port)]
    (request, _), = httpserver.log
    assert request.headers["Host"] == f"images.example:{network.port}"
    assert internal.accepted == []


def test_guard_the_internal_listener_answers_when_private_networks_are_open(
        network, spy, internal, reconfigure):
    reconfigure(allow_private_networks=1)
    response = hug.test.get(api, "recognize", image_url=f"http://127.0.0.1:{internal.port}/x")
    assert response.status == falcon.HTTP_200, response.data
    assert spy == [("127.0.0.1", internal.port)]
    assert len(internal.accepted) == 1


def test_guard_redirects_are_followed_to_a_public_image(network, spy, httpserver, internal):
    for hop in range(3):
        httpserver.expect_request(f"/r{hop}").respond_with_data(
            "", status=302, headers={"Location": network.url(f"/r{hop + 1}")})
    httpserver.expect_request("/r3").respond_with_data(IMAGE, content_type="image/png")
    response = hug.test.get(api, "recognize", image_url=network.url("/r0"))
    assert response.status == falcon.HTTP_200, response.data
    assert spy and all(address == (PUBLIC, network.port) for address in spy)
    assert [request.path for request, _ in httpserver.log] == ["/r0", "/r1", "/r2", "/r3"]


# -- payloads that reach address checking: image_fetch_failed, and no connection at all -----------

ADDRESSES = [
    # IPv4 loopback in every spelling glibc accepts
    "http://2130706433:{port}/", "http://017700000001:{port}/", "http://0177.0.0.1:{port}/",
    "http://0x7f.0.0.1:{port}/", "http://0x7f000001:{port}/", "http://0x7f.1:{port}/",
    "http://0x7f.0x0.0x0.0x1:{port}/", "http://127.1:{port}/", "http://127.0.1:{port}/",
    "http://127.000.000.001:{port}/", "http://127.0.0.1:{port}/", "http://127.255.255.254:{port}/",
    "http://0.0.0.0:{port}/", "http://0:{port}/",
    # private, CGNAT and other non-global IPv4
    "http://10.0.0.1:{port}/", "http://10.255.255.254/", "http://172.16.0.1:{port}/",
    "http://172.31.255.254/", "http://192.168.0.1:{port}/", "http://192.168.255.254/",
    "http://100.64.0.1:{port}/", "http://100.127.255.254/", "http://192.0.0.8/",
    "http://167772161/", "http://0xc0a80001/", "http://[::ffff:a00:1]/",
    "http://[::ffff:100.64.0.1]/",
    "http://198.18.0.1/", "http://224.0.0.1/", "http://255.255.255.255/",
    # cloud metadata (AWS, GCP, Azure, ECS, Alibaba, Oracle), in several spellings
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://2852039166/latest/meta-data/", "http://0xa9fea9fe/latest/meta-data/",
    "http://0251.0376.0251.0376/latest/meta-data/", "http://169.254.169.254.:{port}/",
    "http://169.254.170.2/v2/credentials", "http://100.100.100.200/latest/meta-data/",
    "http://192.0.0.192/latest/", "http://[fd00:ec2::254]/latest/meta-data/",
    "http://[::ffff:a9fe:a9fe]/latest/meta-data/", "http://[::ffff:169.254.169.254]/",
    # IPv6: loopback, unspecified, mapped, compatible, NAT64, 6to4, Teredo, link-local, ULA
    "http://[::1]:{port}/", "http://[0000::1]:{port}/", "http://[::]:{port}/",
    "http://[::ffff:127.0.0.1]:{port}/", "http://[::ffff:7f00:1]:{port}/",
    "http://[0:0:0:0:0:ffff:127.0.0.1]:{port}/", "http://[::ffff:10.0.0.1]:{port}/",
    "http://[::127.0.0.1]:{port}/", "http://[::ffff:0:7f00:1]:{port}/",
    "http://[64:ff9b::7f00:1]:{port}/", "http://[64:ff9b::a9fe:a9fe]/",
    "http://[64:ff9b:1::7f00:1]:{port}/", "http://[2002:7f00:1::]:{port}/",
    "http://[2002:a9fe:a9fe::1]/", "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]:{port}/",
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]:{port}/",  # Teredo, client 127.0.0.1
    "http://[fe80::1]:{port}/", "http://[fe80::1%25eth0]:{port}/", "http://[::1%25lo]:{port}/",
    "http://[fc00::1]:{port}/", "http://[fd12:3456::1]:{port}/", "http://[100::1]:{port}/",
    "http://[2001:db8::1]/", "http://[ff02::1]/",
    # ranges Python's ipaddress calls global: site-local (deprecated), documentation (RFC 9637),
    # SRv6 SIDs (RFC 9602), the dummy prefix (RFC 9780)
    "http://[fec0::1]:{port}/", "http://[3fff::1]/", "http://[5f00::1]/", "http://[100:0:0:1::1]/",
    # names through the stubbed resolver
    "http://localhost:{port}/", "http://LOCALHOST:{port}/", "http://localhost.:{port}/",
    "http://localtest.me:{port}/", "http://127.0.0.1.nip.io:{port}/",
    "http://metadata.google.internal/computeMetadata/v1/instance/",
    "http://metadata.google.internal./computeMetadata/v1/", "http://metadata/computeMetadata/v1/",
    "http://instance-data/latest/meta-data/", "http://instance-data.ec2.internal/latest/",
    "http://kubernetes.default.svc/api", "http://db.internal.example:{port}/",
    "http://router.example/", "http://cgnat.example/", "http://v6-only-loopback.example:{port}/",
    "http://mapped.example:{port}/", "http://nat64.example/",
    "http://nowhere.invalid/x.jpg",  # does not resolve: fails closed, the same code
    # a name with one public and one forbidden address, in either order
    "http://split.example:{port}/", "http://split-reversed.example:{port}/",
    "http://split-private.example:{port}/", "http://split6.example:{port}/",
    "http://split-metadata.example/latest/meta-data/",
    # parser differentials and odd-but-legal spellings that still end at the address check
    "http://127.0.0.1:{port}/?@evil.com/", "http://127.0.0.1:{port}#@evil.com/",
    "http://127.0.0.1:{port}/#@evil.com/", "http://%31%32%37.0.0.1:{port}/",
    "http://127%2E0%2E0%2E1:{port}/", "http://127.0.0.1.:{port}/", "HTTP://127.0.0.1:{port}/",
    "hTtPs://127.0.0.1:{port}/", "https://127.0.0.1:{port}/", "http://127.0.0.1:0{port}/",
    "http://evil%40127.0.0.1:{port}/", "http://127.0.0.1%2F.evil.com:{port}/",
    "https://localhost:{port}/", "https://[::1]:{port}/",
]

# URLs whose host is public but which try to smuggle a second, internal host: the service must
# connect to the public host only (which has nothing there, so the fetch still fails).
SMUGGLED = [
    "http://evil.com#@127.0.0.1:{port}/", "http://evil.com:{port}#@127.0.0.1:{port}/",
    "http://evil.com:{port}?@127.0.0.1:{port}/", "http://evil.com:{port}/@127.0.0.1:{port}/",
    "http://evil.com:{port}/..%2F..%2F127.0.0.1/",
    "http://images.example:{port}/%0d%0aHost:127.0.0.1",
]


@pytest.mark.parametrize("template", ADDRESSES)
def test_forbidden_addresses_are_refused_without_a_connection(network, spy, internal, template):
    url = template.format(port=network.port)
    response = hug.test.get(api, "recognize", image_url=url)
    refused(response, "image_fetch_failed", spy, internal)
    assert spy == []  # not even a connection to PUBLIC: a forbidden answer is never connected


@pytest.mark.parametrize("template", SMUGGLED)
def test_a_second_host_smuggled_into_the_url_is_never_reached(network, spy, internal, template):
    response = hug.test.get(api, "recognize", image_url=template.format(port=network.port))
    refused(response, "image_fetch_failed", spy, internal)
    assert all(address[0] == PUBLIC for address in spy)


# -- payloads refused before any network access: url_not_allowed, not even a DNS lookup -----------

PRE_NETWORK = [
    # userinfo, in every shape
    "http://evil@127.0.0.1:{port}/", "http://127.0.0.1@evil.com/",
    "http://127.0.0.1:{port}@evil.com/", "http://user:pass@127.0.0.1:{port}/",
    "http://evil.com:80@127.0.0.1:{port}/", "http://:@127.0.0.1:{port}/",
    "http://@127.0.0.1:{port}/",  # an empty userinfo is still userinfo
    "http://evil.com@@127.0.0.1:{port}/", "http://ok.com:80+&@127.88.23.245:22/#+@ok.com:80/",
    "http://1.1.1.1 &@2.2.2.2# @3.3.3.3/", "http://evil.com%2F@127.0.0.1:{port}/",
    "http://127.0.0.1:{port}%2F@evil.com/", "https://admin:admin@169.254.169.254/",
    # backslashes
    "http://evil.com\\@127.0.0.1:{port}/", "http:\\\\127.0.0.1:{port}\\",
    "http:/\\127.0.0.1:{port}/", "http://127.0.0.1:{port}\\@evil.com/",
    "http:\\/\\/127.0.0.1:{port}/",
    # whitespace and control characters
    "http://127.0.0.1 :{port}/", " http://127.0.0.1:{port}/", "http://127.0.0.1:{port}/\n",
    "http://127.0.0.1\t:{port}/", "http://evil.com\r\nHost: 127.0.0.1/",
    "http://127.0.0.1\x00.evil.com:{port}/", "http://\x7f127.0.0.1:{port}/",
    "http://127.0.0.1%09:{port}/", "http://a.b%00.127.0.0.1/", "http://127.0.0.1\u00a0:{port}/",
    "http://evil.com\x0b@127.0.0.1/",
    # unicode dots and digits that IDNA would fold into 127.0.0.1 or localhost
    "http://127\u30020\u30020\u30021:{port}/", "http://127\uff0e0\uff0e0\uff0e1:{port}/",
    "http://127\uff610\uff610\uff611:{port}/",
    "http://\uff11\uff12\uff17.\uff10.\uff10.\uff11:{port}/",
    "http://\u2460\u2461\u2466.\u24ea.\u24ea.\u2460:{port}/",
    "http://\u24db\u24de\u24d2\u24d0\u24db\u24d7\u24de\u24e2\u24e3:{port}/",
    # other schemes, and no scheme or no host
    "file:///etc/passwd", "file://127.0.0.1/etc/passwd", "file:/proc/self/environ",
    "/etc/passwd", "../known_faces/x.jpg", "gopher://127.0.0.1:{port}/_GET%20/%20HTTP/1.0",
    "ftp://127.0.0.1/", "dict://127.0.0.1:11211/stat",
    "ldap://127.0.0.1/", "sftp://127.0.0.1/", "tftp://127.0.0.1/x", "ws://127.0.0.1:{port}/",
    "jar:http://127.0.0.1:{port}/x.jar!/", "netdoc:///etc/passwd", "javascript:alert(1)",
    "//127.0.0.1:{port}/", "127.0.0.1:{port}/x.jpg", "http:/127.0.0.1:{port}/",
    "http:127.0.0.1:{port}/", "http://", "http:///127.0.0.1/", "http://[127.0.0.1]:{port}/",
    "http://127.0.0.1:{port}:80/", "http://127.0.0.1:65536/",
    # over-long
    "http://127.0.0.1:{port}/" + "a" * 2100, "http://" + "a." * 1100 + "example/",
    "http://images.example:{port}/?" + "q" * 3000,
]


@pytest.mark.parametrize("template", PRE_NETWORK)
def test_malformed_urls_are_refused_before_any_network_access(network, spy, internal, template):
    url = template.format(port=network.port) if "{port}" in template else template
    response = hug.test.get(api, "recognize", image_url=url)
    refused(response, "url_not_allowed", spy, internal)
    assert spy == [] and network.lookups == []


@pytest.mark.parametrize("url", ["data:image/png;base64,iVBORw0KGgo=",
                                 "data:image/jpeg;base64,/9j/4AAQ",
                                 "data:text/html;base64,PGI+aGk8L2I+"])
def test_a_data_uri_is_decoded_here_and_never_fetched(network, spy, internal, url):
    """data: URIs are images in the request itself (a caller's convenience): nothing is looked
    up or connected to, whatever they hold."""
    response = hug.test.get(api, "recognize", image_url=url)
    assert response.status in (falcon.HTTP_400, falcon.HTTP_415), response.data
    assert spy == [] and network.lookups == [] and internal.accepted == []


@pytest.mark.parametrize("url, code", [
    ("http://169.254.169.254/latest/meta-data/", "image_fetch_failed"),
    ("http://[::ffff:127.0.0.1]:{port}/", "image_fetch_failed"),
    ("http://metadata.google.internal/computeMetadata/v1/", "image_fetch_failed"),
    ("file:///etc/passwd", "url_not_allowed"),
    ("http://evil@127.0.0.1:{port}/", "url_not_allowed"),
])
def test_enroll_and_post_bodies_refuse_the_same_way(network, spy, internal, url, code):
    url = url.format(port=network.port)
    responses = [
        hug.test.get(api, "enroll", name="x", image_url=url),
        hug.test.post(api, "enroll", body={"name": "x", "image_url": url},
                      headers={"content-type": "application/json"}),
        hug.test.post(api, "recognize", body={"image_url": url},
                      headers={"content-type": "application/json"}),
    ]
    for response in responses:
        refused(response, code, spy, internal)
    assert spy == []
    assert hug.test.get(api, "people").data["total"] == 0


# -- redirects: every hop meets the same checks -------------------------------------------------

REDIRECT_TARGETS = [
    "http://127.0.0.1:{port}/", "http://localhost:{port}/", "http://[::1]:{port}/",
    "http://[::ffff:127.0.0.1]:{port}/", "http://2130706433:{port}/", "http://0x7f.1:{port}/",
    "//127.0.0.1:{port}/", "http://169.254.169.254/latest/meta-data/",
    "http://metadata.google.internal/computeMetadata/v1/", "http://[fd00:ec2::254]/latest/",
    "http://10.0.0.1/", "http://192.168.1.1/", "http://split.example:{port}/",
    "https://127.0.0.1:{port}/", "file:///etc/passwd", "gopher://127.0.0.1:{port}/_x",
    "http://evil@127.0.0.1:{port}/", "http://evil.com\\@127.0.0.1:{port}/",
]


@pytest.mark.parametrize("target", REDIRECT_TARGETS)
def test_a_redirect_from_a_public_host_to_an_internal_one_is_refused(network, spy, internal,
                                                                     httpserver, target):
    httpserver.expect_request("/hop").respond_with_data(
        "", status=302, headers={"Location": target.format(port=network.port)})
    response = hug.test.get(api, "recognize", image_url=network.url("/hop"))
    refused(response, "image_fetch_failed", spy, internal)
    assert spy == [(PUBLIC, network.port)]  # the public hop, and nothing after it
    assert [request.path for request, _ in httpserver.log] == ["/hop"]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_every_redirect_status_is_checked(network, spy, internal, httpserver, status):
    httpserver.expect_request("/hop").respond_with_data(
        "", status=status, headers={"Location": f"http://127.0.0.1:{network.port}/"})
    response = hug.test.get(api, "recognize", image_url=network.url("/hop"))
    refused(response, "image_fetch_failed", spy, internal)


@pytest.mark.parametrize("last", ["http://127.0.0.1:{port}/secret.png", "file:///etc/passwd",
                                  "http://169.254.169.254/latest/meta-data/"])
def test_a_three_hop_chain_ending_on_an_internal_host_is_refused(network, spy, internal,
                                                                 httpserver, last):
    # three redirects are allowed, so the fourth request would really be made if it passed
    hops = [network.url("/a"), network.url("/b", host="evil.com"), network.url("/c"),
            last.format(port=network.port)]
    for here, there in zip(["/a", "/b", "/c"], hops[1:]):
        httpserver.expect_request(here).respond_with_data("", status=302,
                                                          headers={"Location": there})
    response = hug.test.get(api, "recognize", image_url=hops[0])
    refused(response, "image_fetch_failed", spy, internal)
    assert [request.path for request, _ in httpserver.log] == ["/a", "/b", "/c"]
    assert spy == [(PUBLIC, network.port)] * 3


# -- DNS rebinding --------------------------------------------------------------------------------


def test_rebinding_between_the_first_hop_and_the_redirect_is_refused(network, spy, internal,
                                                                     httpserver):
    network.names["rebind.example"] = itertools.chain([[PUBLIC]], itertools.repeat(["127.0.0.1"]))
    httpserver.expect_request("/first").respond_with_data(
        "", status=302, headers={"Location": "/second"})  # the same host, asked again
    response = hug.test.get(api, "recognize", image_url=network.url("/first", "rebind.example"))
    refused(response, "image_fetch_failed", spy, internal)
    assert network.lookups.count("rebind.example") == 2  # resolved again, and checked again
    assert spy == [(PUBLIC, network.port)]


def test_rebinding_to_metadata_on_an_absolute_redirect_is_refused(network, spy, internal,
                                                                  httpserver):
    network.names["rebind.example"] = itertools.chain(
        [[PUBLIC]], itertools.repeat(["169.254.169.254"]))
    httpserver.expect_request("/first").respond_with_data(
        "", status=307, headers={"Location": network.url("/latest", "rebind.example")})
    response = hug.test.get(api, "recognize", image_url=network.url("/first", "rebind.example"))
    refused(response, "image_fetch_failed", spy, internal)
    assert spy == [(PUBLIC, network.port)]


def test_one_connection_uses_the_one_checked_answer(network, spy, internal, httpserver):
    """A name whose second answer is loopback: the connection goes to the first (checked) answer
    and the name is not looked up again behind the check's back."""
    network.names["rebind.example"] = itertools.chain([[PUBLIC]], itertools.repeat(["127.0.0.1"]))
    httpserver.expect_request("/image.png").respond_with_data(IMAGE, content_type="image/png")
    response = hug.test.get(api, "recognize", image_url=network.url(host="rebind.example"))
    assert response.status == falcon.HTTP_200, response.data
    assert network.lookups.count("rebind.example") == 1
    assert spy == [(PUBLIC, network.port)]
    assert internal.accepted == []


# -- environment proxies and .netrc are ignored ---------------------------------------------------

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                   "all_proxy")


@pytest.fixture
def proxy(monkeypatch):
    """A local 'proxy' every proxy variable points at; it must never see a connection."""
    listener = Listener()
    for variable in PROXY_VARIABLES:
        monkeypatch.setenv(variable, f"http://127.0.0.1:{listener.port}")
    for variable in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(variable, raising=False)
    yield listener
    listener.close()


def test_proxies_from_the_environment_are_not_used_for_a_public_host(network, spy, internal,
                                                                    httpserver, proxy):
    httpserver.expect_request("/image.png").respond_with_data(IMAGE, content_type="image/png")
    response = hug.test.get(api, "recognize", image_url=network.url())
    assert response.status == falcon.HTTP_200, response.data
    assert proxy.accepted == []
    assert spy == [(PUBLIC, network.port)]  # straight to the checked address


@pytest.mark.parametrize("template", ["http://127.0.0.1:{port}/", "https://127.0.0.1:{port}/",
                                      "http://169.254.169.254/latest/meta-data/",
                                      "https://images.example:{port}/image.png"])
def test_a_proxy_in_the_environment_is_no_way_around_the_check(network, spy, internal, proxy,
                                                               template):
    response = hug.test.get(api, "recognize", image_url=template.format(port=network.port))
    # the https case reaches the public host (no TLS there), and fails there, not at the proxy
    refused(response, "image_fetch_failed", spy, internal)
    assert proxy.accepted == []


def test_netrc_credentials_are_not_sent(network, spy, httpserver, monkeypatch, tmp_path):
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine images.example login alice password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HOME", str(tmp_path))
    httpserver.expect_request("/image.png").respond_with_data(IMAGE, content_type="image/png")
    response = hug.test.get(api, "recognize", image_url=network.url())
    assert response.status == falcon.HTTP_200, response.data
    (request, _), = httpserver.log
    assert "Authorization" not in request.headers
