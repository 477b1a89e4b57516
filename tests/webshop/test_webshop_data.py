"""Data: the streaming JSON reader, the original files' processing rules, goals and splits, the generator."""

import json
import time
import tracemalloc
from collections import Counter

import pytest

from mem1_gym.webshop import vocab
from mem1_gym.webshop.catalog import (
    load_attributes,
    load_catalog,
    parse_pricing,
    purchase_price,
)
from mem1_gym.webshop.generate import (
    GOALS_FILE,
    PRODUCTS_FILE,
    GeneratorConfig,
    ensure_generated,
    generate,
)
from mem1_gym.webshop.goals import (
    NO_PRICE_CAP,
    human_goals,
    load_goals,
    price_cap,
    split_goals,
    synthetic_goals,
)
from mem1_gym.webshop.jsonstream import iter_json_array, iter_json_object
from mem1_gym.webshop.shop import Shop, ShopConfig


def raw(asin, **overrides):
    record = {
        "asin": asin, "name": f"Bright Citrus Deodorant {asin}", "full_description": "Natural deodorant for sensitive skin.",
        "small_description": ["Aluminum free", "Safe for sensitive skin"], "pricing": "$10.99", "images": [],
        "customization_options": {"Scent": [{"value": "Bright Citrus", "image": None}, {"value": "Ginger/Fresh", "image": None}],
                                  "Size": [{"value": "3 Ounce (Pack of 1)", "image": None}]},
        "category": "beauty", "query": " Deodorant ", "product_category": "Beauty & Personal Care › Personal Care › Deodorants",
        "brand": "dropped", "list_price": "dropped",
    }
    return {**record, **overrides}


@pytest.fixture
def original_files(tmp_path):
    """Small files in the original's formats, including the records the original drops."""
    products = [raw(f"B0TEST{i:04d}") for i in range(40)]
    products += [raw("nan"), raw("B0TOOLONG12345"), raw("B0TEST0001", name="duplicate"), raw("B0RANGE001", pricing="$10.99 - $19.99"),
                 raw("B0NOPRICE1", pricing=None, small_description="one bullet", customization_options=None)]
    (tmp_path / "items_shuffle.json").write_text(json.dumps(products, indent=2, ensure_ascii=False))
    attrs = {p["asin"]: {"attributes": ["aluminum free", "sensitive skin"], "instruction": "i need a citrus deodorant.",
                         "instruction_attributes": ["aluminum free"]} for p in products}
    (tmp_path / "items_ins_v2.json").write_text(json.dumps(attrs))
    human = {f"B0TEST{i:04d}": [{"asin": f"B0TEST{i:04d}", "instruction": "i want citrus deodorant for sensitive skin",
                                 "instruction_attributes": ["sensitive skin"], "instruction_options": ["bright citrus"]},
                                {"instruction": "no attributes: skipped", "instruction_attributes": [], "instruction_options": []}]
             for i in range(40)}
    (tmp_path / "items_human_ins.json").write_text(json.dumps(human))
    return tmp_path


@pytest.mark.parametrize("chunk", [1, 3, 17, 4096])
def test_stream_array_and_object_at_any_chunk_size(tmp_path, chunk):
    values = [{"a": i, "text": "ü›\"\\" * (i % 5), "n": [1.5e3, -2, None, True]} for i in range(50)] + [12345, "x", []]
    (tmp_path / "a.json").write_text(json.dumps(values, indent=1))
    assert list(iter_json_array(tmp_path / "a.json", chunk)) == values
    mapping = {f"k{i}": {"v": i} for i in range(30)}
    (tmp_path / "o.json").write_text(json.dumps(mapping))
    assert dict(iter_json_object(tmp_path / "o.json", chunk)) == mapping


