"""Link types, link targets, href templates, RFC 8288 ``Link`` headers and RFC 9264 linksets. Pure functions.

**Link relation types.** GS1 link types are written in linksets and ``Link`` headers as full URIs in the GS1
Web Vocabulary namespace ``https://ref.gs1.org/voc/`` (the namespace of the vocabulary's current IRIs and of the
GS1-Conformant Resolver 1.2 model linkset; ``https://gs1.org/voc/`` is declared equivalent). A ``linkType``
query parameter may name one as a CURIE (``gs1:dpp``) or as a URI in either namespace (http or https, with or
without ``www.``). Predecessor passports (Art. 77(7): a repurposed or remanufactured battery's earlier
passports) are listed under the IANA-registered relation ``predecessor-version`` (RFC 5829): GS1 defines no
link type for them, and the resolver standard forbids coining one that duplicates GS1's; a registered relation
needs no namespace of ours.

**Templates.** An operator's ``href`` is a template with the placeholders ``{dppId}``, ``{gtin}``, ``{serial}``,
``{productId}`` and ``{endpoint}`` (the repository API base URL the passport currently routes to). It must be an
``https://`` URL, or start with ``{endpoint}/`` (which may be http on a development repository). Values are
inserted percent-encoded (``{endpoint}`` as stored).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import orjson

from dbp.errors import BadRequest, FieldError

VOCAB = "https://ref.gs1.org/voc/"
_GS1_NAMESPACES = ("https://ref.gs1.org/voc/", "https://gs1.org/voc/", "https://www.gs1.org/voc/",
                   "http://ref.gs1.org/voc/", "http://gs1.org/voc/", "http://www.gs1.org/voc/")
LINKSET_CONTEXT = "https://ref.gs1.org/standards/resolver/linkset-context"
PREDECESSOR = "predecessor-version"  # RFC 5829, IANA link relation registry
LINKSET = "linkset"  # linkType=linkset (1.2) or all (1.1): the linkset instead of a redirect

#: GS1 Web Vocabulary link types an operator may configure (subterms of gs1:linkType).
LINK_TYPES = frozenset({
    "dpp", "pip", "defaultLink", "sustainabilityInfo", "recyclingInfo", "safetyInfo", "instructions",
    "certificationInfo", "traceability", "epil", "leaflet", "masterData", "quickStartGuide", "registerProduct",
    "relatedImage", "relatedVideo", "review", "serviceInfo", "support", "tutorial", "userAgreement",
    "verificationService", "whatsInTheBox", "faqs", "homepage", "locationInfo", "logisticsInfo", "recallStatus",
    "smartLabel", "socialMedia", "purchaseSuppliesOrAccessories", "epcis", "productSustainabilityInfo",
    "warrantyInfo", "repairInfo",
})
PLACEHOLDERS = ("dppId", "gtin", "serial", "productId", "endpoint")
_PLACEHOLDER = re.compile(r"\{([A-Za-z]*)\}")
_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,4}")
_SAFE_LOCATION = ":/?#[]@!$&'()*+,;=%-._~"


def relation(term: str) -> str:
    """The relation type written in linksets and Link headers for a link type term (``dpp`` → full URI)."""
    return term if term == PREDECESSOR else VOCAB + term


def link_term(value: str) -> str | None:
    """The term a ``linkType`` value names — a GS1 term, :data:`LINKSET` (``linkset``, ``all``) or
    :data:`PREDECESSOR` — or None for anything else (the resolver then redirects to the default link)."""
    if value in ("linkset", "all", "gs1:linkset"):
        return LINKSET
    if value == PREDECESSOR:
        return PREDECESSOR
    if value.startswith("gs1:"):
        term = value[4:]
    else:
        term = next((value[len(ns):] for ns in _GS1_NAMESPACES if value.startswith(ns)), "")
    return term if term in LINK_TYPES else None


def configured_type(value: str) -> str:
    """``gs1:{term}`` of a configurable link type given as a CURIE or a GS1 URI; BadRequest naming the rule."""
    term = link_term(value)
    if term is None or term in (LINKSET, PREDECESSOR):
        raise BadRequest(f"linkType {value[:80]!r} is not a GS1 Web Vocabulary link type this resolver accepts",
                         details=[FieldError("linkType", "resolver.linkType",
                                             "one of " + ", ".join(f"gs1:{t}" for t in sorted(LINK_TYPES)))])
    return f"gs1:{term}"


@dataclass(frozen=True)
class Target:
    """One link: its relation (full URI or registered token), target URL and the metadata GS1 asks for."""

    rel: str
    href: str
    title: str
    type: str | None = None
    hreflang: tuple[str, ...] = ()

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {"href": self.href, "title": self.title}
        if self.type:
            out["type"] = self.type
        if self.hreflang:
            out["hreflang"] = list(self.hreflang)
        return out


# --------------------------------------------------------------------------------------------- validation
def _refuse(rule: str, path: str, message: str) -> BadRequest:
    return BadRequest(f"{rule}: {message}", details=[FieldError(path, rule, message)])


def validate_template(href: str) -> str:
    """``href`` when it is an acceptable template (module docstring); BadRequest with the rule otherwise."""
    if not isinstance(href, str) or not 0 < len(href) <= 2048:
        raise _refuse("resolver.href", "href", "expected a URL template of 1..2048 characters")
    names = _PLACEHOLDER.findall(href)
    unknown = sorted({n for n in names if n not in PLACEHOLDERS})
    if unknown:
        raise _refuse("resolver.href", "href", f"unknown placeholder {{{unknown[0]}}}; use "
                      + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS))
    bare = _PLACEHOLDER.sub("x", href)
    if not _URL_CHARS.fullmatch(bare):
        raise _refuse("resolver.href", "href", "expected URL characters only (percent-encode others; braces only "
                                               "around placeholders)")
    if "{endpoint}" in href and not href.startswith("{endpoint}/") and href != "{endpoint}":
        raise _refuse("resolver.href", "href", "{endpoint} may only start the template ({endpoint}/…)")
    if not href.startswith("{endpoint}"):
        parts = urlsplit(bare)
        if parts.scheme != "https" or not parts.hostname or "@" in parts.netloc:
            raise _refuse("resolver.https", "href", "expected an https:// URL with a host (or {endpoint}/…)")
    return href


def validate_title(title: str) -> str:
    if not isinstance(title, str) or not 0 < len(title.strip()) <= 256 or not title.isprintable():
        raise _refuse("resolver.title", "title", "expected a human-readable title of 1..256 printable characters")
    return title.strip()


def validate_media_type(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    folded = value.strip().lower()
    if not _MEDIA_TYPE.fullmatch(folded):
        raise _refuse("resolver.type", "type", f"expected a media type such as text/html, got {value[:80]!r}")
    return folded


def validate_hreflang(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    tags = [t.strip() for t in value.split(",")] if isinstance(value, str) else [str(t).strip() for t in value]
    if not 0 < len(tags) <= 8 or not all(_LANGUAGE.fullmatch(t) for t in tags):
        raise _refuse("resolver.hreflang", "hreflang", "expected 1..8 BCP 47 language tags such as en or de-AT")
    return tuple(tags)


# --------------------------------------------------------------------------------------------- expansion
def safe_url(url: str) -> str:
    """``url`` with anything outside the URL characters percent-encoded (a header value stays one line)."""
    return url if _URL_CHARS.fullmatch(url) else quote(url, safe=_SAFE_LOCATION)


def passport_url(endpoint: str, dpp_id: str) -> str:
    """The passport's EN 18222 read on its repository: JSON, or its HTML page for browsers (same URL)."""
    return f"{safe_url(endpoint.rstrip('/'))}/api/v1/dpps/{quote(dpp_id, safe=':')}"


