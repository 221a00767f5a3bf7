"""The store's words for other people and their data (``DomainPlugin.third_party``).

The engine's ``data_request`` input layer knows the generic cues (another customer, a named
person's possessive, an address, a phone number, "it isn't mine"...); these are what a
store's customers say when they ask for someone else's orders: the buyer of order #W..., other
shoppers' purchases, where someone else's parcel goes. Regular expressions matched
case-insensitively on an NFKC copy of one clause; the store's order ids are ``#W`` and seven
digits.
"""

from __future__ import annotations

from typing import Any

__all__ = ["THIRD_PARTY_DATA", "THIRD_PARTY_PHRASES", "third_party"]

# Kinds of a shopper's data: orders, purchases, where a parcel goes.
THIRD_PARTY_DATA: tuple[str, ...] = (
    r"\border(?:s| history| status| details)?\b|\bpurchases?\b|\bbought\b|\bdelivery (?:address|details)\b"
    r"|\bshipping\b|\bships? to\b|\btracking (?:number|link|info)\b|\bparcel\b|\bpackage\b",
    r"\bpedidos?\b|\bcompras?\b|\bencomendas?\b|\bcommandes?\b|\bachats?\b|\bcolis\b|\bbestellung(?:en)?\b"
    r"|\bpaket\b|\bordin[ei]\b|\bacquist[io]\b|\bpacco\b|\bзаказ\w*|订单",
)

# A stranger of the shop: another shopper, the buyer of an order that is not the customer's.
THIRD_PARTY_PHRASES: tuple[str, ...] = (
    r"\b(?:another|other)\s+(?:shoppers?|buyers?)\b|\bwhich (?:shoppers|buyers)\b",
    r"\bthe\s+(?:customer|buyer|person|shopper|one)\s+(?:who|that)\s+(?:placed|ordered|bought|made|purchased)\b",
    r"\bwho(?:ever)?\s+(?:placed|ordered|bought|made|purchased)\b[^.?!]{0,30}#?\bw\d{7}\b",
    r"\b(?:someone|somebody) else'?s\s+(?:order|purchase|parcel|package|delivery)",
    r"\b(?:everyone|everybody|all (?:the )?customers)\s+(?:who|that)\s+(?:ordered|bought|purchased)\b",
    r"\bquien (?:hizo|compr[oó]|pidi[oó])\b|\bqui a (?:command[ée]|achet[ée])\b|\bwer hat\b[^.?!]{0,30}\bbestellt\b"
    r"|\bquem (?:fez|comprou)\b|\bchi ha (?:ordinato|comprato)\b",
)


def third_party() -> Any:
    """Return the vocabulary as the engine's port type (looked up when called, as ``plugin()`` does)."""
    import importlib

    port = vars(importlib.import_module("graph.domain"))
    return port["ThirdPartyVocabulary"](data=THIRD_PARTY_DATA, third_party=THIRD_PARTY_PHRASES)
