"""What the PII layer must leave alone in airline chats: identifiers, places, airline words.

Given to the engine as ``DomainPlugin.pii`` (see ``graph.domain.PiiAllowances``).
"""

from __future__ import annotations

from graph.domain import PiiAllowances

__all__ = ["PII_ALLOWANCES"]

# Identifiers that are not PII. Order matters as in one alternation: the first that matches wins.
_ID_PATTERNS = (
    r"\b[A-Z]{3}[-–/][A-Z]{3}\b",                                  # routes: ORD-LAX
    r"\b(?:credit_card|gift_card|certificate|paypal|bank)_\d+\b",  # payment method ids
    r"\b[a-z]+(?:_[a-z]+)+_\d+\b",                                 # user ids: mia_li_3668
    r"\b(?=[A-Z0-9]{6}\b)[0-9]*[A-Z][A-Z0-9]*\b",                  # reservation ids: ZFA04Y
    r"\b[A-Z]{2,3}\d{1,4}[A-Z]?\b",                                # flight numbers: HAT123
    r"\b[A-Z]{3}\b",                                               # airport codes: JFK
    # E-ticket numbers (13 digits, the first 3 name the airline) look like German phone numbers.
    r"(?i:\be-?tickets?\b|\betkt\b|\btickets?\s*(?:no\b|number|num\b|#))[^\d\n]{0,20}?"
    r"(?<!\d)(?P<v>\d{3}[- ]?\d{10})(?!\d)",
)

# Places that the small model often tags PERSON in flight chats ("fly to Vegas"). A PERSON found
# by NER alone that is exactly one of these is dropped, and these words do not trigger NER;
# names found by a cue ("my daughter Charlotte") are kept.
_PLACES = frozenset(
    " ".join(place.split())
    for place in """
    new york|nyc|new york city|big apple|los angeles|la|chicago|chi-town|chitown|chi town|houston
    |phoenix|philadelphia|philly|san antonio|san diego|dallas|san jose|austin|jacksonville
    |fort worth|columbus|charlotte|san francisco|frisco|sf|indianapolis|seattle|denver
    |washington|dc|boston|el paso|nashville|detroit|oklahoma city|portland|las vegas|vegas
    |memphis|louisville|baltimore|milwaukee|albuquerque|tucson|fresno|sacramento|kansas city
    |mesa|atlanta|omaha|colorado springs|raleigh|miami|long beach|virginia beach|oakland
    |minneapolis|tulsa|tampa|arlington|new orleans|nola|cleveland|honolulu|anchorage|orlando
    |salt lake city|pittsburgh|cincinnati|st louis|st. louis|buffalo|newark|burbank|savannah
    |charleston|reno|boise|spokane|madison|richmond|hartford|providence|albany|sarasota
    |fort lauderdale|palm springs|santa barbara|san juan|cancun|cancún|toronto|montreal
    |montréal|vancouver|calgary|ottawa|mexico city|london|paris|berlin|madrid|rome|milan
    |amsterdam|frankfurt|munich|zurich|geneva|vienna|prague|dublin|lisbon|barcelona|brussels
    |copenhagen|stockholm|oslo|helsinki|athens|istanbul|dubai|doha|tel aviv|cairo|lagos
    |nairobi|johannesburg|cape town|mumbai|delhi|new delhi|bangalore|singapore|bangkok
    |hong kong|tokyo|osaka|seoul|beijing|shanghai|taipei|manila|jakarta|sydney|melbourne
    |auckland|são paulo|sao paulo|rio|rio de janeiro|buenos aires|lima|bogotá|bogota
    |santiago|havana|alabama|alaska|arizona|arkansas|california|colorado|connecticut
    |delaware|florida|georgia|hawaii|idaho|illinois|indiana|iowa|kansas|kentucky|louisiana
    |maine|maryland|massachusetts|michigan|minnesota|mississippi|missouri|montana|nebraska
    |nevada|new hampshire|new jersey|new mexico|north carolina|north dakota|ohio|oklahoma
    |oregon|pennsylvania|rhode island|south carolina|south dakota|tennessee|texas|utah
    |vermont|virginia|west virginia|wisconsin|wyoming|jordan|chad|israel|india|china|japan
    |france|germany|italy|spain|mexico|canada|brazil|peru|chile|ireland|england|scotland
    |porto|oporto|faro|lisboa|madeira|azores|seville|sevilla|malaga|málaga|valencia|bilbao
    |ibiza|mallorca|majorca|tenerife|lanzarote|naples|napoli|venice|venezia|roma|milano
    |firenze|sicily|sardinia|hamburg|cologne|köln|düsseldorf|stuttgart|münchen|wien|zürich
    |basel|bern|salzburg|marseille|lyon|bordeaux|toulouse|bruxelles|krakow|kraków|warsaw
    |budapest|bucharest|belgrade|zagreb|dubrovnik|santorini|mykonos|crete|antalya|edinburgh
    |glasgow|manchester|liverpool|birmingham|bristol|cork|galway|reykjavik|marrakech
    |casablanca|tunis|phuket|bali|hanoi|kyoto|europe|asia|africa|schengen
    """.split("|")
)

# Capitalised airline words that are not names (they must not trigger NER).
_NON_NAMES = frozenset(
    """
    economy basic business first class premium gold silver regular platinum member
    airline airlines airport terminal gate flight flights seat baggage bag bags
    delta united southwest jetblue spirit frontier allegiant
    hawaiian lufthansa emirates qatar ryanair easyjet klm iberia aeromexico avianca
    reservation reservations booking bookings passenger passengers checked travel booked
    cabin insurance certificate compensation itinerary trip round one way
    buchung flug reise koffer gepäck reisepass passagier fluggast meilen
    esta tsa precheck
""".split()
)

PII_ALLOWANCES = PiiAllowances(
    id_patterns=_ID_PATTERNS,
    caps_ids=(r"[A-Z]{3}",),  # airport codes
    places=_PLACES,
    non_names=_NON_NAMES,
)
