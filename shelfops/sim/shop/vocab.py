"""The synthetic shop's catalogue vocabulary: fixed data, read as tables (the templates that
write titles and descriptions from it are :mod:`shelfops.sim.shop.text`).

The tree is ``department > group > leaf`` (six departments, 3-5 leaves each). A leaf
lists the product *nouns* it sells, each with the other words shoppers use for it
(``N("sofa", "couch", "settee")``: titles use the first, queries often the others), its
attributes with their values (:data:`VALUE_SYNONYMS` and :func:`unit_synonyms` give the
shoppers' words for those: "grey", "5 quart"), a typical price, and phrases for
descriptions. Attributes marked ``pre`` read before the noun in a title ("Red Cast Iron
Skillet"), the others after it ("..., 5 qt").

The text is hard on purpose, as a real catalogue's is:

* head words recur across leaves ("mat" in Bath and Yoga, "stand" in five leaves, a
  "towel" in Bath, Yoga, Strength, Camping and Hair Care), and a product of a kind sold in
  several leaves reads like its kind (:data:`KIND_FEATURES`), so a word alone does not
  tell the category;
* terse titles name a product by its head word ("Kinetix Cork Mat"), and leave out some
  attribute values;
* descriptions mix a leaf's own phrases with its department's and the shop's, and often
  cross-sell products of another category; house brands (:data:`HOUSE_BRANDS`) sell in
  every department.

Every query form (nouns, synonyms, plurals, leaf terms, brands, values) means one thing,
which :func:`shelfops.sim.shop.catalogue.build_vocab` checks.
"""

from __future__ import annotations

from dataclasses import dataclass

PRE_ATTRS: frozenset[str] = frozenset(
    {"color", "material", "connectivity", "scent", "feature", "season", "fit"}
)
UNITS: frozenset[str] = frozenset({"qt", "ml", "ft", "lb", "mm", "w", "l", "inch", "oz"})


def N(word: str, *synonyms: str) -> tuple[str, ...]:  # noqa: N802 - reads as a table
    """A product noun: the catalogue's word, then the words shoppers also use for it."""
    return (word, *synonyms)


@dataclass(frozen=True)
class LeafSpec:
    """One leaf category of the tree and what it sells."""

    path: tuple[str, str, str]
    term: str | None  # the leaf word a shopper may type ("cookware"); None if unnatural
    noun_forms: tuple[tuple[str, ...], ...]  # N(catalogue word, *shopper synonyms)
    attrs: tuple[tuple[str, tuple[str, ...]], ...]
    price: float
    features: tuple[str, ...]
    uses: tuple[str, ...]
    skip: tuple[tuple[str, str], ...] = ()  # (noun, attribute) pairs that do not apply
    term_syn: tuple[str, ...] = ()  # other words for the leaf ("pots and pans")

    @property
    def nouns(self) -> tuple[str, ...]:
        return tuple(f[0] for f in self.noun_forms)


COLORS_A = ("black", "red", "silver", "blue", "cream")
COLORS_B = ("white", "ivory", "gray", "navy", "sage")
COLORS_D = ("black", "gray", "navy", "olive", "burgundy", "tan")
COLORS_E = ("gray", "navy", "cream", "green", "brown", "blue")

