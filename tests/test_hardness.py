"""Spider hardness buckets and primary categories.

Each expected bucket below was derived by hand from the rules of Spider's official scorer
(``count_component1`` / ``count_component2`` / ``count_others`` and the thresholds of ``eval_hardness``);
the comment gives the counts as (component1, component2, others).
"""

from __future__ import annotations

import pytest

from evals.hardness import HardnessCounts, classify, hardness_counts, primary_category, spider_hardness
from t2s.datasets import CATEGORIES
from t2s.errors import SqlParseError

HARDNESS_CASES = [
    # --- easy -------------------------------------------------------------------------------------
    ("SELECT count(*) FROM singer", "easy"),  # (0, 0, 0)
    ("SELECT DISTINCT country FROM singer WHERE age > 20", "easy"),  # where: (1, 0, 0)
    ("SELECT name FROM singer ORDER BY age DESC", "easy"),  # order: (1, 0, 0)
    ("SELECT count(*) FROM singer WHERE age BETWEEN 20 AND 30", "easy"),  # BETWEEN's AND is no connective
    # HAVING's own aggregate is not counted as an aggregation: (1, 0, 0)
    ("SELECT country FROM singer GROUP BY country HAVING count(*) > 1", "easy"),
    # a FROM subquery is one table unit and its insides are not counted: (0, 0, 0)
    ("SELECT count(*) FROM (SELECT * FROM endowment WHERE amount > 8.5 GROUP BY school_id "
     "HAVING count(*) > 1)", "easy"),
    # a join of two tables: (1, 0, 0)
    ("SELECT T2.name FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id", "easy"),
    # NOT on a WHERE predicate counts as one "aggregation", but one alone is not > 1: (1, 0, 0)
    ("SELECT name FROM singer WHERE age NOT BETWEEN 20 AND 30", "easy"),
    ("select avg(horsepower) from cars_data where year < 1980;", "easy"),
    # --- medium -----------------------------------------------------------------------------------
    ("SELECT name, age FROM singer", "medium"),  # two select columns: (0, 0, 1)
    ("SELECT name FROM singer ORDER BY age LIMIT 1", "medium"),  # (2, 0, 0)
    ("SELECT avg(age), max(age) FROM singer", "medium"),  # aggs > 1, columns > 1: (0, 0, 2)
    ("SELECT count(*) FROM concert WHERE year = 2014 OR year = 2015", "medium"),  # where+or, 2 preds: (2, 0, 1)
    ("SELECT name, country FROM singer WHERE song_name LIKE '%Hey%'", "medium"),  # where+like: (2, 0, 1)
    # NOT BETWEEN + count(*) makes two aggregations (the easy twin above has one): (1, 0, 1)
    ("SELECT count(*) FROM singer WHERE age NOT BETWEEN 20 AND 30", "medium"),
    # HAVING ... AND ...: the AND word counts as an aggregation, with count(*) that is 2: (1, 0, 1)
    ("SELECT count(*) FROM singer GROUP BY country HAVING max(age) > 40 AND min(age) < 20", "medium"),
    # the same with OR also adds to component1: (2, 0, 1)
    ("SELECT count(*) FROM singer GROUP BY country HAVING max(age) > 40 OR min(age) < 20", "medium"),
    # three tables: two joins: (2, 0, 0)
    ("SELECT T3.name FROM a AS T1 JOIN b AS T2 ON T1.id = T2.a_id JOIN c AS T3 ON T2.id = T3.b_id", "medium"),
    ("SELECT a, b FROM t GROUP BY a, b", "medium"),  # 2 columns, 2 group columns: (1, 0, 2)
    ("SELECT T1.fname, T1.sex FROM student AS T1 JOIN has_pet AS T2 ON T1.stuid = T2.stuid "
     "GROUP BY T1.stuid HAVING count(*) > 1", "medium"),  # (2, 0, 1)
    # an OR inside a JOIN's ON counts like one in WHERE: (2, 0, 0)
    ("SELECT a.x FROM a JOIN b ON a.x = b.x OR a.y = b.y", "medium"),
    # parentheses do not matter, the flat predicate list has 3 predicates and one OR: (2, 0, 1)
    ("SELECT name FROM t WHERE (a = 1 OR a = 2) AND b = 3", "medium"),
    # --- hard -------------------------------------------------------------------------------------
    ("SELECT name FROM stadium WHERE stadium_id NOT IN (SELECT stadium_id FROM concert)", "hard"),  # (1, 1, 0)
    ("SELECT count(*) FROM stadium WHERE stadium_id IN (SELECT stadium_id FROM concert)", "hard"),  # (1, 1, 0)
    ("SELECT name FROM a UNION SELECT name FROM b", "hard"),  # (0, 1, 0)
    ("SELECT country FROM singer WHERE age > 40 INTERSECT SELECT country FROM singer WHERE age < 30",
     "hard"),  # only the first operand's WHERE counts: (1, 1, 0)
    ("SELECT T1.name FROM a AS T1 JOIN b AS T2 ON T1.id = T2.id EXCEPT SELECT name FROM c", "hard"),  # (1, 1, 0)
    # set operations chain into the right operand: one set operation at the top: (0, 1, 0)
    ("SELECT a FROM t UNION SELECT a FROM u EXCEPT SELECT a FROM v", "hard"),
    # a trailing ORDER BY/LIMIT belongs to the last operand, not the top: (0, 1, 0)
    ("SELECT a FROM t UNION SELECT a FROM u ORDER BY a LIMIT 1", "hard"),
    # the nested query's own joins, WHERE, GROUP BY, ORDER BY, LIMIT are not counted: (1, 1, 0)
    ("SELECT name FROM singer WHERE age > (SELECT avg(s.age) FROM singer AS s JOIN concert AS c "
     "ON s.id = c.sid WHERE c.year = 2014 OR c.year = 2015 GROUP BY c.year ORDER BY count(*) LIMIT 1)", "hard"),
    ("SELECT year FROM concert GROUP BY year ORDER BY count(*) DESC LIMIT 1", "hard"),  # (3, 0, 0)
    # three tables and a WHERE: (3, 0, 0)
    ("SELECT T2.name FROM singer_in_concert AS T1 JOIN singer AS T2 ON T1.singer_id = T2.singer_id "
     "JOIN concert AS T3 ON T1.concert_id = T3.concert_id WHERE T3.year = 2014", "hard"),
    # all four "others" with component1 <= 2: (2, 0, 4)
    ("SELECT country, sex, avg(age), max(age) FROM singer WHERE age > 20 AND is_male = 1 "
     "GROUP BY country, sex", "hard"),
    # --- extra ------------------------------------------------------------------------------------
    # NOT IN + count(*): two aggregations, so others = 1 and nesting is no longer "hard": (1, 1, 1)
    ("SELECT count(*) FROM stadium WHERE stadium_id NOT IN (SELECT stadium_id FROM concert)", "extra"),
    ("select avg(age) from student where stuid not in (select stuid from has_pet)", "extra"),  # (1, 1, 1)
    ("SELECT name FROM singer WHERE name LIKE '%a%' OR name LIKE '%b%'", "extra"),  # (4, 0, 1)
    # ORDER BY count(*) is an aggregation too: (2, 0, 2) fits neither medium nor hard
    ("SELECT country, count(*) FROM singer GROUP BY country ORDER BY count(*) DESC", "extra"),
    # two joins, GROUP BY, ORDER BY, LIMIT: (4, 0, 0)
    ("SELECT T2.CountryName FROM CAR_MAKERS AS T1 JOIN COUNTRIES AS T2 ON T1.Country = T2.CountryId "
     "GROUP BY T1.Country ORDER BY Count(*) DESC LIMIT 1;", "extra"),
    ("SELECT T1.model FROM CAR_NAMES AS T1 JOIN CARS_DATA AS T2 ON T1.MakeId = T2.Id "
     "WHERE T2.Weight < (SELECT avg(Weight) FROM CARS_DATA)", "extra"),  # (2, 1, 0)
    ("SELECT name FROM t WHERE a > (SELECT avg(a) FROM t) AND b < (SELECT avg(b) FROM t)", "extra"),  # (1, 2, 1)
    ("SELECT T1.name FROM a AS T1 JOIN b AS T2 ON T1.id = T2.id WHERE T2.x = 1 "
     "EXCEPT SELECT name FROM c", "extra"),  # (2, 1, 0)
    ("SELECT country, sex, avg(age), max(age) FROM singer WHERE age > 20 AND is_male = 1 "
     "GROUP BY country, sex ORDER BY country", "extra"),  # (3, 0, 4)
]


