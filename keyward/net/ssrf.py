"""SSRF guard for every user-configured outbound URL (JWKS, OIDC discovery, webhooks, token endpoints).

A URL is checked twice. `validate_outbound_url` refuses a bad one when an admin saves it, with a
field error they can act on. The outbound session (`keyward.net.outbound`) checks again at connect
time, on the very addresses the socket then connects to, because DNS may answer differently between
saving and connecting (DNS rebinding). The connect-time check is the one that protects; the
save-time check is there to give early, clear feedback.

`settings.KEYWARD_ALLOW_PRIVATE_URLS` (dev mode and tests) lets URLs reach loopback and private
ranges; link-local, multicast, reserved and cloud metadata addresses stay refused even then.
`settings.DEV_MODE` also allows plain http.
"""

import contextlib
import ipaddress
import re
import socket
from urllib.parse import SplitResult, urlsplit

from django.conf import settings

from keyward.core.exceptions import InvalidRequest
from keyward.net.errors import OutboundBlocked

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048

# Instance metadata services hand out cloud credentials: never reachable, whatever the override says.
CLOUD_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OCI, DigitalOcean
        "169.254.170.2",  # AWS ECS task credentials
        "169.254.170.23",  # AWS EKS pod identity
        "100.100.100.200",  # Alibaba Cloud (inside 100.64/10)
        "168.63.129.16",  # Azure WireServer (a public-looking address)
        "fd00:ec2::254",  # AWS over IPv6
        "fd00:ec2::23",  # AWS EKS pod identity over IPv6
    )
)

# Loopback and private ranges: refused unless KEYWARD_ALLOW_PRIVATE_URLS is on.
PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # carrier-grade NAT
        "::1/128",
        "fc00::/7",  # unique local
    )
)

# Never a legitimate destination for keyward, override or not.
ALWAYS_BLOCKED_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8",
        "169.254.0.0/16",  # link-local
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
        "::/96",  # unspecified and deprecated IPv4-compatible (::1 is matched as private first)
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard
        "2001::/23",  # IETF protocol assignments, Teredo
        "2001:db8::/32",  # documentation
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local
        "ff00::/8",  # multicast
    )
)

_NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")
# WHATWG URL parsing (and inet_aton) read a host whose last label is a number as an IPv4 address,
# in decimal, octal or hex: 2130706433, 0x7f.1 and 0177.0.0.1 all mean 127.0.0.1.
_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)")


def unwrap_address(address: IPAddress) -> IPAddress:
    """The IPv4 address hidden inside an IPv4-mapped, NAT64 or 6to4 IPv6 address, else the address itself."""
    if isinstance(address, ipaddress.IPv4Address):
        return address
    plain = ipaddress.IPv6Address(int(address))  # drops any %zone
    if plain.ipv4_mapped is not None:
        return plain.ipv4_mapped
    if plain in _NAT64_PREFIX:
        return ipaddress.IPv4Address(int(plain) & 0xFFFFFFFF)
    if plain.sixtofour is not None:
        return plain.sixtofour
    return plain