# Head words ("mat", "cover", "stand", "brush", "bag", "pad", "chair", "bench", "pot",
# "sheet", "cream", "oil", "light") recur across leaves on purpose: a word alone does not
# tell the category, and many shopper synonyms share a word with another leaf's products.
LEAVES: tuple[LeafSpec, ...] = (
    LeafSpec(("Home", "Kitchen", "Cookware"), "cookware",
             (N("saucepan", "sauce pan", "milk pan", "small pot"),
              N("skillet", "frying pan", "fry pan", "frypan"),
              N("stock pot", "soup pot", "stockpot", "pasta pot"),
              N("dutch oven", "casserole dish", "cocotte", "braiser")),
             (("color", COLORS_A), ("material", ("stainless steel", "cast iron",
                                                  "nonstick aluminum", "copper")),
              ("capacity", ("1 qt", "2 qt", "3 qt", "5 qt", "8 qt"))),
             45.0, ("even heat distribution", "riveted stay-cool handles", "a tight-fitting lid",
                    "an induction-ready base", "oven-safe construction"),
             ("everyday cooking", "simmering sauces and soups", "searing and braising"),
             term_syn=("pots and pans", "cooking pans", "pans")),
    LeafSpec(("Home", "Kitchen", "Cutlery"), "cutlery",
             (N("chef knife", "chefs knife", "cooks knife", "gyuto"),
              N("paring knife", "peeling knife", "fruit knife", "small knife"),
              N("bread knife", "serrated knife", "bread slicer"),
              N("knife block", "knife stand", "knife holder", "knife storage"),
              N("kitchen shears", "kitchen scissors", "poultry shears", "herb scissors")),
             (("material", ("stainless steel", "carbon steel", "damascus steel", "ceramic")),
              ("handle", ("walnut", "pakkawood", "polymer", "micarta")),
              ("blade length", ("4 inch", "6 inch", "8 inch", "10 inch"))),
             60.0, ("a full-tang blade", "a hand-honed edge", "a balanced weight",
                    "a bolster for a safe grip", "a protective sheath"),
             ("precise slicing", "prepping vegetables", "daily kitchen work"),
             (("knife block", "blade length"), ("kitchen shears", "blade length")),
             term_syn=("kitchen knives", "knives", "knife set")),
    LeafSpec(("Home", "Bedding", "Sheets"), "bedding",
             (N("sheet set", "bed sheets", "bedsheet set", "bed linen set"),
              N("fitted sheet", "bottom sheet", "mattress sheet", "elastic sheet"),
              N("pillowcase", "pillow case", "pillow cover", "pillow slip"),
              N("duvet cover", "comforter cover", "quilt cover", "doona cover"),
              N("mattress protector", "mattress cover", "mattress pad", "bed protector"),
              N("body pillow", "long pillow", "pregnancy pillow", "side sleeper pillow")),
             (("color", COLORS_B), ("material", ("cotton", "linen", "bamboo", "microfiber")),
              ("bed size", ("twin", "full", "queen", "king"))),
             70.0, ("deep pockets", "a breathable weave", "a soft brushed finish",
                    "wrinkle-resistant fabric", "reinforced seams"),
             ("restful sleep", "warm summer nights", "guest rooms"),
             term_syn=("bed linen", "bed linens", "bedsheets")),
    LeafSpec(("Home", "Bath", "Towels"), "bath linens",
             (N("bath towel", "bath sheet", "shower towel", "large towel"),
              N("hand towel", "guest towel", "hand cloth", "fingertip towel"),
              N("bath mat", "bath rug", "shower mat", "bathroom rug"),
              N("washcloth", "face cloth", "flannel", "wash rag"),
              N("beach towel", "pool towel", "swim towel", "sand free towel")),
             (("color", COLORS_B), ("material", ("cotton", "bamboo", "microfiber", "waffle weave")),
              ("pack", ("2 pack", "4 pack", "6 pack"))),
             30.0, ("quick-dry loops", "a plush heavy weight", "double-stitched hems",
                   "a non-slip backing", "fade-resistant dye"),
             ("daily showers", "guest bathrooms", "the gym bag"),
             term_syn=("towels", "towel set", "bathroom linens")),
    LeafSpec(("Home", "Living Room", "Sofas"), "living room furniture",
             (N("sofa", "couch", "settee", "davenport"),
              N("loveseat", "love seat", "two seater sofa", "small couch"),
              N("accent chair", "armchair", "club chair", "reading chair"),
              N("ottoman", "footstool", "pouf", "foot rest"),
              N("throw pillow", "decorative pillow", "accent pillow", "sofa cushion"),
              N("sofa cover", "couch cover", "slipcover", "sofa protector")),
             (("color", COLORS_E), ("material", ("velvet", "linen", "leather", "microfiber")),
              ("seats", ("1 seat", "2 seat", "3 seat"))),
             320.0, ("high-density foam cushions", "a kiln-dried hardwood frame",
                     "removable washable covers", "tool-free assembly",
                     "stain-resistant upholstery"),
             ("the living room", "movie nights", "small apartments"),
             (("accent chair", "seats"), ("ottoman", "seats"), ("throw pillow", "seats"),
              ("loveseat", "seats")),
             term_syn=("sofas and chairs", "living room seating", "lounge furniture")),
    LeafSpec(("Electronics", "Audio", "Headphones"), None,
             (N("headphones", "cans", "over ear headphones", "over-ear phones"),
              N("earbuds", "earphones", "ear buds", "in-ear headphones"),
              N("gaming headset", "gamer headset", "headset with mic", "gaming headphones"),
              N("sleep headphones", "sleeping headphones", "headband headphones", "sleep buds"),
              N("headphone stand", "headset holder", "headphone hanger", "headset stand")),
             (("color", ("black", "white", "silver", "blue", "pink")),
              ("connectivity", ("wireless", "wired")),
              ("feature", ("noise cancelling", "sweatproof", "foldable", "low latency"))),
             80.0, ("deep bass", "a 30-hour battery", "memory foam cushions",
                    "a built-in microphone", "fast pairing"),
             ("commuting", "workouts", "long flights"),
             (("headphone stand", "connectivity"), ("headphone stand", "feature"))),
    LeafSpec(("Electronics", "Audio", "Speakers"), "speakers",
             (N("portable speaker", "bluetooth speaker", "wireless speaker", "travel speaker"),
              N("soundbar", "sound bar", "tv speaker", "home theater bar"),
              N("smart speaker", "voice assistant", "smart home speaker", "wifi speaker"),
              N("bookshelf speaker", "stereo speaker", "desktop speaker", "hifi speaker"),
              N("speaker stand", "speaker mount", "speaker bracket", "speaker pedestal")),
             (("color", ("black", "white", "gray", "blue", "red")),
              ("output", ("10w", "20w", "40w", "100w")),
              ("water rating", ("ipx4", "ipx7", "indoor only"))),
             90.0, ("room-filling sound", "a rugged shell", "voice assistant support",
                    "stereo pairing", "a 12-hour battery"),
             ("backyard parties", "movie nights", "the home office"),
             (("speaker stand", "output"), ("speaker stand", "water rating")),
             term_syn=("sound system", "audio gear", "home audio")),
    LeafSpec(("Electronics", "Computing", "Peripherals"), "computer accessories",
             (N("keyboard", "computer keyboard", "typing keyboard", "keeb"),
              N("mouse", "computer mouse", "pc mouse", "trackpad mouse"),
              N("webcam", "web camera", "web cam", "usb camera"),
              N("mouse pad", "mouse mat", "desk mat", "desk pad"),
              N("laptop stand", "laptop riser", "notebook stand", "laptop holder")),
             (("color", ("black", "white", "gray", "pink")),
              ("connectivity", ("wireless", "wired")),
              ("layout", ("full size", "compact", "ergonomic"))),
             50.0, ("plug-and-play setup", "a slim profile", "multi-device pairing",
                    "a soft-touch finish", "a long-lasting battery"),
             ("the home office", "gaming", "travel"),
             (("webcam", "layout"), ("mouse pad", "connectivity"), ("laptop stand", "connectivity")),
             term_syn=("pc accessories", "computer peripherals", "desk setup")),
    LeafSpec(("Electronics", "Power", "Chargers"), "charging",
             (N("wall charger", "power adapter", "charging brick", "plug charger", "phone charger"),
              N("power bank", "portable charger", "battery pack", "external battery"),
              N("charging cable", "charger cord", "usb cable", "charging cord"),
              N("car charger", "car adapter", "vehicle charger", "12v charger"),
              N("charging stand", "charging dock", "charging station", "charging pad")),
             (("color", ("black", "white", "gray")),
              ("output", ("20w", "30w", "65w", "100w")),
              ("cable length", ("3 ft", "6 ft", "10 ft"))),
             25.0, ("fast charging", "a durable build", "overheat protection",
                    "two usb-c ports", "a compact design"),
             ("phones and tablets", "laptops", "road trips"),
             (("wall charger", "cable length"), ("power bank", "cable length"),
              ("charging stand", "cable length")),
             term_syn=("chargers", "power accessories", "phone power")),
    LeafSpec(("Garden", "Tools", "Hand Tools"), "garden tools",
             (N("trowel", "hand shovel", "garden spade", "planting scoop"),
              N("pruning shears", "secateurs", "pruners", "garden clippers", "hand pruner"),
              N("hand rake", "cultivator", "garden claw", "small rake"),
              N("weeder", "weed puller", "weeding tool", "dandelion puller"),
              N("kneeling pad", "garden kneeler", "knee pad", "kneeler cushion"),
              N("tool bag", "tool tote", "gardening bag", "tool carrier")),
             (("color", ("green", "orange", "black", "red")),
              ("material", ("stainless steel", "carbon steel", "aluminum")),
              ("handle", ("ash wood", "fiberglass", "rubber grip"))),
             20.0, ("a rust-proof head", "an ergonomic grip", "a hanging loop",
                    "a sharpened edge", "a lifetime guarantee"),
             ("planting bulbs", "weeding beds", "pruning shrubs"),
             (("kneeling pad", "material"), ("kneeling pad", "handle"), ("tool bag", "material"),
              ("tool bag", "handle")),
             term_syn=("gardening tools", "yard tools", "gardening gear")),
    LeafSpec(("Garden", "Outdoor Living", "Patio Furniture"), "patio furniture",
             (N("patio chair", "garden chair", "outdoor chair", "deck chair"),
              N("lounge chair", "sun lounger", "chaise lounge", "pool lounger"),
              N("bistro table", "patio table", "cafe table", "outdoor table"),
              N("outdoor bench", "garden bench", "park bench", "porch bench"),
              N("seat cushion", "chair cushion", "chair pad", "patio cushion"),
              N("outdoor pillow", "patio pillow", "weatherproof pillow", "garden throw pillow")),
             (("color", ("white", "gray", "brown", "navy", "green")),
              ("material", ("teak", "wicker", "aluminum", "recycled plastic")),
              ("seats", ("1 seat", "2 seat", "4 seat"))),
             180.0, ("weatherproof cushions", "a powder-coated frame", "uv-resistant finish",
                     "easy assembly", "stackable design"),
             ("the patio", "balconies", "poolside lounging"),
             (("seat cushion", "material"), ("seat cushion", "seats"), ("outdoor pillow", "material"),
              ("outdoor pillow", "seats")),
             term_syn=("outdoor furniture", "garden furniture", "deck furniture")),
    LeafSpec(("Garden", "Planting", "Planters"), "plant pots",
             (N("planter", "plant container", "planter box", "plant holder"),
              N("flower pot", "flowerpot", "herb pot", "succulent pot"),
              N("raised bed", "raised garden bed", "garden bed", "grow bed"),
              N("window box", "window planter", "balcony planter", "railing planter"),
              N("plant stand", "plant shelf", "flower stand", "plant rack")),
             (("color", ("white", "terracotta", "gray", "green", "black")),
              ("material", ("ceramic", "cedar", "recycled plastic", "concrete")),
              ("size", ("small", "medium", "large"))),
             35.0, ("drainage holes", "a saucer included", "frost-resistant walls",
                    "self-watering reservoir", "a modern matte glaze"),
             ("herbs", "patio flowers", "indoor plants"),
             term_syn=("garden pots", "pots for plants", "pots")),
    LeafSpec(("Garden", "Watering", "Hoses"), "watering",
             (N("garden hose", "hosepipe", "water hose", "hose pipe"),
              N("hose nozzle", "spray nozzle", "spray gun", "hose sprayer"),
              N("sprinkler", "lawn sprinkler", "oscillating sprinkler", "yard sprinkler"),
              N("watering can", "watering pot", "plant waterer", "sprinkling can"),
              N("hose reel", "hose holder", "hose hanger", "hose cart")),
             (("color", ("green", "blue", "black", "yellow")),
              ("material", ("rubber", "vinyl", "brass")),
              ("hose length", ("25 ft", "50 ft", "100 ft"))),
             30.0, ("kink-free design", "crush-proof fittings", "adjustable spray patterns",
                    "a leak-proof seal", "lightweight build"),
             ("lawns", "vegetable beds", "washing the car"),
             (("sprinkler", "hose length"), ("watering can", "hose length"),
              ("hose nozzle", "hose length")),
             term_syn=("irrigation", "watering supplies", "lawn watering")),
    LeafSpec(("Sports", "Fitness", "Yoga"), "yoga gear",
             (N("yoga mat", "exercise mat", "workout mat", "pilates mat"),
              N("yoga block", "foam block", "yoga brick", "yoga cube"),
              N("yoga strap", "stretch strap", "stretching strap", "yoga belt"),
              N("meditation cushion", "zafu", "floor cushion", "meditation pillow"),
              N("yoga towel", "mat towel", "grip towel", "hot yoga towel"),
              N("yoga mat bag", "mat bag", "yoga bag", "mat carrier")),
             (("color", ("purple", "teal", "black", "pink", "gray")),
              ("material", ("cork", "natural rubber", "tpe", "pvc")),
              ("thickness", ("4 mm", "6 mm", "8 mm"))),
             35.0, ("a non-slip texture", "alignment lines", "a carry strap",
                    "extra cushioning", "sweat-resistant surface"),
             ("hot yoga", "pilates", "home workouts"),
             (("yoga strap", "thickness"), ("yoga block", "thickness"),
              ("yoga towel", "thickness"), ("yoga towel", "material"),
              ("yoga mat bag", "thickness"), ("yoga mat bag", "material")),
             term_syn=("yoga equipment", "yoga accessories", "pilates gear")),
    LeafSpec(("Sports", "Fitness", "Strength"), "strength training",
             (N("dumbbell", "hand weight", "free weight", "dumbell"),
              N("kettlebell", "kettle bell", "swing weight", "girya"),
              N("resistance band", "exercise band", "workout band", "loop band"),
              N("weight bench", "workout bench", "gym bench", "exercise bench"),
              N("jump rope", "skipping rope", "speed rope", "jumping rope"),
              N("gym towel", "sweat towel", "workout towel", "fitness towel")),
             (("color", ("black", "gray", "red", "blue")),
              ("material", ("cast iron", "neoprene", "rubber", "steel frame")),
              ("weight", ("5 lb", "10 lb", "20 lb", "35 lb"))),
             55.0, ("a knurled handle", "a flat base", "floor-friendly coating",
                    "clearly marked weights", "compact storage"),
             ("home gyms", "strength workouts", "rehab exercises"),
             (("weight bench", "weight"), ("jump rope", "weight"), ("gym towel", "weight"),
              ("gym towel", "material")),
             term_syn=("weights", "home gym", "gym equipment")),
    LeafSpec(("Sports", "Camping", "Tents"), "camping gear",
             (N("dome tent", "family tent", "camping tent", "pop up tent"),
              N("backpacking tent", "hiking tent", "ultralight tent", "trekking tent"),
              N("hammock", "camping hammock", "hanging bed", "travel hammock"),
              N("camping tarp", "rain tarp", "tarpaulin", "ground sheet"),
              N("sleeping bag", "sleep sack", "sleeping sack", "camp bag"),
              N("camping chair", "camp chair", "folding chair", "portable chair"),
              N("camp towel", "travel towel", "quick dry towel", "hiking towel")),
             (("color", ("green", "orange", "gray", "blue", "tan")),
              ("capacity", ("1 person", "2 person", "4 person", "6 person")),
              ("season", ("3 season", "4 season"))),
             150.0, ("a full rainfly", "color-coded poles", "taped seams",
                     "a packable stuff sack", "mesh ventilation"),
             ("weekend camping", "thru-hikes", "festivals"),
             (("sleeping bag", "capacity"), ("camping chair", "capacity"),
              ("camping chair", "season"), ("camp towel", "capacity"), ("camp towel", "season")),
             term_syn=("camping equipment", "camp gear", "outdoor gear")),
    LeafSpec(("Sports", "Cycling", "Bike Gear"), "cycling gear",
             (N("bike helmet", "cycling helmet", "bicycle helmet", "road helmet"),
              N("bike light", "bicycle light", "bike headlight", "tail light"),
              N("bike lock", "bicycle lock", "u lock", "chain lock"),
              N("saddle bag", "seat bag", "under seat bag", "bike bag"),
              N("bike pump", "bicycle pump", "tire inflator", "floor pump"),
              N("bike stand", "bike rack", "kickstand", "repair stand")),
             (("color", ("black", "white", "red", "yellow", "blue")),
              ("size", ("small", "medium", "large")),
              ("mount", ("handlebar", "seat post", "frame"))),
             40.0, ("a usb rechargeable battery", "high-visibility reflectors",
                    "a quick-release mount", "an adjustable dial fit", "hardened steel links"),
             ("commuting", "night rides", "road cycling"),
             (("bike light", "size"), ("bike lock", "size"), ("bike helmet", "mount"),
              ("bike pump", "size"), ("bike stand", "size")),
             term_syn=("bike accessories", "bicycle accessories", "cycling accessories")),
    LeafSpec(("Apparel", "Outerwear", "Jackets"), "outerwear",
             (N("rain jacket", "raincoat", "waterproof jacket", "rain shell"),
              N("puffer jacket", "down jacket", "puffy coat", "quilted jacket"),
              N("fleece jacket", "fleece", "zip fleece", "polar fleece"),
              N("windbreaker", "wind jacket", "windcheater", "anorak"),
              N("puffer vest", "gilet", "body warmer", "down vest")),
             (("color", COLORS_D), ("fit", ("mens", "womens", "unisex")),
              ("size", ("small", "medium", "large", "x-large"))),
             90.0, ("a packable hood", "zippered pockets", "a water-repellent finish",
                    "a recycled insulation fill", "adjustable cuffs"),
             ("rainy commutes", "cold mornings", "hiking trips"),
             term_syn=("coats", "jackets and coats", "winter coats")),
    LeafSpec(("Apparel", "Tops", "T-Shirts"), "tops",
             (N("t-shirt", "tee", "tshirt", "tee shirt"),
              N("polo shirt", "polo", "golf shirt", "collared shirt"),
              N("hoodie", "hooded sweatshirt", "hoody", "pullover hood"),
              N("sweatshirt", "crewneck", "jumper", "sweater"),
              N("tank top", "singlet", "sleeveless top", "muscle tee")),
             (("color", ("white", "black", "gray", "navy", "olive", "red")),
              ("fit", ("mens", "womens", "unisex")),
              ("size", ("small", "medium", "large", "x-large"))),
             25.0, ("a tag-free collar", "pre-shrunk cotton", "a relaxed fit",
                    "double-needle stitching", "a soft jersey knit"),
             ("everyday wear", "layering", "lazy weekends"),
             term_syn=("shirts", "casual tops", "tees and tops")),
    LeafSpec(("Apparel", "Footwear", "Shoes"), "footwear",
             (N("running shoe", "trainer", "runner", "jogging shoe"),
              N("hiking boot", "walking boot", "trail boot", "trekking boot"),
              N("sneaker", "casual shoe", "tennis shoe", "canvas shoe"),
              N("sandal", "flip flop", "slide", "slider"),
              N("rain boot", "welly", "wellington", "rubber boot")),
             (("color", COLORS_D), ("fit", ("mens", "womens", "unisex")),
              ("shoe size", ("size 7", "size 8", "size 9", "size 10", "size 11"))),
             85.0, ("a cushioned midsole", "a grippy rubber outsole", "a breathable mesh upper",
                    "a padded collar", "a removable insole"),
             ("daily runs", "trail hikes", "all-day wear"),
             term_syn=("shoes", "shoe shop", "kicks")),
    LeafSpec(("Apparel", "Accessories", "Bags"), "bags",
             (N("backpack", "rucksack", "daypack", "school bag"),
              N("tote bag", "shopping bag", "tote", "carryall"),
              N("duffel bag", "duffle bag", "gym bag", "holdall"),
              N("crossbody bag", "messenger bag", "sling bag", "cross body bag"),
              N("laptop bag", "laptop case", "computer bag", "briefcase")),
             (("color", COLORS_D),
              ("material", ("canvas", "leather", "nylon", "recycled polyester")),
              ("volume", ("10 l", "20 l", "30 l", "45 l"))),
             60.0, ("a padded laptop sleeve", "water-resistant fabric", "hidden pockets",
                    "comfortable straps", "a sturdy zipper"),
             ("travel", "school", "the gym"),
             term_syn=("luggage", "handbags", "bags and luggage")),
    LeafSpec(("Beauty", "Skin Care", "Moisturizers"), "skin care",
             (N("face cream", "face moisturizer", "facial cream", "day cream"),
              N("moisturizer", "moisturiser", "lotion", "hydrating cream"),
              N("night cream", "overnight cream", "sleeping mask", "night moisturizer"),
              N("eye cream", "under eye cream", "eye gel", "eye serum"),
              N("sheet mask", "face mask", "facial mask", "hydrating mask")),
             (("skin type", ("dry skin", "oily skin", "sensitive skin", "combination skin")),
              ("scent", ("unscented", "lavender", "citrus", "rose")),
              ("volume", ("30 ml", "50 ml", "100 ml"))),
             28.0, ("hyaluronic acid", "a lightweight texture", "ceramides",
                    "no added parabens", "vitamin c"),
             ("morning routines", "overnight repair", "all-day hydration"),
             (("sheet mask", "volume"),),
             term_syn=("skincare", "face care", "skin products")),
    LeafSpec(("Beauty", "Hair Care", "Shampoo"), "hair care",
             (N("shampoo", "hair wash", "hair cleanser", "clarifying wash"),
              N("conditioner", "hair conditioner", "cream rinse", "detangler"),
              N("hair mask", "deep conditioner", "hair treatment", "hair masque"),
              N("dry shampoo", "hair powder", "waterless shampoo", "no rinse shampoo"),
              N("hair oil", "hair serum", "scalp oil", "shine serum"),
              N("hair towel", "hair wrap", "turban towel", "curl towel")),
             (("hair type", ("curly hair", "fine hair", "color treated hair", "thick hair")),
              ("scent", ("unscented", "coconut", "citrus", "mint")),
              ("volume", ("250 ml", "500 ml", "1000 ml"))),
             18.0, ("a sulfate-free formula", "argan oil", "a salon-quality lather",
                    "biotin", "a gentle ph balance"),
             ("daily washing", "frizz control", "weekly treatments"),
             (("hair towel", "scent"), ("hair towel", "volume")),
             term_syn=("haircare", "hair products", "hair stuff")),
    LeafSpec(("Beauty", "Tools", "Hair Tools"), "hair tools",
             (N("hair dryer", "blow dryer", "hairdryer", "blowdryer"),
              N("flat iron", "hair straightener", "straightening iron", "straightener"),
              N("curling iron", "curling wand", "hair curler", "barrel curler"),
              N("hair brush", "paddle brush", "detangling brush", "round brush"),
              N("hair clipper", "hair trimmer", "beard trimmer", "buzzer"),
              N("heat mat", "styling mat", "heat proof mat", "heat pad")),
             (("color", ("black", "white", "pink", "rose gold")),
              ("output", ("1200w", "1800w", "2000w")),
              ("plate", ("ceramic", "titanium", "tourmaline"))),
             60.0, ("ionic technology", "a lightweight build", "a salon-grade finish",
                    "a travel pouch", "an ergonomic handle"),
             ("quick styling", "salon blowouts", "travel"),
             (("hair brush", "output"), ("hair clipper", "plate"), ("hair clipper", "output"),
              ("heat mat", "output"), ("heat mat", "plate")),
             term_syn=("styling tools", "hot tools", "hair appliances")),
    LeafSpec(("Beauty", "Fragrance", "Perfume"), "fragrance",
             (N("eau de parfum", "perfume", "edp", "parfum"),
              N("body mist", "body spray", "fragrance mist", "body splash"),
              N("cologne", "eau de toilette", "edt", "aftershave"),
              N("perfume oil", "roll on perfume", "fragrance oil", "attar")),
             (("scent", ("floral", "woody", "citrus", "fresh", "vanilla")),
              ("volume", ("30 ml", "50 ml", "100 ml")),
              ("intensity", ("light", "moderate", "intense"))),
             70.0, ("long-lasting notes", "a refillable bottle", "natural extracts",
                    "a travel atomizer", "cruelty-free ingredients"),
             ("date nights", "everyday wear", "gifting"),
             term_syn=("fragrances", "scents", "perfumes and colognes")),
)

