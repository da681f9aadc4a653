"""Spider and BIRD importers, on tiny benchmark-shaped folders built in ``tmp_path``."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from pipelines.importers import import_bird, import_spider
from t2s.datasets import load_dataset
from t2s.errors import DatasetError


def make_db(path: Path, tables: dict[str, str], rows: dict[str, list[tuple[Any, ...]]] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    for table, ddl in tables.items():
        conn.execute(f"CREATE TABLE {table} ({ddl})")
    for table, values in (rows or {}).items():
        marks = ", ".join("?" * len(values[0]))
        conn.executemany(f"INSERT INTO {table} VALUES ({marks})", values)
    conn.commit()
    conn.close()
    return path


SINGER = {"singer": "singer_id INTEGER PRIMARY KEY, name TEXT, country TEXT, age INTEGER",
          "concert": "concert_id INTEGER PRIMARY KEY, singer_id INTEGER, year INTEGER"}
SINGER_ROWS = {"singer": [(1, "Ann", "France", 30), (2, "Bo", "Peru", 41)], "concert": [(1, 1, 2014)]}
PETS = {"pets": "pet_id INTEGER PRIMARY KEY, pet_type TEXT, weight REAL"}

SPIDER_ITEMS = [
    {"db_id": "music", "question": "How many singers are there?", "query": "SELECT count(*) FROM singer"},
    {"db_id": "pets", "question": "Heaviest pet type?",
     "query": "SELECT pet_type FROM pets ORDER BY weight DESC LIMIT 1"},
    {"db_id": "music", "question": "Singers without concerts?",
     "query": "SELECT count(*) FROM singer WHERE singer_id NOT IN (SELECT singer_id FROM concert)"},
    {"db_id": "music", "question": "Names and ages of French singers?",
     "query": "SELECT name , age FROM singer WHERE country = 'France'"},
]


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path


@pytest.fixture
def spider_dir(tmp_path: Path) -> Path:
    root = tmp_path / "spider"
    write_json(root / "dev.json", SPIDER_ITEMS)
    write_json(root / "tables.json", [
        {"db_id": "music", "table_names_original": ["singer", "concert"], "table_names": ["singer", "concert"]},
        {"db_id": "pets", "table_names_original": ["Pets"], "table_names": ["pets"]},
    ])
    make_db(root / "database" / "music" / "music.sqlite", SINGER, SINGER_ROWS)
    make_db(root / "database" / "music" / "music_variant1.sqlite", SINGER)  # test-suite style variant
    (root / "database" / "music" / "schema.sql").write_text("-- not a database\n")
    make_db(root / "database" / "pets" / "pets.sqlite", PETS, {"pets": [(1, "dog", 12.5)]})
    return root


BIRD_ITEMS = [
    {"question_id": 7, "db_id": "shop", "question": "How many orders?", "evidence": "",
     "SQL": "SELECT COUNT(*) FROM orders", "difficulty": "simple"},
    {"question_id": 3, "db_id": "shop", "question": "Average amount in 2020?",
     "evidence": "2020 refers to strftime('%Y', day) = '2020'",
     "SQL": "SELECT AVG(amount) FROM orders WHERE strftime('%Y', `day`) = '2020'", "difficulty": "moderate"},
    {"question_id": 12, "db_id": "shop", "question": "Customers with more orders than average?",
     "evidence": "", "difficulty": "challenging",
     "SQL": "SELECT customer FROM orders GROUP BY customer HAVING COUNT(*) > "
            "(SELECT AVG(n) FROM (SELECT COUNT(*) AS n FROM orders GROUP BY customer))"},
]


@pytest.fixture
def bird_dir(tmp_path: Path) -> Path:
    root = tmp_path / "bird"
    write_json(root / "dev.json", BIRD_ITEMS)
    make_db(root / "dev_databases" / "shop" / "shop.sqlite",
            {"orders": "id INTEGER PRIMARY KEY, customer TEXT, amount REAL, day TEXT"},
            {"orders": [(1, "a", 9.5, "2020-01-02")]})
    (root / "dev_databases" / "shop" / "database_description").mkdir()
    return root


def leftovers(parent: Path) -> list[str]:
    """Temp or partial directories the importer may have left beside its output."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