def expand(template: str, values: Mapping[str, str]) -> str:
    """The template with each placeholder replaced (percent-encoded; ``endpoint`` as given, without its
    trailing slash)."""
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        value = values.get(name, "")
        return safe_url(value.rstrip("/")) if name == "endpoint" else quote(value, safe="")
    return _PLACEHOLDER.sub(one, template)


# --------------------------------------------------------------------------------------------- output
def _param(name: str, value: str) -> str:
    if value.isascii() and value.isprintable():
        return f'{name}="' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name}*=UTF-8''" + quote(value, safe="")  # RFC 8187


def link_value(target: Target) -> str:
    """One RFC 8288 link-value."""
    parts = [f"<{target.href}>", f'rel="{target.rel}"', _param("title", target.title)]
    if target.type:
        parts.append(f'type="{target.type}"')
    parts.extend(f'hreflang="{lang}"' for lang in target.hreflang)
    return "; ".join(parts)


def link_header(targets: Iterable[Target], linkset_url: str, *, limit: int = 6144) -> bytes:
    """The ``Link`` header of a redirect: every link (GS1: each with its relation and title) and the linkset's
    URL (rel ``linkset``); past ``limit`` bytes only the linkset's URL, which lists them all."""
    own = f'<{linkset_url}>; rel="linkset"; type="application/linkset+json"'
    value = ", ".join([*(link_value(t) for t in targets), own])
    return (value if len(value) <= limit else own).encode("latin-1")


def linkset_json(contexts: Sequence[tuple[str, Sequence[Target]]]) -> bytes:
    """RFC 9264 §4.2 JSON: one context object per anchor, its targets grouped by relation in first-seen order."""
    out = []
    for anchor, targets in contexts:
        if not targets:
            continue
        context: dict[str, object] = {"anchor": anchor}
        for target in targets:
            group = context.setdefault(target.rel, [])
            assert isinstance(group, list)
            group.append(target.as_json())
        out.append(context)
    return orjson.dumps({"linkset": out})
