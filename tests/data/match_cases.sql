-- Each case: a title line, an expectation line (verdict per rule set), the gold query, the predicted query.
-- Queries run on the `shop_db` fixture (tests/conftest.py). Verdicts: match, or an error class.

-- same query
-- t2s=match spider=match bird=match
SELECT name FROM customers WHERE city = 'Paris'
SELECT name FROM customers WHERE city = 'Paris'

-- aliases and join order differ
-- t2s=match spider=match bird=match
SELECT c.name, o.amount FROM customers AS c JOIN orders AS o ON o.customer_id = c.id
SELECT customers.name, orders.amount FROM orders JOIN customers ON customers.id = orders.customer_id

-- CTE instead of subquery; spider strips the CTE's DISTINCT, duplicating a row (a false negative)
-- t2s=match spider=wrong_result bird=match
SELECT name FROM customers WHERE id IN (SELECT customer_id FROM orders WHERE amount > 20)
WITH big AS (SELECT DISTINCT customer_id FROM orders WHERE amount > 20) SELECT name FROM customers JOIN big ON big.customer_id = customers.id

-- columns swapped: bird compares column order
-- t2s=match spider=match bird=wrong_result
SELECT name, city FROM customers
SELECT city, name FROM customers

-- rows in another order, gold does not order
-- t2s=match spider=match bird=match
SELECT name FROM customers
SELECT name FROM customers ORDER BY name DESC

-- gold orders at the outermost level: order matters
-- t2s=wrong_result spider=wrong_result bird=match
SELECT name FROM customers ORDER BY age DESC, name
SELECT name FROM customers ORDER BY age, name

-- ORDER BY only inside a subquery: spider treats order as significant, t2s does not
-- t2s=match spider=wrong_result bird=match
SELECT name FROM (SELECT name FROM customers ORDER BY name LIMIT 4)
SELECT name FROM (SELECT name FROM customers ORDER BY name LIMIT 4) ORDER BY name DESC

-- missing DISTINCT: spider strips DISTINCT from both and calls it a match
-- t2s=wrong_result spider=match bird=match
SELECT DISTINCT city FROM customers
SELECT city FROM customers

-- COUNT(DISTINCT x) vs COUNT(x): spider strips DISTINCT inside COUNT too (a false positive)
-- t2s=wrong_result spider=match bird=wrong_result
SELECT COUNT(DISTINCT city) FROM customers
SELECT COUNT(city) FROM customers

-- duplicates: multiset for t2s, set for bird; spider strips the DISTINCT and sees a match
-- t2s=wrong_result spider=match bird=match
SELECT amount FROM orders WHERE amount = 42
SELECT DISTINCT amount FROM orders WHERE amount = 42

-- integer vs float of the same value
-- t2s=match spider=match bird=match
SELECT COUNT(*) FROM orders
SELECT CAST(COUNT(*) AS REAL) FROM orders

-- float rounding: equal to 10 significant digits, not bit for bit
-- t2s=match spider=wrong_result bird=wrong_result
SELECT 0.3
SELECT 0.1 + 0.2

-- text '1' is not the number 1
-- t2s=wrong_result spider=wrong_result bird=wrong_result
SELECT 1
SELECT '1'

-- NULL equals NULL
-- t2s=match spider=match bird=match
SELECT age FROM customers WHERE name = 'Cid'
SELECT NULL

-- one extra column
-- t2s=wrong_result spider=wrong_result bird=wrong_result
SELECT name FROM customers
SELECT name, city FROM customers

-- empty prediction result
-- t2s=empty_result spider=empty_result bird=empty_result
SELECT name FROM customers WHERE city = 'Lyon'
SELECT name FROM customers WHERE city = 'Rome'

-- both empty
-- t2s=match spider=match bird=match
SELECT name FROM customers WHERE city = 'Rome'
SELECT name FROM customers WHERE age > 100

-- invented column
-- t2s=unknown_column spider=unknown_column bird=unknown_column
SELECT name FROM customers
SELECT full_name FROM customers

-- invented table
-- t2s=unknown_table spider=unknown_table bird=unknown_table
SELECT name FROM customers
SELECT name FROM clients

-- destructive statement
-- t2s=refused spider=refused bird=refused
SELECT name FROM customers
DROP TABLE customers

-- not SQL
-- t2s=parse_error spider=parse_error bird=parse_error
SELECT name FROM customers
the customers' names please

-- gold written in T-SQL, prediction in SQLite
-- t2s=match spider=match bird=match
SELECT TOP 2 [name] FROM customers ORDER BY ISNULL(age, 0) DESC, name
SELECT name FROM customers ORDER BY COALESCE(age, 0) DESC, name LIMIT 2

-- ties in the gold ordering: order-sensitive comparison (validation flags such gold)
-- t2s=wrong_result spider=wrong_result bird=match
SELECT name FROM customers ORDER BY age DESC, name
SELECT name FROM customers ORDER BY age DESC, name DESC

-- spider placeholder: the reference turns the text value into 1 in predictions, with or without spaces around it
-- t2s=unknown_column spider=match bird=unknown_column
SELECT name FROM customers WHERE age > 1
SELECT name FROM customers WHERE age>value

-- spider placeholder in double quotes: "value" becomes "1", which SQLite reads as the text '1'
-- t2s=empty_result spider=match bird=empty_result
SELECT name FROM customers WHERE age > 1
SELECT name FROM customers WHERE age > "value"

-- spider placeholder in single quotes
-- t2s=wrong_result spider=match bird=wrong_result
SELECT COUNT(*) FROM customers WHERE age > 1
SELECT COUNT(*) FROM customers WHERE age > 'value'

-- spider rewrites value inside a string of a prediction identical to its gold (a false negative)
-- t2s=match spider=wrong_result bird=match
SELECT 'good value' AS label, name FROM customers
SELECT 'good value' AS label, name FROM customers

-- spider rewrites identifiers containing value: the CTE valued becomes 1d and no longer parses
-- t2s=match spider=parse_error bird=match
SELECT name FROM customers
WITH valued AS (SELECT name FROM customers) SELECT name FROM valued

-- spider rewrites an alias containing value everywhere it occurs, so the query still runs
-- t2s=match spider=match bird=match
SELECT customer_id, SUM(amount) FROM orders GROUP BY customer_id ORDER BY SUM(amount) DESC
SELECT customer_id, SUM(amount) AS total_value FROM orders GROUP BY customer_id ORDER BY total_value DESC

-- spider's placeholder rewrite is case-sensitive: VALUE stays a (missing) column
-- t2s=unknown_column spider=unknown_column bird=unknown_column
SELECT name FROM customers WHERE age > 1
SELECT name FROM customers WHERE age > VALUE