# --------------------------------------------------------------------------------------------------
# Spider


def test_import_spider(spider_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "datasets" / "spider-dev"
    ds = import_spider(spider_dir, out)

    assert [ex.id for ex in ds] == ["spider-dev-0000", "spider-dev-0001", "spider-dev-0002", "spider-dev-0003"]
    assert [ex.question for ex in ds] == [it["question"] for it in SPIDER_ITEMS]  # source order kept
    assert [ex.gold_sql for ex in ds] == [it["query"] for it in SPIDER_ITEMS]
    assert [ex.difficulty for ex in ds] == ["easy", "medium", "extra", "medium"]
    assert [ex.category for ex in ds] == ["aggregate", "order_limit", "nested", "filter"]
    assert {ex.dialect for ex in ds} == {"sqlite"}

    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["README.md", "database/music/music.sqlite", "database/music/music_variant1.sqlite",
                     "database/pets/pets.sqlite", "dataset.yaml", "questions.jsonl"]
    manifest = yaml.safe_load((out / "dataset.yaml").read_text())
    assert manifest["name"] == "spider-dev"
    assert manifest["license"] == "CC BY-SA 4.0"
    assert "Spider" in manifest["source"]
    assert manifest["databases"]["music"] == {"path": "database/music/music.sqlite",
                                              "variants": ["database/music/music_variant1.sqlite"]}

    loaded = load_dataset(out)
    assert [ex.id for ex in loaded] == [ex.id for ex in ds]
    assert loaded.database_paths("music")[0].read_bytes() == \
        (spider_dir / "database" / "music" / "music.sqlite").read_bytes()
    with sqlite3.connect(loaded.database_paths("music")[0]) as conn:
        assert conn.execute(SPIDER_ITEMS[0]["query"]).fetchone() == (2,)

    card = (out / "README.md").read_text()
    assert "CC BY-SA 4.0" in card
    assert "| medium | 2 | 50.0% |" in card and "| easy | 1 | 25.0% |" in card
    assert "| nested | 1 |" in card
    assert "`music`: 2 tables, matching `tables.json`" in card
    assert "`pets`: 1 tables, matching `tables.json`" in card  # table names compare case-insensitively
    assert leftovers(out.parent) == []


def test_import_spider_sample_indexes_and_name(spider_dir: Path, tmp_path: Path) -> None:
    items = [dict(it, spider_dev_index=idx) for it, idx in zip(SPIDER_ITEMS, [40, 7, 512, 8], strict=True)]
    write_json(spider_dir / "dev.json", items)
    (spider_dir / "tables.json").unlink()  # optional
    ds = import_spider(spider_dir, tmp_path / "out", name="spider-sample")
    assert ds.name == "spider-sample"
    assert [ex.id for ex in ds] == ["spider-dev-0040", "spider-dev-0007", "spider-dev-0512", "spider-dev-0008"]
    assert "not present" in (tmp_path / "out" / "README.md").read_text()


def test_import_spider_notes_schema_mismatch(spider_dir: Path, tmp_path: Path) -> None:
    write_json(spider_dir / "tables.json", [{"db_id": "music", "table_names_original": ["singer", "stage"]}])
    import_spider(spider_dir, tmp_path / "out")
    card = (tmp_path / "out" / "README.md").read_text()
    assert "`music`: MISMATCH" in card and "stage" in card and "concert" in card
    assert "`pets`: not described in `tables.json`" in card


def _break(spider_dir: Path, how: str) -> tuple[str, str | None]:
    """Damage the fixture; return (file name expected in the error, field expected or None)."""
    dev = spider_dir / "dev.json"
    items = json.loads(dev.read_text())
    if how == "missing_file":
        dev.unlink()
        return "dev.json", None
    if how == "bad_json":
        dev.write_text('[{"db_id": "music", "question": "q", "query": "SELECT 1"},\n {"db_id": }]')
        return "dev.json", None
    if how == "not_a_list":
        write_json(dev, {"db_id": "music"})
        return "dev.json", None
    if how == "missing_field":
        del items[2]["query"]
    elif how == "empty_question":
        items[1]["question"] = "  "
        write_json(dev, items)
        return "dev.json", "question"
    elif how == "missing_database":
        items[3]["db_id"] = "nowhere"
    elif how == "bad_db_id":
        items[0]["db_id"] = "../music"
    elif how == "unparseable_sql":
        items[1]["query"] = "SELECT FROM WHERE"
    elif how == "bad_index":
        items[0]["spider_dev_index"] = "first"
        write_json(dev, items)
        return "dev.json", "spider_dev_index"
    elif how == "bad_tables_json":
        (spider_dir / "tables.json").write_text("{oops")
        return "tables.json", None
    elif how == "corrupt_database":
        (spider_dir / "database" / "pets" / "pets.sqlite").write_bytes(b"this is not sqlite" * 100)
        return "pets.sqlite", None
    write_json(dev, items)
    return "dev.json", {"missing_field": "query", "missing_database": "db_id", "bad_db_id": "db_id",
                        "unparseable_sql": "query"}[how]


@pytest.mark.parametrize("how", ["missing_file", "bad_json", "not_a_list", "missing_field", "empty_question",
                                 "missing_database", "bad_db_id", "unparseable_sql", "bad_index",
                                 "bad_tables_json", "corrupt_database"])
def test_import_spider_malformed_input(spider_dir: Path, tmp_path: Path, how: str) -> None:
    file_name, field = _break(spider_dir, how)
    out = tmp_path / "datasets" / "spider-dev"
    with pytest.raises(DatasetError) as info:
        import_spider(spider_dir, out)
    err = info.value
    assert err.file is not None and Path(err.file).name == file_name, str(err)
    assert file_name in str(err)
    if field is not None:
        assert err.field == field and repr(field) in str(err)
    if how in {"missing_field", "missing_database", "unparseable_sql", "bad_db_id"}:
        assert err.item_id is not None and err.item_id.startswith("#")  # names the item's position
    assert not out.exists()
    assert not out.parent.exists()  # not even the parent folder it would have created
    assert leftovers(tmp_path) == []


def test_bad_json_names_the_line(spider_dir: Path, tmp_path: Path) -> None:
    _break(spider_dir, "bad_json")
    with pytest.raises(DatasetError) as info:
        import_spider(spider_dir, tmp_path / "out")
    assert info.value.line == 2


def test_missing_field_names_the_item(spider_dir: Path, tmp_path: Path) -> None:
    _break(spider_dir, "missing_field")
    with pytest.raises(DatasetError, match="missing required field 'query'") as info:
        import_spider(spider_dir, tmp_path / "out")
    assert info.value.item_id == "#2"


def test_existing_output_is_refused(spider_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not empty") as info:
        import_spider(spider_dir, out)
    assert info.value.file == str(out)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert leftovers(tmp_path) == []

    ds = import_spider(spider_dir, out, overwrite=True)
    assert len(ds) == 4 and not (out / "keep.txt").exists()
    assert leftovers(tmp_path) == []


def test_existing_empty_directory_is_used(spider_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    assert len(import_spider(spider_dir, out)) == 4


def test_output_path_that_is_a_file_is_refused(spider_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.write_text("x")
    with pytest.raises(DatasetError, match="not a directory"):
        import_spider(spider_dir, out, overwrite=True)
    assert out.read_text() == "x"


def test_failure_while_copying_leaves_nothing(spider_dir: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import pipelines.importers as importers

    calls = {"n": 0}
    real_copy = importers._copy

    def flaky_copy(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        real_copy(*args, **kwargs)

    monkeypatch.setattr(importers, "_copy", flaky_copy)
    out = tmp_path / "new" / "out"
    with pytest.raises(OSError, match="disk full"):
        import_spider(spider_dir, out)
    assert calls["n"] == 2
    assert not out.exists() and not out.parent.exists()
    assert leftovers(tmp_path) == []


def test_progress_bar_path(spider_dir: Path, tmp_path: Path) -> None:
    ds = import_spider(spider_dir, tmp_path / "out", progress=True)
    assert len(ds) == 4


# --------------------------------------------------------------------------------------------------
# BIRD


def test_import_bird(bird_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bird-dev"
    ds = import_bird(bird_dir, out)
    assert ds.name == "bird-dev"
    assert [ex.id for ex in ds] == ["bird-dev-0007", "bird-dev-0003", "bird-dev-0012"]  # source order
    assert [ex.difficulty for ex in ds] == ["easy", "medium", "hard"]
    assert [ex.notes for ex in ds] == ["BIRD difficulty: simple", "BIRD difficulty: moderate",
                                       "BIRD difficulty: challenging"]
    assert ds.examples[0].evidence is None
    assert ds.examples[1].evidence == BIRD_ITEMS[1]["evidence"]
    assert [ex.category for ex in ds] == ["aggregate", "aggregate", "nested"]
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["README.md", "database/shop/shop.sqlite", "dataset.yaml", "questions.jsonl"]
    manifest = yaml.safe_load((out / "dataset.yaml").read_text())
    assert manifest["license"] == "CC BY-SA 4.0" and "BIRD" in manifest["source"]
    loaded = load_dataset(out)
    with sqlite3.connect(loaded.database_paths("shop")[0]) as conn:
        assert conn.execute(BIRD_ITEMS[1]["SQL"]).fetchone() == (9.5,)
    assert "| hard | 1 | 33.3% |" in (out / "README.md").read_text()


@pytest.mark.parametrize(("change", "field"), [
    (lambda items: items[1].update(difficulty="brutal"), "difficulty"),
    (lambda items: items[0].pop("SQL"), "SQL"),
    (lambda items: items[2].update(question_id=7), "question_id"),
    (lambda items: items[2].update(db_id="elsewhere"), "db_id"),
])
def test_import_bird_malformed_input(bird_dir: Path, tmp_path: Path, change: Any, field: str) -> None:
    items = json.loads((bird_dir / "dev.json").read_text())
    change(items)
    write_json(bird_dir / "dev.json", items)
    out = tmp_path / "bird-dev"
    with pytest.raises(DatasetError) as info:
        import_bird(bird_dir, out)
    assert info.value.field == field
    assert "dev.json" in str(info.value)
    assert not out.exists() and leftovers(tmp_path) == []


def test_import_bird_missing_databases_folder(bird_dir: Path, tmp_path: Path) -> None:
    (bird_dir / "dev_databases" / "shop" / "shop.sqlite").unlink()
    (bird_dir / "dev_databases" / "shop" / "database_description").rmdir()
    (bird_dir / "dev_databases" / "shop").rmdir()
    (bird_dir / "dev_databases").rmdir()
    with pytest.raises(DatasetError, match="databases folder not found"):
        import_bird(bird_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------------
# CLI


def test_cli_import_spider(spider_dir: Path, tmp_path: Path) -> None:
    from cli.main import app

    out = tmp_path / "cli-out"
    result = CliRunner().invoke(app, ["datasets", "import-spider", str(spider_dir), "--out", str(out),
                                      "--name", "tiny-spider"])
    assert result.exit_code == 0, result.output
    assert "tiny-spider" in result.output
    assert "medium" in result.output and "extra" in result.output
    assert load_dataset(out).name == "tiny-spider"


def test_cli_import_spider_bad_input(spider_dir: Path, tmp_path: Path) -> None:
    from cli.main import app

    _break(spider_dir, "missing_field")
    out = tmp_path / "cli-out"
    result = CliRunner().invoke(app, ["datasets", "import-spider", str(spider_dir), "--out", str(out)])
    assert result.exit_code == 2
    assert "error:" in result.output and "missing required field 'query'" in result.output
    assert "dev.json" in result.output
    assert not out.exists()


def test_cli_import_bird(bird_dir: Path, tmp_path: Path) -> None:
    from cli.main import app

    out = tmp_path / "cli-bird"
    result = CliRunner().invoke(app, ["datasets", "import-bird", str(bird_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "bird-dev" in result.output and "hard" in result.output


def test_output_inside_the_source_is_refused(spider_dir: Path) -> None:
    with pytest.raises(DatasetError, match="outside the source folder"):
        import_spider(spider_dir, spider_dir / "imported")
    with pytest.raises(DatasetError, match="outside the source folder"):
        import_spider(spider_dir, spider_dir.parent, overwrite=True)
    assert (spider_dir / "dev.json").is_file() and not (spider_dir / "imported").exists()