def test_stream_rejects_what_is_not_an_array(tmp_path):
    (tmp_path / "bad.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match="expected one of"):
        list(iter_json_array(tmp_path / "bad.json"))
    (tmp_path / "cut.json").write_text('[{"a": 1}, {"b": ')
    with pytest.raises(ValueError, match="invalid JSON"):
        list(iter_json_array(tmp_path / "cut.json"))


def test_streaming_memory_is_bounded_by_the_chunk_not_the_file(tmp_path):
    path = tmp_path / "big.json"
    with open(path, "w") as f:
        f.write("[" + ",".join(json.dumps(raw(f"B{i:09d}", full_description="x" * 2000)) for i in range(3000)) + "]")
    tracemalloc.start()
    count = sum(1 for _ in iter_json_array(path, chunk_chars=1 << 16))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 3000 and path.stat().st_size > 6_000_000 and peak < 2_000_000


def test_original_processing_rules(original_files):
    attributes = load_attributes(original_files / "items_ins_v2.json")
    catalog = load_catalog(original_files / "items_shuffle.json", attributes)
    assert len(catalog) == 42 and "nan" not in catalog and "B0TOOLONG12345" not in catalog
    assert catalog["B0TEST0001"].title == "Bright Citrus Deodorant B0TEST0001"  # the first of duplicates wins
    product = catalog["B0TEST0000"]
    assert product.options == (("scent", ("bright citrus", "ginger | fresh")), ("size", ("3 ounce (pack of 1)",)))
    assert product.query == "deodorant" and product.attributes == ("aluminum free", "sensitive skin")
    assert product.price_text == "$10.99" and product.price == 10.99 and product.rating_text == "N.A."
    ranged = catalog["B0RANGE001"]
    assert ranged.price_text == "$10.99 to $19.99" and 10.99 <= ranged.price <= 19.99
    missing = catalog["B0NOPRICE1"]
    assert missing.price == 100.0 and missing.bullet_points == ("one bullet",) and missing.options == ()
    assert load_catalog(original_files / "items_shuffle.json", limit=5).products.keys() == {f"B0TEST{i:04d}" for i in range(5)}
    assert load_catalog(original_files / "items_shuffle.json").products["B0TEST0000"].attributes == ("DUMMY_ATTR",)


def test_ranged_prices_are_seeded():
    assert parse_pricing("$10.99 - $19.99") == (10.99, 19.99) and parse_pricing("") == (100.0,)
    assert purchase_price("B0X", (10.0, 20.0), 0) == purchase_price("B0X", (10.0, 20.0), 0)
    assert len({purchase_price("B0X", (10.0, 20.0), seed) for seed in range(10)}) > 1


def test_price_cap_rule():
    import random

    caps = {price_cap(12.5, random.Random(seed))[0] for seed in range(50)}
    assert caps == {30.0, 40.0, 50.0}  # the larger of two of 20, 30, 40, 50
    assert price_cap(985.0, random.Random(0)) == (NO_PRICE_CAP, "")  # one multiple of ten left: no cap
    assert price_cap(5.0, random.Random(0))[1].startswith(", and price lower than ")


def test_human_and_synthetic_goals_and_their_splits(original_files):
    attributes = load_attributes(original_files / "items_ins_v2.json")
    catalog = load_catalog(original_files / "items_shuffle.json", attributes)
    human = human_goals(catalog, original_files / "items_human_ins.json")
    assert len(human) == 40  # records without attributes are skipped
    assert human[0].options == (("", "bright citrus"),) and human[0].instruction.endswith(" dollars")
    synthetic = synthetic_goals(catalog, attributes)
    assert len(synthetic) == 2 * 41 + 1  # two scent values for each product with options; one without
    assert "with scent: bright citrus, and size: 3 ounce (pack of 1)" in synthetic[0].instruction
    splits = split_goals(human)
    assert sum(map(len, splits.values())) == 40 and {g.id.split("-")[0] for g in splits["test"]} == {"test"}
    assert split_goals(human) == splits  # the seed-233 shuffle is fixed


def test_shop_loads_original_files_through_the_same_code(original_files, tmp_path, monkeypatch):
    monkeypatch.setenv("MEM1_GYM_CACHE", str(tmp_path / "cache"))
    shop = Shop(ShopConfig(products_path=str(original_files / "items_shuffle.json"),
                           attributes_path=str(original_files / "items_ins_v2.json"),
                           human_goals_path=str(original_files / "items_human_ins.json")))
    assert shop.config.resolved_goal_source == "human" and len(shop.catalog) == 42
    assert shop.search.search("citrus deodorant")[0].startswith("B0")
    shop.close()


def test_shop_config_errors_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="download WebShop's data"):
        ShopConfig(products_path=str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="needs products_path"):
        ShopConfig(goal_source="human")


def test_generated_default_sizes_categories_and_speed(tmp_path):
    started = time.perf_counter()
    generate(GeneratorConfig(), tmp_path)
    assert time.perf_counter() - started < 10
    products = json.loads((tmp_path / PRODUCTS_FILE).read_text())
    goals = load_goals(tmp_path / GOALS_FILE)
    assert len(products) >= 1000 and len(goals) >= 5000
    assert Counter(p["category"] for p in products).keys() == vocab.CATEGORIES.keys()
    assert len({p["name"] for p in products}) == len(products)  # unique titles
    assert all(p["title_nouns"] and p["small_description"] and p["customization_options"] for p in products)
    sizes = Counter(g.id.split("-")[0] for g in goals)
    assert sizes["test"] == 500 and sizes["validation"] == 1000 and sizes["train"] >= 5000


def test_generation_is_deterministic_and_cached(tmp_path, monkeypatch):
    generate(GeneratorConfig(n_products=60, seed=1), tmp_path)
    first = (tmp_path / GOALS_FILE).read_text()
    generate(GeneratorConfig(n_products=60, seed=1), tmp_path)
    assert (tmp_path / GOALS_FILE).read_text() == first
    monkeypatch.setenv("MEM1_GYM_CACHE", str(tmp_path / "cache"))
    directory = ensure_generated(GeneratorConfig(n_products=60, seed=2))
    assert ensure_generated(GeneratorConfig(n_products=60, seed=2)) == directory
    assert (directory / GOALS_FILE).read_text() != first
    with pytest.raises(ValueError, match="n_products must be >= 30"):
        GeneratorConfig(n_products=5)
