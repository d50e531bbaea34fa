"""Proxy headers for the uvicorn engine, replacing uvicorn's ProxyHeadersMiddleware with the
native engine's rules (engine/src/http/proxy.rs; the two must agree). When the connection comes
from a trusted address (FORWARDED_ALLOW_IPS: addresses, networks such as 10.0.0.0/8, "*" for
every peer, unix sockets included):

- the client is the right-most X-Forwarded-For hop that is not itself trusted, or the left-most
  when all are (with "*", the left-most); without X-Forwarded-For, the `for=` of the Forwarded
  element (RFC 7239) picked by the same rule (an element without `for=` is an untrusted hop);
- the scheme is X-Forwarded-Proto (http, https, ws, wss), else that element's `proto=`;
- the server port (ASGI `server`, so WSGI SERVER_PORT under a2wsgi) is X-Forwarded-Port, one
  number.

A forwarded client that is not an IP address (`unknown`, `_hidden`) leaves the peer in place, as
in the native engine (uvicorn would pass the string on). On a connection whose PROXY header
named the client (proxyproto.py), trust is decided by the proxy's own address, which the client
tuple carries as `via`.

Per request: one dictionary look-up for an untrusted peer; for a trusted one, one pass over the
headers, with the address checks cached per address string.
"""

import ipaddress

_NAMES = frozenset((b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-port", b"forwarded"))
_SCHEMES = {"https": "https", "wss": "https", "http": "http", "ws": "http"}
_CACHE_MAX = 4096


class ProxiedClient(tuple):
    """A client address from a PROXY header; `via` is the proxy's own address."""

    via = None


def _canonical(ip):
    mapped = getattr(ip, "ipv4_mapped", None)
    return mapped if mapped is not None else ip


class Trusted:
    """A FORWARDED_ALLOW_IPS (or proxy_allow_from) list, parsed as proxy.rs parses it."""

    def __init__(self, spec: str) -> None:
        self.all = False
        self.hosts = set()
        self.networks = []
        self.literals = set()
        for item in (part.strip() for part in (spec or "").split(",")):
            if not item:
                continue
            if item == "*":
                self.all = True
                continue
            try:
                if "/" in item:
                    self.networks.append(ipaddress.ip_network(item, strict=False))
                else:
                    self.hosts.add(_canonical(ipaddress.ip_address(item)))
            except ValueError:
                self.literals.add(item)
        self._seen = {}  # host string -> (normalized address or None, trusted)

    def info(self, host: str):
        """(the address as the native engine prints it, or None if not one; whether trusted)."""
        known = self._seen.get(host)
        if known is not None:
            return known
        try:
            raw = ipaddress.ip_address(host)
        except ValueError:
            known = (None, self.all or host in self.literals)
        else:
            ip = _canonical(raw)
            trusted = (self.all or ip in self.hosts
                       or any(ip in net or raw in net for net in self.networks))
            known = (str(raw), trusted)
        if len(self._seen) >= _CACHE_MAX:
            self._seen.clear()
        self._seen[host] = known
        return known

    def trusts_peer(self, client) -> bool:
        """The connection's peer: a (host, port) tuple, a ProxiedClient, or None (unix)."""
        if client is None:
            return self.all
        peer = client[0] if type(client) is tuple else (getattr(client, "via", None) or client[0])
        return self.info(peer)[1]

    def pick(self, chain):
        if self.all:
            return chain[0]
        for hop in reversed(chain):
            if not self.info(host_of(hop)[0])[1]:
                return hop
        return chain[0]

    def forwarded_element(self, values):
        elements = []
        for value in values:
            parse_forwarded(value, elements)
        if not elements:
            return None
        if self.all:
            return elements[0]
        for element in reversed(elements):
            client = element[0]
            if client is None or not self.info(host_of(client)[0])[1]:
                return element
        return elements[0]


def host_of(value: str):
    """`host`, `host:port` or `[v6]:port` -> (host, port or 0), as proxy.rs reads them."""
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return value, 0
        after = value[end + 1:]
        port = 0
        if after.startswith(":") and after[1:].isdigit() and int(after[1:]) <= 65535:
            port = int(after[1:])
        return value[1:end], port
    if value.count(":") == 1:
        host, _, port = value.rpartition(":")
        if port.isdigit() and int(port) <= 65535:
            return host, int(port)
    return value, 0


def parse_forwarded(value: str, into: list) -> None:
    """RFC 7239 elements as [for, proto] (unquoted; None when absent), appended to `into`; the
    same scan as proxy.rs's parse_forwarded."""
    element = [None, None]
    pairs = 0
    i, n = 0, len(value)
    while True:
        while i < n and value[i] in " \t":
            i += 1
        start = i
        while i < n and value[i] not in "=;,":
            i += 1
        name = value[start:i]
        has_value = i < n and value[i] == "="
        text = ""
        if has_value:
            i += 1
            if i < n and value[i] == '"':
                i += 1
                chars = []
                while i < n:
                    c = value[i]
                    i += 1
                    if c == '"':
                        break
                    if c == "\\":
                        if i < n:
                            chars.append(value[i])
                            i += 1
                        continue
                    chars.append(c)
                text = "".join(chars)
                while i < n and value[i] not in ";,":
                    i += 1
            else:
                start = i
                while i < n and value[i] not in ";,":
                    i += 1
                text = value[start:i]
            key = name.strip().lower()
            if key == "for":
                element[0] = text.strip()
            elif key == "proto":
                element[1] = text.strip()
            pairs += 1
        sep = value[i] if i < n else None
        i += 1
        if sep == ";":
            continue
        if pairs:
            into.append(element)
        element, pairs = [None, None], 0
        if i >= n:
            return


def apply(trusted: Trusted, scope) -> None:
    """The trusted peer's headers, applied to `scope` in place."""
    xff = []
    proto = port = None
    forwarded = []
    for name, value in scope["headers"]:
        if name in _NAMES:
            text = value.decode("latin-1")
            if name == b"x-forwarded-for":
                xff.extend(hop.strip() for hop in text.split(","))
            elif name == b"x-forwarded-proto":
                proto = text if proto is None else proto
            elif name == b"x-forwarded-port":
                port = text if port is None else port
            else:
                forwarded.append(text)
    has_chain = any(xff)
    element = None
    if forwarded and not (has_chain and proto is not None):
        element = trusted.forwarded_element(forwarded)
    if proto is None and element is not None:
        proto = element[1]
    if proto is not None:
        scheme = _SCHEMES.get(proto.strip().lower())
        if scheme is not None:
            if scope["type"] == "websocket":
                scheme = "wss" if scheme == "https" else "ws"
            scope["scheme"] = scheme
    if port is not None:
        port = port.strip()
        if port.isdigit() and int(port) <= 65535:
            server = scope.get("server")
            scope["server"] = (server[0] if server else "localhost", int(port))
    client = trusted.pick(xff) if has_chain else (element[0] if element is not None else None)
    if client is not None:
        host, client_port = host_of(client)
        address = trusted.info(host)[0]
        if address is not None:
            scope["client"] = (address, client_port)


def proxy_headers(app, spec: str):
    """`app` behind the proxy-header rules for the peers in `spec`."""
    trusted = Trusted(spec)
    trusts_peer = trusted.trusts_peer

    async def proxied(scope, receive, send):
        if scope["type"] != "lifespan" and trusts_peer(scope.get("client")):
            apply(trusted, scope)
        return await app(scope, receive, send)

    return proxied
