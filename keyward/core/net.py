"""The caller's IP address, honouring only as many proxy hops as the operator says it runs.

Header values are untrusted text: only a parseable address comes out (a port or brackets a proxy
added are stripped), so `unknown` or `203.0.113.9:51234` can never reach an `inet` column.
"""

import ipaddress
import re

from django.conf import settings
from django.http import HttpRequest

_BRACKETED = re.compile(r"^\[(?P<host>[^\]]+)\](?::\d{1,5})?$")
_IPV4_WITH_PORT = re.compile(r"^(?P<host>\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$")
IPV6_BUCKET_PREFIX = 64


def parse_address(value: str) -> str:
    """The canonical text of the address in `value` (port and brackets stripped), or "" if there is none.

    An IPv4-mapped IPv6 address comes out as plain IPv4 and an IPv6 zone id is dropped, so one
    client always has one spelling.
    """
    text = value.strip()
    if match := _BRACKETED.match(text) or _IPV4_WITH_PORT.match(text):
        text = match["host"]
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


def address_bucket(address: str) -> str:
    """What counts as one source for rate limits: an IPv4 address, or an IPv6 address's /64.

    One IPv6 host usually owns a whole /64, so counting single IPv6 addresses would let it rotate
    through billions of them. Text that is not an address is its own bucket.
    """
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{parsed}/{IPV6_BUCKET_PREFIX}", strict=False))
    return str(parsed)


def client_ip(request: HttpRequest) -> str:
    """The client's address: `KEYWARD_TRUSTED_PROXY_HOPS` from the right of X-Forwarded-For, else
    REMOTE_ADDR; "" when neither holds a parseable address."""
    hops = settings.KEYWARD_TRUSTED_PROXY_HOPS
    if hops:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= hops and (address := parse_address(forwarded[-hops])):
            return address
    return parse_address(request.META.get("REMOTE_ADDR", ""))
