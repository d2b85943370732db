"""DNS TXT lookups, for proofs of domain control, with short timeouts.

dnspython does the lookup: the standard library only resolves addresses (getaddrinfo), not TXT
records. Queries go to the system's configured resolvers; nothing here connects to a host the
name points at, so the SSRF guard has no part in it.
"""

import dns.exception
import dns.name
import dns.resolver

from keyward.net.errors import OutboundError

TXT_LOOKUP_TIMEOUT = 3.0
MAX_TXT_RECORDS = 50


def txt_records(name: str, *, timeout: float = TXT_LOOKUP_TIMEOUT) -> list[str]:
    """The TXT values published at the absolute DNS `name`; [] when the name or its TXT record does not exist.

    A record split into several strings is joined back into one value. Raises
    OutboundError(code="dns_unavailable") when no answer could be had within `timeout` seconds.
    """
    try:
        resolver = dns.resolver.Resolver()
        resolver.lifetime = timeout
        resolver.timeout = timeout
        answer = resolver.resolve(dns.name.from_text(name), "TXT", lifetime=timeout, search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException:
        raise OutboundError("The DNS lookup failed or took too long; try again.", code="dns_unavailable") from None
    return [b"".join(record.strings).decode("ascii", errors="replace") for record in list(answer)[:MAX_TXT_RECORDS]]