@pytest.mark.parametrize(("sql", "expected"), HARDNESS_CASES)
def test_spider_hardness(sql: str, expected: str) -> None:
    assert spider_hardness(sql) == expected


def test_there_are_enough_cases_in_every_bucket() -> None:
    buckets = [expected for _, expected in HARDNESS_CASES]
    assert len(buckets) >= 25
    assert all(buckets.count(b) >= 5 for b in ("easy", "medium", "hard", "extra"))


@pytest.mark.parametrize(("sql", "counts"), [
    ("SELECT count(*) FROM stadium WHERE stadium_id NOT IN (SELECT stadium_id FROM concert)", (1, 1, 1)),
    ("SELECT count(*) FROM singer GROUP BY country HAVING max(age) > 40 OR min(age) < 20", (2, 0, 1)),
    ("SELECT a FROM t UNION SELECT a FROM u ORDER BY a LIMIT 1", (0, 1, 0)),
    ("SELECT count(*) FROM (SELECT a FROM t JOIN u ON t.x = u.x WHERE a LIKE 'z%')", (0, 0, 0)),
    ("SELECT T1.name FROM singer AS T1 JOIN (SELECT singer_id FROM sic GROUP BY singer_id) AS T2 "
     "ON T1.singer_id = T2.singer_id", (1, 0, 0)),  # a FROM subquery is a table unit like any other
])
def test_hardness_counts(sql: str, counts: tuple[int, int, int]) -> None:
    assert hardness_counts(sql) == HardnessCounts(*counts)