# Other words shoppers use for attribute values (units get theirs from :func:`unit_synonyms`).
VALUE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "black": ("jet black", "matte black"), "white": ("bright white", "snow white"),
    "red": ("crimson", "scarlet", "cherry red"), "silver": ("chrome", "metallic"),
    "blue": ("royal blue", "cobalt"), "cream": ("off white", "eggshell"),
    "ivory": ("bone", "natural white"), "gray": ("grey", "charcoal", "slate"),
    "navy": ("navy blue", "dark blue", "midnight blue"), "sage": ("sage green", "pale green"),
    "green": ("forest green", "emerald", "kelly green"), "orange": ("tangerine", "burnt orange"),
    "yellow": ("mustard", "sunflower"), "olive": ("olive green", "khaki", "army green"),
    "burgundy": ("maroon", "wine", "oxblood"), "tan": ("beige", "camel", "sand"),
    "pink": ("blush", "hot pink", "pastel pink"), "purple": ("violet", "lilac", "plum"),
    "teal": ("turquoise", "aqua"), "brown": ("chocolate", "coffee", "chestnut"),
    "terracotta": ("terra cotta", "clay"), "rose gold": ("rosegold", "pink gold"),
    "stainless steel": ("stainless", "inox"), "cast iron": ("iron", "enameled iron"),
    "nonstick aluminum": ("non-stick", "teflon"), "copper": ("copper clad", "hammered copper"),
    "carbon steel": ("high carbon", "high-carbon steel"),
    "damascus steel": ("damascus", "pattern welded"), "ceramic": ("porcelain", "stoneware"),
    "cotton": ("pure cotton", "percale", "organic cotton"), "linen": ("flax", "french linen"),
    "bamboo": ("bamboo viscose", "viscose"), "microfiber": ("microfibre", "polyester"),
    "waffle weave": ("waffle", "honeycomb"), "teak": ("teak wood", "hardwood"),
    "wicker": ("rattan", "resin wicker"), "aluminum": ("aluminium", "alu"),
    "recycled plastic": ("plastic", "polywood", "hdpe"), "cedar": ("cedarwood", "wooden"),
    "concrete": ("cement", "stone"), "rubber": ("rubberized",), "vinyl": ("vinyl coated",),
    "brass": ("solid brass",), "cork": ("natural cork",), "natural rubber": ("eco rubber", "latex"),
    "tpe": ("eco foam",), "pvc": ("pvc foam",), "neoprene": ("neoprene coated",),
    "steel frame": ("steel", "metal frame"), "canvas": ("cotton canvas", "waxed canvas"),
    "leather": ("genuine leather", "full grain"), "nylon": ("ripstop", "ripstop nylon"),
    "recycled polyester": ("rpet", "recycled fabric"), "velvet": ("velour", "plush velvet"),
    "walnut": ("walnut wood",), "pakkawood": ("pakka wood",), "ash wood": ("ash",),
    "fiberglass": ("fibreglass",), "rubber grip": ("soft grip", "cushioned grip"),
    "small": ("sm",), "medium": ("med", "mid size"), "large": ("lg", "big"),
    "x-large": ("xl", "extra large"),
    "twin": ("single", "twin size"), "full": ("double", "double bed"),
    "queen": ("queen size", "queen bed"), "king": ("king size", "king bed"),
    "wireless": ("bluetooth", "cordless", "cable free"), "wired": ("corded", "cabled"),
    "noise cancelling": ("noise canceling", "anc", "noise cancellation"),
    "sweatproof": ("sweat resistant", "sport"), "foldable": ("folding", "collapsible"),
    "low latency": ("lag free", "no lag"),
    "ipx4": ("splashproof", "splash proof", "water resistant"),
    "ipx7": ("waterproof", "submersible"), "indoor only": ("indoor", "home use"),
    "full size": ("fullsize", "standard size", "104 key"),
    "compact": ("mini", "tenkeyless"), "ergonomic": ("ergo", "wrist friendly"),
    "mens": ("men's", "for men", "male"), "womens": ("women's", "ladies", "for women"),
    "unisex": ("gender neutral", "all gender"),
    "dry skin": ("flaky skin", "dehydrated skin"), "oily skin": ("acne prone", "greasy skin"),
    "sensitive skin": ("reactive skin", "delicate skin"), "combination skin": ("combo skin",),
    "unscented": ("fragrance free", "scent free", "no scent"), "lavender": ("french lavender",),
    "citrus": ("lemon", "grapefruit", "bergamot"), "rose": ("rosewater", "rose petal"),
    "coconut": ("coco",), "mint": ("peppermint", "spearmint"),
    "curly hair": ("curls", "wavy hair"), "fine hair": ("thin hair", "flat hair"),
    "color treated hair": ("dyed hair", "colored hair"), "thick hair": ("coarse hair",),
    "floral": ("flowery", "jasmine"), "woody": ("woodsy", "sandalwood"),
    "fresh": ("clean", "aquatic"), "vanilla": ("gourmand", "sweet"),
    "light": ("subtle", "soft"), "moderate": ("medium strength", "balanced"),
    "intense": ("strong", "long lasting"),
    "1 person": ("one person", "solo"), "2 person": ("two person", "2 man"),
    "4 person": ("four person", "4 man"), "6 person": ("six person", "6 man"),
    "3 season": ("three season",), "4 season": ("four season", "winter"),
    "handlebar": ("handle bar", "bar mount"), "seat post": ("seatpost", "seat tube"),
    "frame": ("frame mount",), "1 seat": ("one seater", "single seat"),
    "2 seat": ("two seater", "2 seater"), "3 seat": ("three seater", "3 seater"),
    "4 seat": ("four seater", "4 seater"),
}

