"""Word tables of the generated catalogue: WebShop's five top categories, their product types and options.

Each :class:`ProductType` says how a product of that type is named (head nouns, descriptors,
audiences), which hidden attributes it can have (the attribute reward checks them), which option
groups it offers and in what price band it sells. The words that are nouns are listed as such, so the
type reward's title nouns are known at generation time and no POS tagger runs (reference/webshop.md §7.4).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProductType:
    """One sub-category (WebShop's ``query``) and the words its products are made of."""

    query: str
    """The sub-category name, e.g. "deodorant" (WebShop's scraping query)."""
    breadcrumb: str
    """Amazon-style ``product_category``, levels separated by " › "."""
    heads: tuple[str, ...]
    """Head noun phrases; every word in them is a noun."""
    descriptors: tuple[str, ...]
    """Adjectives placed before the head (not nouns)."""
    audiences: tuple[str, ...]
    """Audience nouns ("women"); "" for none."""
    attributes: tuple[str, ...]
    """Hidden attribute phrases a product of this type may have."""
    options: tuple[tuple[str, tuple[str, ...]], ...]
    """Option groups: (name, values) from which products draw a subset."""
    price: tuple[float, float]
    """Price band in dollars."""
    uses: tuple[str, ...]
    """Short "for ..." uses that fill descriptions."""


COLORS = ("black", "white", "grey", "navy blue", "red", "beige", "pink", "green", "brown", "light blue", "purple", "yellow")
APPAREL_SIZES = ("x-small", "small", "medium", "large", "x-large", "xx-large")
SHOE_SIZES = ("6", "6.5", "7", "7.5", "8", "8.5", "9", "9.5", "10", "11", "12")

_FASHION = (
    ProductType("women's blouse", "Clothing, Shoes & Jewelry › Women › Clothing › Tops, Tees & Blouses",
                ("blouse", "shirt", "tunic top"), ("casual", "loose fit", "short sleeve", "long sleeve", "v neck"),
                ("women",), ("machine wash", "soft fabric", "button closure", "polyester spandex", "daily wear"),
                (("color", COLORS), ("size", APPAREL_SIZES)), (14.0, 39.0), ("work", "vacation", "everyday wear")),
    # Not "dark wash": the reward reduces it to the colour "ash" and compares a goal's named option
    # as a pair, as the original does, so that value could never match itself (issue 23).
    ProductType("men's jeans", "Clothing, Shoes & Jewelry › Men › Clothing › Jeans",
                ("jeans", "denim pants"), ("slim fit", "straight leg", "relaxed fit", "stretch", "classic"),
                ("men",), ("machine wash", "button closure", "cotton spandex", "relaxed fit", "zipper closure"),
                (("color", ("dark rinse", "light blue", "black", "grey", "medium indigo")),
                 ("size", ("30w x 30l", "32w x 30l", "32w x 32l", "34w x 32l", "36w x 32l", "38w x 34l"))),
                (22.0, 69.0), ("work", "weekends", "everyday wear")),
    ProductType("running shoes", "Clothing, Shoes & Jewelry › Men › Shoes › Athletic › Running",
                ("running shoes", "sneakers", "trail shoes"), ("lightweight", "breathable", "cushioned", "non slip"),
                ("men", "women"), ("rubber sole", "non slip", "lace up", "memory foam", "arch support"),
                (("color", COLORS), ("size", SHOE_SIZES)), (35.0, 120.0), ("running", "gym workouts", "walking")),
    ProductType("winter jacket", "Clothing, Shoes & Jewelry › Women › Clothing › Coats, Jackets & Vests",
                ("jacket", "puffer coat", "parka"), ("warm", "hooded", "quilted", "windproof", "waterproof"),
                ("women", "men"), ("water resistant", "zipper closure", "hand wash", "fleece lined", "long sleeve"),
                (("color", COLORS), ("size", APPAREL_SIZES)), (45.0, 180.0), ("cold weather", "hiking", "commuting")),
    ProductType("sandals", "Clothing, Shoes & Jewelry › Women › Shoes › Sandals",
                ("sandals", "slides", "flip flops"), ("comfortable", "platform", "strappy", "flat", "summer"),
                ("women", "men"), ("rubber sole", "open toe", "arch support", "ankle strap", "non slip"),
                (("color", ("black", "tan", "white", "brown", "pink", "gold")), ("size", SHOE_SIZES)),
                (16.0, 60.0), ("beach", "summer", "pool")),
    ProductType("baseball cap", "Clothing, Shoes & Jewelry › Men › Accessories › Hats & Caps › Baseball Caps",
                ("baseball cap", "dad hat", "trucker hat"), ("adjustable", "vintage", "washed", "classic"),
                ("men", "women"), ("cotton", "adjustable strap", "hand wash", "breathable mesh", "curved brim"),
                (("color", COLORS),), (9.0, 29.0), ("sports", "outdoor", "travel")),
)

_BEAUTY = (
    ProductType("deodorant", "Beauty & Personal Care › Personal Care › Deodorants & Antiperspirants",
                ("deodorant", "deodorant stick"), ("natural", "clinical strength", "fresh", "gentle"),
                ("women", "men"), ("aluminum free", "sensitive skin", "long lasting", "paraben free", "cruelty free"),
                (("scent", ("bright citrus", "lavender", "unscented", "coconut", "ginger fresh", "eucalyptus")),
                 ("size", ("2.6 ounce", "3 ounce", "3 ounce (pack of 2)", "3 ounce (pack of 3)"))),
                (6.0, 24.0), ("daily use", "the gym", "travel")),
    ProductType("lipstick", "Beauty & Personal Care › Makeup › Lips › Lipstick",
                ("lipstick", "lip stain", "lip color"), ("matte", "creamy", "velvet", "satin", "long wear"),
                ("",), ("long lasting", "cruelty free", "paraben free", "highly pigmented", "vegan formula"),
                (("color", ("ruby red", "nude", "berry", "coral", "mauve", "pink", "plum")),), (5.0, 28.0),
                ("everyday makeup", "parties", "weddings")),
    ProductType("face moisturizer", "Beauty & Personal Care › Skin Care › Face › Creams & Moisturizers",
                ("face moisturizer", "face cream", "gel cream"), ("hydrating", "oil free", "lightweight", "soothing"),
                ("women", "men"), ("sensitive skin", "hyaluronic acid", "fragrance free", "dry skin", "paraben free"),
                (("size", ("1.7 fl oz", "2.5 fl oz", "3.4 fl oz")),), (9.0, 49.0), ("daily use", "night care", "dry skin")),
    ProductType("shampoo", "Beauty & Personal Care › Hair Care › Shampoo & Conditioner › Shampoos",
                ("shampoo", "shampoo and conditioner set"), ("clarifying", "volumizing", "moisturizing", "natural"),
                ("",), ("sulfate free", "tea tree", "essential oils", "natural ingredients", "color safe", "dry scalp"),
                (("scent", ("tea tree", "argan oil", "coconut", "rosemary mint", "unscented")),
                 ("size", ("8 fl oz", "16 fl oz", "32 fl oz"))), (7.0, 36.0), ("daily washing", "dry hair", "oily hair")),
    ProductType("nail polish", "Beauty & Personal Care › Foot, Hand & Nail Care › Nail Art & Polish › Nail Polish",
                ("nail polish", "gel polish", "nail lacquer"), ("glossy", "quick dry", "chip resistant", "glitter"),
                ("",), ("long lasting", "non toxic", "cruelty free", "easy apply", "high shine"),
                (("color", ("red", "nude", "pink", "black", "glitter silver", "navy", "coral")),
                 ("size", ("0.5 fl oz", "0.5 fl oz (pack of 3)", "0.5 fl oz (pack of 6)"))),
                (4.0, 25.0), ("home manicures", "salons", "holidays")),
    ProductType("makeup brush set", "Beauty & Personal Care › Tools & Accessories › Makeup Brushes & Tools › Brush Sets",
                ("makeup brush set", "brush kit"), ("professional", "soft", "synthetic", "travel"),
                ("",), ("synthetic bristles", "cruelty free", "easy clean", "travel case", "wooden handle"),
                (("color", ("rose gold", "black", "pink", "white")), ("size", ("5 piece", "10 piece", "14 piece"))),
                (8.0, 35.0), ("foundation", "eyeshadow", "travel")),
)

_ELECTRONICS = (
    ProductType("wireless earbuds", "Electronics › Headphones, Earbuds & Accessories › Earbuds",
                ("wireless earbuds", "bluetooth earphones"), ("noise cancelling", "compact", "sport", "waterproof"),
                ("",), ("noise cancelling", "long battery life", "water resistant", "charging case", "hands free"),
                (("color", ("black", "white", "navy blue", "rose gold")),), (19.0, 129.0), ("workouts", "commuting", "calls")),
    ProductType("phone case", "Cell Phones & Accessories › Cases, Holsters & Sleeves › Basic Cases",
                ("phone case", "protective cover"), ("slim", "shockproof", "clear", "rugged"),
                ("",), ("shock absorbing", "wireless charging compatible", "raised edges", "drop protection", "slim fit"),
                (("color", ("clear", "black", "blue", "pink", "purple", "green")),
                 ("size", ("iphone 14", "iphone 15", "iphone 15 pro", "galaxy s23", "galaxy s24"))), (7.0, 29.0),
                ("daily protection", "outdoor", "travel")),
    ProductType("usb c charger", "Electronics › Computers & Accessories › Chargers & Adapters",
                ("usb c charger", "wall charger", "power adapter"), ("fast", "compact", "foldable", "dual port"),
                ("",), ("fast charging", "foldable plug", "overheat protection", "universal compatibility", "compact design"),
                (("color", ("white", "black")), ("size", ("20w", "30w", "65w", "100w"))), (11.0, 59.0),
                ("phones", "laptops", "travel")),
    ProductType("portable speaker", "Electronics › Portable Audio & Video › Portable Speakers & Docks",
                ("bluetooth speaker", "portable speaker"), ("waterproof", "rugged", "mini", "loud"),
                ("",), ("long battery life", "water resistant", "stereo sound", "built in microphone", "easy carry"),
                (("color", ("black", "blue", "red", "grey", "teal")),), (24.0, 149.0), ("parties", "the beach", "camping")),
    ProductType("hdmi cable", "Electronics › Television & Video › Accessories › Cables › HDMI Cables",
                ("hdmi cable", "high speed cable"), ("braided", "gold plated", "flexible", "ultra high speed"),
                ("",), ("high speed", "gold plated", "4k support", "braided nylon", "ethernet channel"),
                (("size", ("3 feet", "6 feet", "10 feet", "15 feet")), ("color", ("black", "grey", "white"))),
                (6.0, 25.0), ("tvs", "gaming consoles", "monitors")),
    ProductType("smart watch", "Electronics › Wearable Technology › Smartwatches",
                ("smart watch", "fitness tracker"), ("waterproof", "slim", "sport", "touchscreen"),
                ("women", "men"), ("heart rate monitor", "sleep tracking", "long battery life", "water resistant", "step counter"),
                (("color", ("black", "silver", "rose gold", "navy blue")), ("size", ("40mm", "44mm"))),
                (29.0, 199.0), ("fitness", "running", "everyday wear")),
)

_FURNITURE = (
    ProductType("office chair", "Home & Kitchen › Furniture › Home Office Furniture › Home Office Chairs",
                ("office chair", "desk chair", "task chair"), ("ergonomic", "swivel", "mesh", "high back"),
                ("",), ("lumbar support", "adjustable height", "easy assembly", "breathable mesh", "padded armrests"),
                (("color", ("black", "grey", "white", "blue")),), (69.0, 289.0), ("home offices", "gaming", "study")),
    ProductType("bookshelf", "Home & Kitchen › Furniture › Living Room Furniture › Bookcases",
                ("bookshelf", "bookcase", "storage shelf"), ("industrial", "modern", "tall", "rustic"),
                ("",), ("easy assembly", "wood finish", "metal frame", "anti tip", "open storage"),
                (("color", ("rustic brown", "black", "white", "walnut", "oak")), ("size", ("3 tier", "4 tier", "5 tier"))),
                (39.0, 199.0), ("living rooms", "offices", "bedrooms")),
    ProductType("coffee table", "Home & Kitchen › Furniture › Living Room Furniture › Tables › Coffee Tables",
                ("coffee table", "cocktail table"), ("round", "mid century", "lift top", "farmhouse"),
                ("",), ("storage space", "easy assembly", "solid wood", "metal frame", "scratch resistant"),
                (("color", ("walnut", "black", "white", "oak", "grey")),), (59.0, 249.0), ("living rooms", "apartments", "small spaces")),
    ProductType("bed frame", "Home & Kitchen › Furniture › Bedroom Furniture › Beds, Frames & Bases › Bed Frames",
                ("bed frame", "platform bed"), ("upholstered", "metal", "low profile", "wooden"),
                ("",), ("no box spring needed", "easy assembly", "noise free", "under bed storage", "wood slats"),
                (("size", ("twin", "full", "queen", "king")), ("color", ("grey", "black", "beige", "white"))),
                (89.0, 399.0), ("bedrooms", "guest rooms", "dorms")),
    ProductType("throw pillow", "Home & Kitchen › Bedding › Decorative Pillows, Inserts & Covers › Throw Pillow Covers",
                ("throw pillow covers", "cushion covers"), ("decorative", "velvet", "boho", "linen"),
                ("",), ("hidden zipper", "machine wash", "soft fabric", "double sided", "fade resistant"),
                (("color", ("sage green", "navy blue", "cream", "grey", "mustard yellow", "blush pink")),
                 ("size", ("18 x 18 inch", "20 x 20 inch", "12 x 20 inch"))), (9.0, 32.0),
                ("sofas", "beds", "living rooms")),
    ProductType("floor lamp", "Home & Kitchen › Lighting & Ceiling Fans › Lamps & Shades › Floor Lamps",
                ("floor lamp", "standing lamp"), ("modern", "arc", "dimmable", "minimalist"),
                ("",), ("energy saving", "foot switch", "easy assembly", "adjustable head", "stable base"),
                (("color", ("black", "gold", "white", "bronze")),), (29.0, 149.0), ("living rooms", "bedrooms", "reading")),
)

_FOOD = (
    ProductType("coffee beans", "Grocery & Gourmet Food › Beverages › Coffee, Tea & Cocoa › Coffee › Whole Coffee Beans",
                ("coffee beans", "whole bean coffee"), ("dark roast", "medium roast", "single origin", "organic"),
                ("",), ("fair trade", "usda organic", "non gmo", "low acid", "small batch"),
                (("flavor name", ("original", "vanilla", "hazelnut", "french roast", "espresso")),
                 ("size", ("12 ounce", "2 pound", "5 pound"))), (9.0, 49.0), ("espresso", "french press", "drip coffee")),
    ProductType("protein bar", "Grocery & Gourmet Food › Snack Foods › Bars › Protein Bars",
                ("protein bars", "snack bars"), ("high protein", "low sugar", "chewy", "crunchy"),
                ("",), ("gluten free", "low sugar", "high protein", "non gmo", "keto friendly"),
                (("flavor name", ("chocolate chip", "peanut butter", "cookies and cream", "birthday cake", "almond")),
                 ("size", ("12 count", "15 count", "24 count"))), (12.0, 42.0), ("snacking", "workouts", "lunch boxes")),
    ProductType("green tea", "Grocery & Gourmet Food › Beverages › Coffee, Tea & Cocoa › Tea › Green",
                ("green tea", "tea bags", "loose leaf tea"), ("organic", "decaf", "japanese", "premium"),
                ("",), ("usda organic", "caffeine free", "non gmo", "natural ingredients", "individually wrapped"),
                (("flavor name", ("jasmine", "matcha", "mint", "lemon ginger", "classic")),
                 ("size", ("20 count", "40 count", "100 count"))), (5.0, 29.0), ("mornings", "relaxing", "iced tea")),
    ProductType("olive oil", "Grocery & Gourmet Food › Pantry Staples › Cooking & Baking › Oils › Olive Oil",
                ("olive oil", "extra virgin olive oil"), ("cold pressed", "imported", "organic", "first pressed"),
                ("",), ("cold pressed", "non gmo", "usda organic", "gluten free", "kosher certified"),
                (("size", ("16.9 fl oz", "25.3 fl oz", "33.8 fl oz", "101 fl oz")),), (8.0, 45.0),
                ("cooking", "salad dressings", "dipping bread")),
    ProductType("dark chocolate", "Grocery & Gourmet Food › Candy & Chocolate › Chocolate Bars",
                ("dark chocolate bars", "chocolate bar"), ("rich", "premium", "organic", "smooth"),
                ("",), ("fair trade", "dairy free", "gluten free", "vegan friendly", "low sugar"),
                (("flavor name", ("sea salt", "almond", "orange", "mint", "raspberry")),
                 ("size", ("3.5 ounce (pack of 4)", "3.5 ounce (pack of 12)"))), (8.0, 39.0), ("gifts", "baking", "snacking")),
    ProductType("dog treats", "Pet Supplies › Dogs › Treats › Biscuits",
                ("dog treats", "dog biscuits", "chew treats"), ("crunchy", "soft", "grain free", "natural"),
                ("",), ("grain free", "natural ingredients", "made in usa", "high protein", "no artificial flavors"),
                (("flavor name", ("chicken", "peanut butter", "beef", "salmon", "sweet potato")),
                 ("size", ("10 ounce", "1 pound", "2 pound"))), (6.0, 34.0), ("training", "rewards", "dental care")),
)

CATEGORIES: dict[str, tuple[ProductType, ...]] = {
    "fashion": _FASHION,
    "beauty": _BEAUTY,
    "electronics": _ELECTRONICS,
    "furniture": _FURNITURE,
    "food": _FOOD,
}

BRANDS = (
    "Lumora", "Veltrix", "Brightwell", "Norvane", "Calderon", "Oakhurst", "Pinecrest", "Solvei", "Tidewater",
    "Marlowe", "Everpeak", "Kestrel", "Alderbay", "Quillon", "Rosefield", "Havenly", "Zentra", "Copperline",
    "Wildmoor", "Bramblewood", "Astoria", "Northlane", "Silvermist", "Redwick", "Fernhill", "Cobaltix",
)
# Every word of these is a noun for the type reward (unit and pack words in titles).
UNIT_NOUNS = frozenset({"pack", "count", "ounce", "pound", "feet", "inch", "piece", "tier", "fl", "oz", "set", "w", "mm"})
AUDIENCE_NOUNS = frozenset({"women", "men"})
REVIEW_OPENERS = ("Great value", "Exactly as described", "Works well", "Good quality", "Not bad", "Love it")
REVIEW_BODIES = (
    "I have used it for a few weeks and it holds up well.",
    "Arrived quickly and matches the pictures.",
    "The size was right and it feels well made.",
    "Does what it says; I would buy it again.",
    "A little smaller than I expected, but fine for the price.",
)
