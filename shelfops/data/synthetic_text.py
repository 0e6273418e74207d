"""The synthetic shop's catalogue vocabulary and the templates that write its text.

Everything here is fixed data plus small rendering functions; randomness comes in
through the ``rng`` argument, so a seed decides every title and description.

The tree is ``department > group > leaf`` (six departments, 3-4 leaves each). A leaf
lists the product *nouns* it sells (the words shoppers type: "saucepan", "yoga mat"),
its attributes with their values, a typical price, and phrases for descriptions.
Attributes marked ``pre`` read before the noun in a title ("Red Cast Iron Skillet"),
the others after it ("..., 5 qt"). Query terms (nouns, leaf terms, brands, attribute
values) are unique across kinds, which :func:`shelfops.data.synthetic_catalogue.build_vocab`
checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PRE_ATTRS: frozenset[str] = frozenset(
    {"color", "material", "connectivity", "scent", "feature", "season", "fit"}
)
UNITS: frozenset[str] = frozenset({"qt", "ml", "ft", "lb", "mm", "w", "l", "inch", "oz"})


@dataclass(frozen=True)
class LeafSpec:
    """One leaf category of the tree and what it sells."""

    path: tuple[str, str, str]
    term: str | None  # the leaf word a shopper may type ("cookware"); None if unnatural
    nouns: tuple[str, ...]
    attrs: tuple[tuple[str, tuple[str, ...]], ...]
    price: float
    features: tuple[str, ...]
    uses: tuple[str, ...]
    skip: tuple[tuple[str, str], ...] = ()  # (noun, attribute) pairs that do not apply


COLORS_A = ("black", "red", "silver", "blue", "cream")
COLORS_B = ("white", "ivory", "gray", "navy", "sage")
COLORS_C = ("black", "white", "blue", "green", "orange", "yellow")
COLORS_D = ("black", "gray", "navy", "olive", "burgundy", "tan")

LEAVES: tuple[LeafSpec, ...] = (
    LeafSpec(("Home", "Kitchen", "Cookware"), "cookware",
             ("saucepan", "skillet", "stock pot", "dutch oven"),
             (("color", COLORS_A), ("material", ("stainless steel", "cast iron",
                                                  "nonstick aluminum", "copper")),
              ("capacity", ("1 qt", "2 qt", "3 qt", "5 qt", "8 qt"))),
             45.0, ("even heat distribution", "riveted stay-cool handles", "a tight-fitting lid",
                    "an induction-ready base", "oven-safe construction"),
             ("everyday cooking", "simmering sauces and soups", "searing and braising")),
    LeafSpec(("Home", "Kitchen", "Cutlery"), "cutlery",
             ("chef knife", "paring knife", "bread knife", "knife block"),
             (("material", ("stainless steel", "carbon steel", "damascus steel", "ceramic")),
              ("handle", ("walnut", "pakkawood", "polymer", "micarta")),
              ("blade length", ("4 inch", "6 inch", "8 inch", "10 inch"))),
             60.0, ("a full-tang blade", "a hand-honed edge", "a balanced weight",
                    "a bolster for a safe grip", "a protective sheath"),
             ("precise slicing", "prepping vegetables", "daily kitchen work")),
    LeafSpec(("Home", "Bedding", "Sheets"), "bedding",
             ("sheet set", "fitted sheet", "pillowcase", "duvet cover"),
             (("color", COLORS_B), ("material", ("cotton", "linen", "bamboo", "microfiber")),
              ("bed size", ("twin", "full", "queen", "king"))),
             70.0, ("deep pockets", "a breathable weave", "a soft brushed finish",
                    "wrinkle-resistant fabric", "reinforced seams"),
             ("restful sleep", "warm summer nights", "guest rooms")),
    LeafSpec(("Home", "Bath", "Towels"), "bath linens",
             ("bath towel", "hand towel", "bath mat", "washcloth"),
             (("color", COLORS_B), ("material", ("cotton", "bamboo", "microfiber", "waffle weave")),
              ("pack", ("2 pack", "4 pack", "6 pack"))),
             30.0, ("quick-dry loops", "a plush heavy weight", "double-stitched hems",
                   "a non-slip backing", "fade-resistant dye"),
             ("daily showers", "guest bathrooms", "the gym bag")),
    LeafSpec(("Electronics", "Audio", "Headphones"), None,
             ("headphones", "earbuds", "gaming headset", "sleep headphones"),
             (("color", ("black", "white", "silver", "blue", "pink")),
              ("connectivity", ("wireless", "wired")),
              ("feature", ("noise cancelling", "sweatproof", "foldable", "low latency"))),
             80.0, ("deep bass", "a 30-hour battery", "memory foam cushions",
                    "a built-in microphone", "fast pairing"),
             ("commuting", "workouts", "long flights")),
    LeafSpec(("Electronics", "Audio", "Speakers"), "speakers",
             ("portable speaker", "soundbar", "smart speaker", "bookshelf speaker"),
             (("color", ("black", "white", "gray", "blue", "red")),
              ("output", ("10w", "20w", "40w", "100w")),
              ("water rating", ("ipx4", "ipx7", "indoor only"))),
             90.0, ("room-filling sound", "a rugged shell", "voice assistant support",
                    "stereo pairing", "a 12-hour battery"),
             ("backyard parties", "movie nights", "the home office")),
    LeafSpec(("Electronics", "Computing", "Peripherals"), "computer accessories",
             ("keyboard", "mouse", "webcam", "mouse pad"),
             (("color", ("black", "white", "gray", "pink")),
              ("connectivity", ("wireless", "wired")),
              ("layout", ("full size", "compact", "ergonomic"))),
             50.0, ("plug-and-play setup", "a slim profile", "multi-device pairing",
                    "a soft-touch finish", "a long-lasting battery"),
             ("the home office", "gaming", "travel"),
             (("webcam", "layout"), ("mouse pad", "connectivity"))),
    LeafSpec(("Electronics", "Power", "Chargers"), "charging",
             ("wall charger", "power bank", "charging cable", "car charger"),
             (("color", ("black", "white", "gray")),
              ("output", ("20w", "30w", "65w", "100w")),
              ("cable length", ("3 ft", "6 ft", "10 ft"))),
             25.0, ("fast charging", "a durable build", "overheat protection",
                    "two usb-c ports", "a compact design"),
             ("phones and tablets", "laptops", "road trips"),
             (("wall charger", "cable length"), ("power bank", "cable length"))),
    LeafSpec(("Garden", "Tools", "Hand Tools"), "garden tools",
             ("trowel", "pruning shears", "hand rake", "weeder"),
             (("color", ("green", "orange", "black", "red")),
              ("material", ("stainless steel", "carbon steel", "aluminum")),
              ("handle", ("ash wood", "fiberglass", "rubber grip"))),
             20.0, ("a rust-proof head", "an ergonomic grip", "a hanging loop",
                    "a sharpened edge", "a lifetime guarantee"),
             ("planting bulbs", "weeding beds", "pruning shrubs")),
    LeafSpec(("Garden", "Outdoor Living", "Patio Furniture"), "patio furniture",
             ("patio chair", "lounge chair", "bistro table", "outdoor bench"),
             (("color", ("white", "gray", "brown", "navy", "green")),
              ("material", ("teak", "wicker", "aluminum", "recycled plastic")),
              ("seats", ("1 seat", "2 seat", "4 seat"))),
             180.0, ("weatherproof cushions", "a powder-coated frame", "uv-resistant finish",
                     "easy assembly", "stackable design"),
             ("the patio", "balconies", "poolside lounging")),
    LeafSpec(("Garden", "Planting", "Planters"), "plant pots",
             ("planter", "flower pot", "raised bed", "window box"),
             (("color", ("white", "terracotta", "gray", "green", "black")),
              ("material", ("ceramic", "cedar", "recycled plastic", "concrete")),
              ("size", ("small", "medium", "large"))),
             35.0, ("drainage holes", "a saucer included", "frost-resistant walls",
                    "self-watering reservoir", "a modern matte glaze"),
             ("herbs", "patio flowers", "indoor plants")),
    LeafSpec(("Garden", "Watering", "Hoses"), "watering",
             ("garden hose", "hose nozzle", "sprinkler", "watering can"),
             (("color", ("green", "blue", "black", "yellow")),
              ("material", ("rubber", "vinyl", "brass")),
              ("hose length", ("25 ft", "50 ft", "100 ft"))),
             30.0, ("kink-free design", "crush-proof fittings", "adjustable spray patterns",
                    "a leak-proof seal", "lightweight build"),
             ("lawns", "vegetable beds", "washing the car")),
    LeafSpec(("Sports", "Fitness", "Yoga"), "yoga gear",
             ("yoga mat", "yoga block", "yoga strap", "meditation cushion"),
             (("color", ("purple", "teal", "black", "pink", "gray")),
              ("material", ("cork", "natural rubber", "tpe", "pvc")),
              ("thickness", ("4 mm", "6 mm", "8 mm"))),
             35.0, ("a non-slip texture", "alignment lines", "a carry strap",
                    "extra cushioning", "sweat-resistant surface"),
             ("hot yoga", "pilates", "home workouts"),
             (("yoga strap", "thickness"), ("yoga block", "thickness"))),
    LeafSpec(("Sports", "Fitness", "Strength"), "strength training",
             ("dumbbell", "kettlebell", "resistance band", "weight bench"),
             (("color", ("black", "gray", "red", "blue")),
              ("material", ("cast iron", "neoprene", "rubber", "steel frame")),
              ("weight", ("5 lb", "10 lb", "20 lb", "35 lb"))),
             55.0, ("a knurled handle", "a flat base", "floor-friendly coating",
                    "clearly marked weights", "compact storage"),
             ("home gyms", "strength workouts", "rehab exercises"),
             (("weight bench", "weight"),)),
    LeafSpec(("Sports", "Camping", "Tents"), "camping gear",
             ("dome tent", "backpacking tent", "hammock", "camping tarp"),
             (("color", ("green", "orange", "gray", "blue", "tan")),
              ("capacity", ("1 person", "2 person", "4 person", "6 person")),
              ("season", ("3 season", "4 season"))),
             150.0, ("a full rainfly", "color-coded poles", "taped seams",
                     "a packable stuff sack", "mesh ventilation"),
             ("weekend camping", "thru-hikes", "festivals")),
    LeafSpec(("Sports", "Cycling", "Bike Gear"), "cycling gear",
             ("bike helmet", "bike light", "bike lock", "saddle bag"),
             (("color", ("black", "white", "red", "yellow", "blue")),
              ("size", ("small", "medium", "large")),
              ("mount", ("handlebar", "seat post", "frame"))),
             40.0, ("a usb rechargeable battery", "high-visibility reflectors",
                    "a quick-release mount", "an adjustable dial fit", "hardened steel links"),
             ("commuting", "night rides", "road cycling"),
             (("bike light", "size"), ("bike lock", "size"), ("bike helmet", "mount"))),
    LeafSpec(("Apparel", "Outerwear", "Jackets"), "outerwear",
             ("rain jacket", "puffer jacket", "fleece jacket", "windbreaker"),
             (("color", COLORS_D), ("fit", ("mens", "womens", "unisex")),
              ("size", ("small", "medium", "large", "x-large"))),
             90.0, ("a packable hood", "zippered pockets", "a water-repellent finish",
                    "a recycled insulation fill", "adjustable cuffs"),
             ("rainy commutes", "cold mornings", "hiking trips")),
    LeafSpec(("Apparel", "Footwear", "Shoes"), "footwear",
             ("running shoe", "hiking boot", "sneaker", "sandal"),
             (("color", COLORS_D), ("fit", ("mens", "womens", "unisex")),
              ("shoe size", ("size 7", "size 8", "size 9", "size 10", "size 11"))),
             85.0, ("a cushioned midsole", "a grippy rubber outsole", "a breathable mesh upper",
                    "a padded collar", "a removable insole"),
             ("daily runs", "trail hikes", "all-day wear")),
    LeafSpec(("Apparel", "Accessories", "Bags"), "bags",
             ("backpack", "tote bag", "duffel bag", "crossbody bag"),
             (("color", COLORS_D),
              ("material", ("canvas", "leather", "nylon", "recycled polyester")),
              ("volume", ("10 l", "20 l", "30 l", "45 l"))),
             60.0, ("a padded laptop sleeve", "water-resistant fabric", "hidden pockets",
                    "comfortable straps", "a sturdy zipper"),
             ("travel", "school", "the gym")),
    LeafSpec(("Beauty", "Skin Care", "Moisturizers"), "skin care",
             ("face cream", "moisturizer", "night cream", "eye cream"),
             (("skin type", ("dry skin", "oily skin", "sensitive skin", "combination skin")),
              ("scent", ("unscented", "lavender", "citrus", "rose")),
              ("volume", ("30 ml", "50 ml", "100 ml"))),
             28.0, ("hyaluronic acid", "a lightweight texture", "ceramides",
                    "no added parabens", "vitamin c"),
             ("morning routines", "overnight repair", "all-day hydration")),
    LeafSpec(("Beauty", "Hair Care", "Shampoo"), "hair care",
             ("shampoo", "conditioner", "hair mask", "dry shampoo"),
             (("hair type", ("curly hair", "fine hair", "color treated hair", "thick hair")),
              ("scent", ("unscented", "coconut", "citrus", "mint")),
              ("volume", ("250 ml", "500 ml", "1000 ml"))),
             18.0, ("a sulfate-free formula", "argan oil", "a salon-quality lather",
                    "biotin", "a gentle ph balance"),
             ("daily washing", "frizz control", "weekly treatments")),
    LeafSpec(("Beauty", "Tools", "Hair Tools"), "hair tools",
             ("hair dryer", "flat iron", "curling iron", "hair brush"),
             (("color", ("black", "white", "pink", "rose gold")),
              ("output", ("1200w", "1800w", "2000w")),
              ("plate", ("ceramic", "titanium", "tourmaline"))),
             60.0, ("ionic technology", "a lightweight build", "a salon-grade finish",
                    "a travel pouch", "an ergonomic handle"),
             ("quick styling", "salon blowouts", "travel"),
             (("hair brush", "output"),)),
    LeafSpec(("Beauty", "Fragrance", "Perfume"), "fragrance",
             ("eau de parfum", "body mist", "cologne", "perfume oil"),
             (("scent", ("floral", "woody", "citrus", "fresh", "vanilla")),
              ("volume", ("30 ml", "50 ml", "100 ml")),
              ("intensity", ("light", "moderate", "intense"))),
             70.0, ("long-lasting notes", "a refillable bottle", "natural extracts",
                    "a travel atomizer", "cruelty-free ingredients"),
             ("date nights", "everyday wear", "gifting")),
)

BRANDS: dict[str, tuple[str, ...]] = {
    "Home": ("Acme", "Hearthstone", "Copperline", "Linden Home", "Bellwood", "Oakhaven",
             "Maple Row"),
    "Electronics": ("Voltra", "Sonique", "Northwave", "Pixelcore", "Ampere Labs", "Zentrik"),
    "Garden": ("Greenfield", "Rootwise", "Fernhill", "Bloomcraft", "Yardly"),
    "Sports": ("Summit Ridge", "Trailhead", "Ironpeak", "Kinetix", "Alpenglow", "Velox"),
    "Apparel": ("Harbor Pine", "Stridewell", "Nomad Supply", "Urbanloom", "Cobalt Coast"),
    "Beauty": ("Lumiere", "Pure Petal", "Aveline", "Glowhaus", "Verdant Botanics"),
}

SERIES: tuple[str, ...] = (
    "Pro", "Classic", "Essentials", "Everyday", "Signature", "Elite", "Studio", "Original",
    "Max", "Lite", "Select", "Heritage", "Plus", "Core", "Artisan",
)

CLOSINGS: tuple[str, ...] = (
    "Backed by a {years}-year warranty.",
    "Ships in recyclable packaging.",
    "Rated {rating} out of 5 by verified buyers.",
    "A customer favourite since {year}.",
    "Free returns within 30 days.",
    "Designed in-house and tested for durability.",
    "Makes a thoughtful gift.",
)

# Searches for things the shop does not sell: the ranker returns nothing for them.
ZERO_RESULT_QUERIES: tuple[str, ...] = (
    "trampoline", "kayak paddle", "guitar strings", "piano bench", "lawn mower",
    "espresso machine", "snow blower", "aquarium filter", "dog leash", "baby stroller",
    "golf balls", "ski goggles", "printer ink", "gift card", "fishing rod", "air fryer",
    "wedding dress", "car seat", "violin", "pool table", "sewing machine", "telescope",
    "cat litter", "lego set", "tire pump", "fire pit", "treadmill", "chess set",
    "surfboard", "drone",
)

_ACRONYMS = {"tpe": "TPE", "pvc": "PVC"}
_IRREGULAR = {"knife": "knives", "shears": "shears", "headphones": "headphones",
              "earbuds": "earbuds", "mouse": "mice"}


def plural(noun: str) -> str:
    """English plural of a (possibly multi-word) noun: the last word is inflected."""
    head, _, last = noun.rpartition(" ")
    if last in _IRREGULAR:
        word = _IRREGULAR[last]
    elif last.endswith(("s", "x", "ch", "sh")):
        word = last + "es"
    elif last.endswith("y") and last[-2:-1] not in "aeiou":
        word = last[:-1] + "ies"
    else:
        word = last + "s"
    return f"{head} {word}" if head else word


def display(text: str) -> str:
    """Title-case a phrase for a product title, keeping units and codes lower case."""
    words = []
    for w in text.split(" "):
        if w in _ACRONYMS:
            words.append(_ACRONYMS[w])
        elif w in UNITS or w[:1].isdigit() or w.startswith(("ipx", "usb")):
            words.append(w)
        else:
            words.append("-".join(p[:1].upper() + p[1:] for p in w.split("-")))
    return " ".join(words)


def _pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def render_title(rng: np.random.Generator, *, brand: str, noun: str,
                 attrs: list[tuple[str, str]], leaf: LeafSpec) -> str:
    """A realistic product title, e.g. "Acme Red Cast Iron Skillet, 5 qt"."""
    pre = [display(v) for a, v in attrs if a in PRE_ATTRS]
    post = [display(v) for a, v in attrs if a not in PRE_ATTRS]
    if len(pre) + len(post) > 1 and rng.random() < 0.25:  # some titles leave one out
        (pre if pre and (not post or rng.random() < 0.5) else post).pop()
    n = display(noun)
    series = _pick(rng, SERIES)
    feature = _pick(rng, leaf.features).removeprefix("a ").removeprefix("an ")
    k = int(rng.integers(5))
    if k == 0:
        title = " ".join([brand, *pre, n]) + "".join(f", {p}" for p in post)
    elif k == 1:
        title = f"{brand} {series} {n}" + (f" - {' '.join(pre + post)}" if pre or post else "")
    elif k == 2:
        title = " ".join([*pre, n]) + f" by {brand}" + (f" ({', '.join(post)})" if post else "")
    elif k == 3:
        title = f"{brand} {n}" + (f" ({', '.join(pre + post)})" if pre or post else "")
    else:
        title = " ".join([brand, series, *post, *pre, n]) + f" with {display(feature)}"
    return title


def render_description(rng: np.random.Generator, *, brand: str, noun: str,
                       attrs: list[tuple[str, str]], leaf: LeafSpec) -> str:
    """Two or three sentences about the product, in the shop's house style."""
    pre = " ".join(v for a, v in attrs if a in PRE_ATTRS)
    post = ", ".join(v for a, v in attrs if a not in PRE_ATTRS)
    f1, f2, f3 = (leaf.features[i] for i in rng.permutation(len(leaf.features))[:3])
    use = _pick(rng, leaf.uses)
    thing = f"{pre} {noun}".strip()
    intro = _pick(rng, (
        f"This {thing} from {brand} is built for {use}.",
        f"Meet the {brand} {thing}, made for {use}.",
        f"{brand} designed this {thing} with {use} in mind.",
        f"The {brand} {noun} brings {f1} to {use}.",
    ))
    detail = _pick(rng, (
        f"It features {f2} and {f3}.",
        f"Highlights include {f1}, {f2} and {f3}.",
        f"Expect {f2}, plus {f3}.",
    ))
    if post:
        detail += " " + _pick(rng, (f"Specs: {post}.", f"Available here in {post}.",
                                    f"This listing is the {post} version."))
    closing = _pick(rng, CLOSINGS).format(
        years=int(rng.integers(1, 6)), rating=f"{rng.uniform(3.6, 4.9):.1f}",
        year=int(rng.integers(2008, 2024)))
    parts = [intro, detail] + ([closing] if rng.random() < 0.7 else [])
    return " ".join(parts)