@pytest.mark.parametrize(("counts", "bucket"), [
    ((1, 0, 0), "easy"), ((0, 0, 2), "medium"), ((2, 0, 1), "medium"), ((2, 0, 2), "extra"),
    ((2, 0, 3), "hard"), ((3, 0, 2), "hard"), ((3, 0, 3), "extra"), ((4, 0, 0), "extra"),
    ((1, 1, 0), "hard"), ((2, 1, 0), "extra"), ((1, 1, 1), "extra"), ((0, 2, 0), "extra"),
])
def test_thresholds(counts: tuple[int, int, int], bucket: str) -> None:
    assert HardnessCounts(*counts).bucket == bucket


def test_extensions_beyond_the_reference_parser() -> None:
    # IS NOT NULL sets the NOT flag like NOT IN; with count(*) that is two aggregations.
    assert hardness_counts("SELECT count(*) FROM t WHERE x IS NOT NULL") == HardnessCounts(1, 0, 1)
    # A scalar subquery in SELECT counts as nesting.
    assert spider_hardness("SELECT name, (SELECT count(*) FROM u) FROM t") == "extra"
    # A CTE is treated like a FROM subquery.
    assert spider_hardness("WITH x AS (SELECT a FROM t WHERE b > 1 ORDER BY a) SELECT count(*) FROM x") == "easy"
    # Comma joins are joins.
    assert hardness_counts("SELECT a FROM t, u WHERE t.x = u.x") == HardnessCounts(2, 0, 0)


def test_other_dialects() -> None:
    assert spider_hardness("SELECT TOP 1 name FROM singer ORDER BY age", dialect="tsql") == "medium"


@pytest.mark.parametrize("sql", [
    "", "   ", "SELEC name FROM singer", "SELECT name FROM singer WHERE", "SELECT 'unterminated",
    "SELECT 1; SELECT 2", "INSERT INTO t VALUES (1)",
])
def test_unparseable_sql_raises(sql: str) -> None:
    with pytest.raises(SqlParseError) as info:
        spider_hardness(sql)
    assert str(info.value)
    with pytest.raises(SqlParseError):
        primary_category(sql)


CATEGORY_CASES = [
    ("SELECT a FROM t UNION SELECT a FROM u", "set_ops"),
    ("SELECT a FROM t WHERE b IN (SELECT b FROM u UNION SELECT b FROM v)", "set_ops"),
    ("SELECT a FROM t WHERE b NOT IN (SELECT b FROM u)", "nested"),
    ("SELECT count(*) FROM (SELECT a FROM t)", "nested"),
    ("WITH x AS (SELECT a FROM t) SELECT a FROM x", "nested"),
    ("SELECT a FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.a = t.a)", "nested"),
    ("SELECT T1.a, count(*) FROM t AS T1 JOIN u AS T2 ON T1.id = T2.id GROUP BY T1.a", "join"),
    ("SELECT country, count(*) FROM singer GROUP BY country ORDER BY count(*) DESC LIMIT 1", "group_by"),
    ("SELECT name FROM singer ORDER BY age LIMIT 3", "order_limit"),
    ("SELECT count(*) FROM singer WHERE age > 20", "aggregate"),
    ("SELECT name FROM singer WHERE country IS NULL", "null_handling"),
    ("SELECT ifnull(nickname, name) FROM singer", "null_handling"),
    ("SELECT name FROM singer WHERE strftime('%Y', born) = '1990'", "dates"),
    ("SELECT name FROM events WHERE day BETWEEN '2014-01-01' AND '2014-12-31'", "dates"),
    ("SELECT name FROM singer WHERE age > 20 AND country = 'France'", "filter"),
    ("SELECT * FROM singer", "filter"),
]


@pytest.mark.parametrize(("sql", "expected"), CATEGORY_CASES)
def test_primary_category(sql: str, expected: str) -> None:
    assert expected in CATEGORIES
    assert primary_category(sql) == expected


def test_classify_matches_the_two_functions() -> None:
    for sql, _ in HARDNESS_CASES + CATEGORY_CASES:
        assert classify(sql) == (spider_hardness(sql), primary_category(sql))
