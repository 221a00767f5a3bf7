"""Input layer: help to get a weapon, drugs or someone else's identity past security unnoticed.

Asking whether a knife may travel in checked baggage is a policy question; asking how to carry
it *so that nobody finds it* is asking for help to break the law. Neither half alone is an
attack, and the harmful head (trained mostly on English) misses the pair in other languages.
This layer matches both in one sentence, in en, es, fr, de, it, pt, ru and zh:

* **concealment**: "without anyone noticing", "sneak", "smuggle", "hide", "get it past
  security", "sin que se den cuenta", "sans me faire remarquer", "unbemerkt", "senza che lo
  trovino", "sem que percebam", "чтобы не нашли", "不被发现";
* **an object**: a weapon or blade, explosives, drugs, or another person's passport or a false
  identity document.

It BLOCKs by default (``action: escalate`` makes it uncertain); ``metadata`` says which
language matched, never the text.
"""

from __future__ import annotations

import re
import time
from typing import ClassVar

from nodes.guards.base import Detector, GuardContext, GuardResult, register_guard
from nodes.guards.normalize import strip_accents

__all__ = ["EvasionLayer", "find_evasion"]

_SENTENCE = re.compile(r"[^.!?。！？\n]+")
# Per language: (concealment, object). Accent-free and lower case, except Russian and Chinese.
_GRAMMAR: dict[str, tuple[str, str]] = {
    "en": (
        r"without (?:them|anyone|anybody|security|staff|the crew|the scanner|customs|it being|being|getting)"
        r"(?: \w+)? (?:noticing|finding|seeing|knowing|catching|noticed|found|detected|seen|caught|spotted)"
        r"|\bsneak|\bsmuggl|\bhid(?:e|ing|den)\b|\bconceal|\bget (?:it|them|\w+) (?:past|"
        r"through) (?:security|the scanner|"
        r"customs|the x-?ray)|\bundetected\b|\bso (?:they|nobody|no one|security) (?:won'?t|can'?t|doesn'?t|don'?t) "
        r"(?:find|notice|see|detect)",
        r"\bknife|\bknives|\bblade|\bgun\b|\bguns\b|\bpistol|\bfirearm|\bweapon|\bammunition|\bbullets?\b|"
        r"\bexplosive|"
        r"\bbomb\b|\bdrugs?\b|\bcocaine|\bheroin|\b(?:my |his |her |a |someone'?s? )?(?:brother|sister|friend|cousin|"
        r"father|mother|someone else|another person)'?s? (?:passport|id\b|identity card)|\bfake (?:passport|id\b)|"
        r"\bforged (?:passport|id\b)|\bpassport of (?:my|someone|another)",
    ),
    "es": (
        r"sin que (?:se den cuenta|nadie se entere|lo (?:encuentren|detecten|vean|noten)|me (?:vean|pillen|"
        r"descubran))|"
        r"sin ser (?:detectad|vist|descubiert)|\bescond|\bocult|\bcolar\b|de contrabando|\bpasar (?:lo|"
        r"la)? ?(?:por|el) "
        r"control",
        r"\bcuchill|\bnavaja|\barma|\bpistola|\bexplosiv|\bbomba|\bdroga|\bcocaina|\bpasaporte de (?:mi|otr|alguien)|"
        r"\bpasaporte falso|\bdocumento falso",
    ),
    "fr": (
        r"sans (?:me faire (?:remarquer|prendre|voir)|qu'?(?:ils|on|personne) (?:ne )?(?:le |la |"
        r"les )?(?:trouve|remarque|"
        r"voie|detecte)|que personne ne|etre (?:vu|detecte|repere|remarque))|\bcacher|\bdissimul|en douce|"
        r"\bfaire passer "
        r"(?:un|une|des|le|la|les|mon|ma)|\bpasser (?:le|la|les)? ?(?:controle|securite)",
        r"\bcouteau|\blame\b|\barme|\bpistolet|\bexplosif|\bbombe|\bdrogue|\bcocaine|\bpasseport (?:de|"
        r"d'?)(?: ?mon| ?ma"
        r"| ?quelqu'?un| ?un autre| ?une autre)|\bfaux passeport|\bfaux papiers",
    ),
    "de": (
        r"ohne dass (?:es )?(?:jemand|sie|die|man|das personal|die kontrolle) (?:\w+ )?(?:merkt|findet|sieht|bemerkt|"
        r"entdeckt)|\bunbemerkt|\bversteck|\bschmugg|\bdurch die (?:kontrolle|sicherheitskontrolle|sicherheit) "
        r"(?:bringen|kriegen|bekommen|schmuggeln)",
        r"\bmesser|\bklinge|\bwaffe|\bpistole|\bsprengstoff|\bbombe|\bdrogen|\bkokain|"
        r"\b(?:reise)?pass (?:meines|meiner|"
        r"von meinem|von meiner|eines anderen|einer anderen)|\bgefalschten? (?:pass|ausweis)",
    ),
    "it": (
        r"senza che (?:lo |la |li |le |se ne |nessuno )?(?:trovino|accorgano|vedano|scoprano|noti|se ne accorga)|"
        r"senza (?:essere|farmi) (?:vist|notat|scopert|beccat)|\bnascond|\bcontrabband|di nascosto|\bfar passare",
        r"\bcoltell|\blama\b|\barma|\bpistola|\besplosiv|\bbomba|\bdroga|\bcocaina|\bpassaporto di (?:mio|"
        r"mia|qualcun|un "
        r"altr)|\bpassaporto falso|\bdocumento falso",
    ),
    "pt": (
        r"sem que (?:ninguem |eles |a seguranca )?(?:percebam|perceba|descubram|vejam|encontrem|note|notem)|"
        r"sem (?:ser|que me) (?:vist|notad|pego|descobert)|\besconde|\besconder|\bcontrabande|\bescondid|"
        r"\bpassar (?:pela|na) (?:seguranca|revista|inspecao)",
        r"\bfaca|\blamina|\barma|\bpistola|\bexplosiv|\bbomba|\bdroga|\bcocaina|\bpassaporte (?:do|da|"
        r"de) (?:meu|minha|"
        r"outr|alguem)|\bpassaporte falso|\bdocumento falso",
    ),
    "ru": (
        r"чтобы (?:его |её |ее |их |никто |охрана )?не (?:нашли|заметили|увидели|обнаружили|нашла|заметила)|"
        r"незаметно|\bспрята|\bпронест|\bпронести|\bпровезти тайно|\bконтрабанд",
        r"\bнож|\bлезви|\bоружи|\bпистолет|\bвзрывчат|\bбомб|\bнаркотик|\bкокаин|\bпаспорт (?:брата|сестры|друга|"
        r"другого|чужой)|\bчужой паспорт|\bподдельн\w* паспорт",
    ),
    "zh": (
        r"不被(?:发现|查到|注意)|偷偷|藏|夹带|蒙混|躲过安检|避开安检|带过安检",
        r"刀|枪|武器|炸药|炸弹|毒品|可卡因|别人的护照|(?:哥哥|弟弟|姐姐|妹妹|朋友)的护照|假护照",
    ),
}
_COMPILED = {lang: (re.compile(hide), re.compile(thing)) for lang, (hide, thing) in _GRAMMAR.items()}


def find_evasion(text: str) -> str | None:
    """Return the language whose grammar finds concealment and an object in one sentence, else None."""
    cased = text.casefold()
    folded = strip_accents(cased)
    for lang, (hide, thing) in _COMPILED.items():
        # Stripping accents would turn Russian "й" into "и": Cyrillic and CJK are matched as written.
        target = cased if lang in ("ru", "zh") else folded
        for sentence in _SENTENCE.findall(target):
            if hide.search(sentence) and thing.search(sentence):
                return lang
    return None


@register_guard("evasion")
class EvasionLayer(Detector):
    """Guard layer: stop requests to get weapons, drugs or another's identity past security (module docstring)."""

    name: ClassVar[str] = "evasion"

    def check(self, text: str, ctx: GuardContext) -> GuardResult:
        """Return BLOCK/ESCALATE when ``text`` asks how to carry something forbidden unnoticed."""
        start = time.perf_counter()
        language = find_evasion(text)
        return self.allowed(start) if language is None else self.found(start, {"language": language})
