"""Story identity from links: canonical URLs without tracking noise."""

from __future__ import annotations

import re

from yarl import URL

# Query parameters that say where a click came from, not what the page is.
_TRACKING_PARAMS = re.compile(
    r"^(utm_.*|fbclid|gclid|dclid|msclkid|mc_cid|mc_eid|igshid|ref_src|ref_url|ref|_ga|_gl|yclid|twclid|s_cid"
    r"|cmpid|ocid|spm|share|src|mkt_tok|oly_anon_id|oly_enc_id|vero_id|wt_mc|__twitter_impression)$",
    re.IGNORECASE,
)


def canonical_url(link: str) -> str:
    """Scheme and host lower-cased, default port, fragment and tracking parameters dropped.
    Text that is no absolute http(s) URL is returned stripped, unchanged."""
    link = (link or "").strip()
    try:
        url = URL(link)
        if url.scheme.lower() not in ("http", "https") or not url.host:
            return link
        query = [(k, v) for k, v in url.query.items() if not _TRACKING_PARAMS.match(k)]
        port = url.explicit_port if url.explicit_port not in (80, 443) else None
        rebuilt = URL.build(
            scheme=url.scheme.lower(),
            host=url.host.lower().rstrip("."),
            port=port,
            path=url.path or "/",
            query=sorted(query),
            encoded=False,
        )
    except (ValueError, TypeError):  # hostile links (control characters, bad ports): identity stays the text
        return link
    return str(rebuilt)


def _looks_like_id(guid: str) -> bool:
    return bool(guid) and len(guid) <= 512 and not guid.isspace()


def story_key(guid: str | None, link: str) -> str:
    """The feed's guid where it is a real id, else the canonical link.

    A guid that is itself a URL (SCMP's end in ?utm_source=rss_feed) is canonicalised like a link, so the same
    story reached through two feeds has one key."""
    guid = (guid or "").strip()
    if _looks_like_id(guid):
        if guid.lower().startswith(("http://", "https://")):
            return canonical_url(guid)
        return guid
    return canonical_url(link)