_UNIT_WORDS = {"qt": ("quart",), "ft": ("foot", "feet"), "lb": ("pound", "lbs"), "ml": (),
               "mm": (), "inch": ("in",), "l": ("liter", "litre"), "pack": ("piece",)}


def unit_synonyms(value: str) -> tuple[str, ...]:
    """Other ways to write a measured value: "5 qt" -> "5 quart", "5qt"; "20w" -> "20 watt"."""
    parts = value.split(" ")
    if len(parts) == 2 and parts[0].isdigit() and parts[1] in _UNIT_WORDS:
        n, unit = parts
        if unit == "pack":
            return (f"set of {n}", f"{n} piece")
        return (*(f"{n} {w}" for w in _UNIT_WORDS[unit]), f"{n}{unit}")
    if len(parts) == 1 and value.endswith("w") and value[:-1].isdigit():
        return (f"{value[:-1]} watt", f"{value[:-1]} w")
    if len(parts) == 2 and parts[0] == "size" and parts[1].isdigit():
        return (f"us {parts[1]}", f"us size {parts[1]}")
    return ()


def value_synonyms(value: str) -> tuple[str, ...]:
    return VALUE_SYNONYMS.get(value, ()) + unit_synonyms(value)


# House brands sell in every department (their name says nothing about the category).
HOUSE_BRANDS: tuple[str, ...] = ("Acme", "Northwind", "Brightline", "Hollis Reed")
BRANDS: dict[str, tuple[str, ...]] = {
    "Home": ("Hearthstone", "Copperline", "Linden Home", "Bellwood", "Oakhaven",
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

# Description phrases shared by a department's leaves or by the whole shop: most words of
# a description do not tell its category.
DEPT_FEATURES: dict[str, tuple[str, ...]] = {
    "Home": ("a timeless look", "easy-care materials", "a space-saving shape",
             "a soft-touch finish"),
    "Electronics": ("usb-c charging", "a long-lasting battery", "plug-and-play setup",
                    "low-power standby"),
    "Garden": ("weatherproof materials", "rust-resistant hardware", "uv-stable colours",
               "a hanging loop"),
    "Sports": ("sweat-resistant materials", "a non-slip grip", "a packable design",
               "reinforced stitching"),
    "Apparel": ("a water-repellent finish", "breathable fabric", "reinforced stitching",
                "a relaxed fit"),
    "Beauty": ("cruelty-free ingredients", "no added parabens", "a dermatologist-tested formula",
               "a travel-size option"),
}
DEPT_USES: dict[str, tuple[str, ...]] = {
    "Home": ("busy households", "guest rooms", "holiday hosting"),
    "Electronics": ("the home office", "travel", "gaming"),
    "Garden": ("weekend projects", "small gardens", "the patio"),
    "Sports": ("home workouts", "weekend adventures", "training days"),
    "Apparel": ("everyday wear", "weekend trips", "travel"),
    "Beauty": ("daily routines", "travel", "gifting"),
}
# Features of a kind of product wherever it is sold: a yoga towel reads like a bath towel
# except for its noun and use, a headphone stand like a laptop stand.
KIND_FEATURES: dict[str, tuple[str, ...]] = {
    "towel": ("quick-dry loops", "a plush heavy weight", "double-stitched hems",
              "a super-absorbent weave", "a hanging loop"),
    "mat": ("a non-slip backing", "extra cushioning", "rolled-edge corners", "an easy-wipe top",
            "a cushioned surface"),
    "stand": ("a weighted base", "an adjustable height", "a sturdy aluminum frame",
              "built-in cable management", "a stable footprint"),
    "bag": ("comfortable straps", "a sturdy zipper", "hidden pockets", "water-resistant fabric",
            "a padded back panel"),
    "cushion": ("a removable cover", "high-density foam fill", "a zippered cover",
                "plump filling", "a washable case"),
    "pillow": ("a removable cover", "plump filling", "a zippered cover", "a washable case"),
    "pad": ("a cushioned core", "a non-slip base", "a stitched edge", "a memory foam core"),
    "cover": ("a zip closure", "a snug fit", "machine-washable fabric", "a soft brushed finish"),
    "bench": ("a powder-coated frame", "a sturdy steel frame", "a contoured seat",
              "easy assembly"),
    "chair": ("a powder-coated frame", "a contoured seat", "easy assembly", "wide armrests"),
    "cream": ("a lightweight texture", "hyaluronic acid", "ceramides", "a non-greasy finish"),
    "mask": ("a soothing formula", "a 10-minute treatment", "deep hydration",
             "natural extracts"),
    "oil": ("a non-greasy finish", "a glass dropper", "natural extracts", "a few drops per use"),
    "boot": ("a waterproof upper", "a grippy rubber outsole", "a padded collar",
             "a pull-on loop"),
}
GLOBAL_FEATURES: tuple[str, ...] = ("a lightweight build", "a durable build", "a compact design",
                                    "easy cleaning", "a premium finish")
GLOBAL_USES: tuple[str, ...] = ("everyday use", "gifting", "small spaces", "travel")

# Cross-sell lines: descriptions mention products of other categories (about half do).
P_MENTION = 0.7
N_MENTION = 2  # cross-sell lines in such a description
MENTIONS: tuple[str, ...] = (
    "Frequently bought together: {three}.",
    "Shoppers also browsed {three}.",
    "Pairs well with our {others}.",
    "Customers who bought this also viewed our {others}.",
    "Complete the look with a matching {other}.",
    "Looking for a {other} as well? Browse the {brand} range.",
    "Bundle it with a {other} and save.",
)