def address_refusal(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why keyward must not connect to `address`, or None when it may."""
    address = unwrap_address(address)
    if address in CLOUD_METADATA_ADDRESSES:
        return "The URL points at a cloud metadata address."
    if any(address in network for network in PRIVATE_NETWORKS):
        return None if allow_private else "The URL points at a private or loopback address."
    if any(address in network for network in ALWAYS_BLOCKED_NETWORKS) or address.is_multicast:
        return "The URL points at a reserved, link-local or multicast address."
    if not address.is_global:
        return "The URL points at an address that is not publicly routable."
    return None


def is_allowed_address(address: IPAddress, *, allow_private: bool) -> bool:
    return address_refusal(address, allow_private=allow_private) is None


def _refuse(message: str, code: str = "invalid_url") -> OutboundBlocked:
    return OutboundBlocked(message, code=code)


def parse_outbound_url(url: str, *, allow_http: bool) -> SplitResult:
    """Check everything about a URL that needs no DNS; raise OutboundBlocked, else return its parts."""
    if not isinstance(url, str) or not url:
        raise _refuse("Enter a URL.")
    if len(url) > MAX_URL_LENGTH:
        raise _refuse(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    if not url.isascii() or not url.isprintable() or any(char.isspace() for char in url) or "\\" in url:
        raise _refuse(
            "The URL may only contain printable ASCII without spaces or backslashes "
            "(write international host names in their xn-- form)."
        )
    try:
        parts = urlsplit(url)
    except ValueError:
        raise _refuse("The URL is malformed.") from None
    scheme = parts.scheme.lower()
    absolute = "Enter an absolute URL, such as https://idp.example.com/.well-known/jwks.json."
    if not scheme:
        raise _refuse(absolute)
    allowed_schemes = ("https", "http") if allow_http else ("https",)
    if scheme not in allowed_schemes:
        wanted = "http or https" if allow_http else "https"
        raise _refuse(f"The URL must use {wanted}.", code="url_scheme_not_allowed")
    if not parts.netloc:
        raise _refuse(absolute)
    if "@" in parts.netloc:
        raise _refuse("The URL must not contain a user name or password.")
    if "#" in url:
        raise _refuse("The URL must not contain a fragment (#...).")
    host = parts.hostname
    if not host:
        raise _refuse("The URL has no host.")
    try:
        port = parts.port
    except ValueError:
        raise _refuse("The URL has an invalid port.") from None
    if port == 0:
        raise _refuse("The URL has an invalid port.")
    if "%" in host:
        raise _refuse("The URL's host must not be percent-encoded or carry an IPv6 zone id.")
    if parts.netloc.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _refuse("The URL has an invalid IPv6 address.") from None
    else:
        if not _HOST_NAME.fullmatch(host):
            raise _refuse("The URL's host name contains characters that are not allowed.")
        if _NUMERIC_LABEL.fullmatch(host.rstrip(".").rsplit(".", 1)[-1]) and ip_literal(host) is None:
            raise _refuse("Write an IP address in the URL as four decimal numbers, such as 203.0.113.7.")
    return parts


def ip_literal(host: str) -> IPAddress | None:
    """The address when `host` is a canonical IP literal (no brackets), else None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to, in resolver order. Raises socket.gaierror when there is none."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise socket.gaierror(socket.EAI_NONAME, "no address")
    return addresses


def allowed_addresses(host: str, port: int, *, allow_private: bool) -> list[IPAddress]:
    """Resolve `host` once and return its addresses, refusing them all if any one is not allowed.

    The caller connects to these exact addresses, so a second DNS answer can never sneak in.
    """
    addresses = resolve_host(host, port)
    for address in addresses:
        refusal = address_refusal(address, allow_private=allow_private)
        if refusal is not None:
            raise _refuse(refusal, code="url_destination_not_allowed")
    return addresses


def _is_special_use_name(host: str) -> bool:
    name = host.rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


def check_outbound_url(url: str, *, resolve: bool) -> SplitResult:
    """Apply the guard with the current settings; raise OutboundBlocked, else return the URL's parts.

    With `resolve`, host names are looked up now too; a name that does not resolve yet passes, since
    the connect-time check decides when keyward actually connects.
    """
    allow_private = settings.KEYWARD_ALLOW_PRIVATE_URLS
    parts = parse_outbound_url(url, allow_http=settings.DEV_MODE)
    host = parts.hostname or ""
    literal = ip_literal(host)
    if literal is not None:
        refusal = address_refusal(literal, allow_private=allow_private)
        if refusal is not None:
            raise _refuse(refusal, code="url_destination_not_allowed")
        return parts
    if allow_private:
        return parts
    if _is_special_use_name(host):
        raise _refuse("The URL points at a private or loopback address.", code="url_destination_not_allowed")
    if resolve:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        # A name that does not resolve yet is left to the connect-time check.
        with contextlib.suppress(OSError, UnicodeError):
            allowed_addresses(host, port, allow_private=False)
    return parts


def validate_outbound_url(url: str, *, field: str) -> str:
    """Refuse a user-supplied outbound URL that the SSRF guard would block; return it unchanged.

    Raises InvalidRequest with `fields={field: [message]}` and one of the codes `invalid_url`,
    `url_scheme_not_allowed` or `url_destination_not_allowed`.
    """
    try:
        check_outbound_url(url, resolve=True)
    except OutboundBlocked as refusal:
        raise InvalidRequest(refusal.message, code=refusal.code, fields={field: [refusal.message]}) from None
    return url
