"""What the PII layer must leave alone in store chats: the store's identifiers and product words.

``ID_PATTERNS`` use the named group ``v`` for the kept span (the domain port's
``PiiAllowances``); ``policy.yaml`` lists the same identifiers for the input PII layer with the
group ``id`` (the layer's own parameter), see :data:`POLICY_ALLOW_PATTERNS`.
"""

from __future__ import annotations

__all__ = ["ID_PATTERNS", "NON_NAMES", "POLICY_ALLOW_PATTERNS"]

ID_PATTERNS: tuple[str, ...] = (
    r"(?<![\w#])(?P<v>#?W\d{7})\b",                                # order ids: #W2378156
    r"\b(?:credit_card|gift_card|paypal)_\d+\b",                   # payment method ids
    r"\b[a-z]+(?:_[a-z]+)+_\d+\b",                                 # user ids: mei_kovacs_8020
    # Item and product ids are ten digits, like a phone number: only after a cue word ...
    r"(?i:\b(?:item|items|product|products|variant|article|artículo|artikel|produit|prodotto)"
    r"(?:\s*(?:id|ids|number|numbers|no\.?|nr\.?|#))?(?:\s+(?:is|are|ist|es|est))?\s*(?:[:#]\s*)?)"
    r"(?P<v>\d{10})\b",
    # ... or as JSON strings in records (item, product and 12-digit tracking ids).
    r"\"(?P<v>\d{10,12})\"",
)

#: The same identifiers for the current input PII layer's ``allow_patterns`` (group ``id``).
POLICY_ALLOW_PATTERNS: tuple[str, ...] = tuple(p.replace("(?P<v>", "(?P<id>") for p in ID_PATTERNS)

# Words of the store's 50 product names: capitalised in chats ("the Office Chair"), never names.
NON_NAMES: frozenset[str] = frozenset(
    """
    action camera air purifier backpack bicycle bluetooth speaker bookshelf coffee maker cycling
    helmet desk lamp digital dumbbell set e-reader electric kettle toothbrush espresso machine
    fleece jacket gaming mouse garden hose grill headphones hiking boots indoor security jigsaw
    puzzle led light bulb laptop luggage makeup kit mechanical keyboard notebook office chair
    patio umbrella perfume pet bed portable charger running shoes skateboard smart thermostat
    watch smartphone sneakers sunglasses t-shirt tablet tea vacuum cleaner wall clock water
    bottle wireless earbuds wristwatch yoga mat
    """.split()
)
