-- Hostile SQL, by category. Each block: a title line "-- <category>: <title>", an expectation line
-- "-- engines=<all|comma list> guard=<refuse|any>", then the statement (no blank lines inside).
-- Every statement is sent to the guard and, separately, straight to each engine (Target.execute) on the
-- shop databases of tests/test_hostile_sql.py. Whatever happens: only SqlError, nothing changes (database
-- checksums, session canaries, role settings), no file appears, and it returns within timeout + 1 s.
-- guard=refuse: the guard must refuse it; guard=any: legal-looking SQL the engine layer must stop.
-- engine=error|any: whether the engine alone must raise. By default it must for writes, ddl, stacked,
-- transaction, file-network and session-state statements; elsewhere an answer is fine (the guard refuses
-- those functions; the engine layer only has to keep every state unchanged).
-- {tmp} is a directory that must stay empty.

-- writes: delete
-- engines=all guard=refuse
DELETE FROM customers

-- writes: update
-- engines=all guard=refuse
UPDATE customers SET age = 0

-- writes: insert
-- engines=all guard=refuse
INSERT INTO customers VALUES (99, 'x', 'y', 1)

-- writes: insert select
-- engines=all guard=refuse
INSERT INTO orders SELECT * FROM orders

-- writes: replace into
-- engines=sqlite guard=refuse
REPLACE INTO customers VALUES (1, 'x', 'y', 1)

-- writes: upsert
-- engines=all guard=refuse
INSERT INTO customers VALUES (1, 'x', 'y', 1) ON CONFLICT (id) DO UPDATE SET name = 'pwned'

-- writes: merge
-- engines=postgres,duckdb guard=refuse
MERGE INTO customers c USING orders o ON c.id = o.customer_id WHEN MATCHED THEN DELETE

-- writes: delete in a CTE
-- engines=all guard=refuse
WITH d AS (DELETE FROM customers RETURNING *) SELECT * FROM d

-- writes: update in a CTE
-- engines=postgres guard=refuse
WITH u AS (UPDATE customers SET age = 0 RETURNING id) SELECT count(*) FROM u

-- writes: select into
-- engines=all guard=refuse
SELECT * INTO stolen FROM customers

-- writes: create table as
-- engines=all guard=refuse
CREATE TABLE stolen AS SELECT * FROM customers

-- ddl: drop table
-- engines=all guard=refuse
DROP TABLE customers

-- ddl: drop table if exists cascade
-- engines=postgres guard=refuse
DROP TABLE IF EXISTS customers CASCADE

-- ddl: alter table
-- engines=all guard=refuse
ALTER TABLE customers ADD COLUMN pwned INT

-- ddl: rename table
-- engines=all guard=refuse
ALTER TABLE customers RENAME TO clients

-- ddl: create view
-- engines=all guard=refuse
CREATE VIEW v AS SELECT 1

-- ddl: create temp table shadowing a real one
-- engines=all guard=refuse
CREATE TEMP TABLE customers AS SELECT 1 AS id

-- ddl: create temp view shadowing a real one
-- engines=all guard=refuse
CREATE TEMP VIEW customers AS SELECT 1 AS id

-- ddl: create index
-- engines=all guard=refuse
CREATE INDEX ix ON customers (name)

-- ddl: truncate
-- engines=postgres,duckdb guard=refuse
TRUNCATE customers

-- ddl: create function
-- engines=postgres guard=refuse
CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'

-- ddl: create macro
-- engines=duckdb guard=refuse
CREATE MACRO m(a) AS a + 1

-- ddl: create schema
-- engines=postgres,duckdb guard=refuse
CREATE SCHEMA pwned

-- ddl: create role superuser
-- engines=postgres guard=refuse
CREATE ROLE pwned SUPERUSER LOGIN

-- ddl: alter role timeout off
-- engines=postgres guard=refuse
ALTER ROLE CURRENT_USER SET statement_timeout = 0

-- ddl: grant
-- engines=postgres guard=refuse
GRANT ALL ON customers TO PUBLIC

-- ddl: comment on
-- engines=postgres,duckdb guard=refuse
COMMENT ON TABLE customers IS 'pwned'

-- ddl: vacuum
-- engines=all guard=refuse
VACUUM

-- ddl: vacuum into a file
-- engines=sqlite guard=refuse
VACUUM INTO '{tmp}/copy.db'

-- ddl: reindex (a table without indexes: nothing to do)
-- engines=sqlite,postgres guard=refuse engine=any
REINDEX customers

-- ddl: analyze
-- engines=all guard=refuse
ANALYZE

-- stacked: select then delete
-- engines=all guard=refuse
SELECT 1; DELETE FROM customers

-- stacked: select then drop
-- engines=all guard=refuse
SELECT 1; DROP TABLE customers;

-- stacked: select then select
-- engines=all guard=refuse
SELECT 1; SELECT 2

-- stacked: newline-separated
-- engines=all guard=refuse
SELECT count(*) FROM customers;
DELETE FROM orders;

-- stacked: semicolon in a comment then a statement
-- engines=all guard=refuse
SELECT 1 /* ; */ ; UPDATE customers SET age = 1

-- transaction: commit then delete
-- engines=all guard=refuse
COMMIT; DELETE FROM customers

-- transaction: rollback then write
-- engines=all guard=refuse
ROLLBACK; INSERT INTO customers VALUES (98, 'x', 'y', 1)

-- transaction: end then drop
-- engines=postgres,sqlite guard=refuse
END; DROP TABLE customers

-- transaction: begin
-- engines=all guard=refuse
BEGIN

-- transaction: begin read write
-- engines=postgres guard=refuse
BEGIN READ WRITE

-- transaction: set transaction read write
-- engines=postgres guard=refuse
SET TRANSACTION READ WRITE

-- transaction: start transaction then write
-- engines=postgres,duckdb guard=refuse
START TRANSACTION; DELETE FROM customers; COMMIT

-- transaction: savepoint
-- engines=all guard=refuse
SAVEPOINT s

-- transaction: abort
-- engines=postgres,duckdb guard=refuse
ABORT

-- transaction: default read only off
-- engines=postgres guard=refuse
SET default_transaction_read_only = off

-- transaction: prepare transaction
-- engines=postgres guard=refuse
PREPARE TRANSACTION 'x'

-- comments: write hidden after a line comment
-- engines=all guard=refuse
SELECT 1 --
; DELETE FROM customers

-- comments: nested block comment differential
-- engines=all guard=refuse
SELECT 1 /* outer /* inner */ , pg_sleep(5) -- */

-- comments: block comment hiding a second statement
-- engines=all guard=refuse
SELECT 1 /**/;/**/DROP TABLE customers

-- comments: mysql executable comment
-- engines=all guard=any engine=any
SELECT 1 /*! ; DROP TABLE customers */

-- unicode: escaped dblink_exec name
-- engines=postgres guard=refuse
SELECT U&"dblink\005fexec"('dbname=postgres', 'DELETE FROM shop.customers')

-- unicode: escaped pg_sleep
-- engines=postgres guard=refuse
SELECT U&"pg\005fsleep"(5)

-- unicode: escaped name with custom escape
-- engines=postgres guard=refuse
SELECT U&"pg!005fread!005ffile" UESCAPE '!' ('/etc/passwd')

-- unicode: escaped string
-- engines=postgres guard=refuse
SELECT U&'\0041' AS a

-- unicode: fullwidth semicolon
-- engines=all guard=any
SELECT 1； DROP TABLE customers

-- unicode: homoglyph function name
-- engines=all guard=refuse
SELECT ｐｇ_sleep(1)

-- unicode: quoted function name
-- engines=postgres guard=refuse
SELECT "pg_sleep"(5)

-- unicode: quoted upper-case function name
-- engines=all guard=refuse
SELECT "LOAD_EXTENSION"('x')

-- unicode: right-to-left override in a string
-- engines=all guard=any engine=any
SELECT '‮ELBAT PORD' AS s

-- string-exec: query_to_xml running dblink
-- engines=postgres guard=refuse
SELECT query_to_xml('select dblink_exec(''dbname=postgres'', ''DELETE FROM shop.customers'')', true, false, '')

-- string-exec: query_to_xml plain
-- engines=postgres guard=refuse
SELECT query_to_xml('SELECT * FROM customers', true, false, '')

-- string-exec: ts_stat
-- engines=postgres guard=refuse
SELECT * FROM ts_stat('SELECT to_tsvector(name) FROM customers')

-- string-exec: ts_rewrite
-- engines=postgres guard=refuse
SELECT ts_rewrite('a'::tsquery, 'SELECT ''a''::tsquery, ''b''::tsquery')

-- string-exec: xpath over query_to_xml
-- engines=postgres guard=refuse
SELECT xpath('/row', query_to_xml('select pg_read_file(''/etc/passwd'')', true, false, ''))

-- string-exec: duckdb query
-- engines=duckdb guard=refuse
SELECT * FROM query('SELECT 42')

-- string-exec: duckdb query_table
-- engines=duckdb guard=refuse
SELECT * FROM query_table('customers')

-- string-exec: table_to_xml
-- engines=postgres guard=refuse
SELECT table_to_xml('customers', true, false, '')

-- engine-functions: dblink_exec
-- engines=postgres guard=refuse
SELECT dblink_exec('dbname=postgres', 'DELETE FROM shop.customers')

-- engine-functions: dblink_connect
-- engines=postgres guard=refuse
SELECT dblink_connect('c', 'dbname=postgres')

-- engine-functions: dblink_send_query
-- engines=postgres guard=refuse
SELECT dblink_send_query('c', 'DELETE FROM shop.customers')

-- engine-functions: dblink in from
-- engines=postgres guard=refuse
SELECT * FROM dblink('dbname=postgres', 'DELETE FROM shop.customers RETURNING 1') AS t(x int)

-- engine-functions: schema-qualified sleep
-- engines=postgres guard=refuse
SELECT pg_catalog.pg_sleep(5)

-- engine-functions: replication slot
-- engines=postgres guard=refuse
SELECT pg_create_physical_replication_slot('pwned')

-- engine-functions: switch wal
-- engines=postgres guard=refuse
SELECT pg_switch_wal()

-- engine-functions: backup start
-- engines=postgres guard=refuse
SELECT pg_backup_start('x')

-- engine-functions: stat reset
-- engines=postgres guard=refuse
SELECT pg_stat_reset()

-- engine-functions: stat reset shared
-- engines=postgres guard=refuse
SELECT pg_stat_reset_shared('bgwriter')

-- engine-functions: terminate backends
-- engines=postgres guard=refuse
SELECT pg_terminate_backend(pid) FROM pg_stat_activity

-- engine-functions: cancel backends
-- engines=postgres guard=refuse
SELECT pg_cancel_backend(pid) FROM pg_stat_activity

-- engine-functions: reload conf
-- engines=postgres guard=refuse
SELECT pg_reload_conf()

-- engine-functions: set_config
-- engines=postgres guard=refuse
SELECT set_config('statement_timeout', '0', false)

-- engine-functions: notify
-- engines=postgres guard=refuse
SELECT pg_notify('ch', 'pwned')

-- engine-functions: nextval
-- engines=postgres guard=refuse
SELECT nextval('customers_id_seq')

-- engine-functions: large object from bytea
-- engines=postgres guard=refuse
SELECT lo_from_bytea(0, 'pwned')

-- engine-functions: txid_current
-- engines=postgres guard=refuse
SELECT txid_current()

-- engine-functions: sqlite load_extension
-- engines=sqlite guard=refuse
SELECT load_extension('/tmp/evil.so')

-- engine-functions: sqlite fts3_tokenizer
-- engines=sqlite guard=refuse
SELECT fts3_tokenizer('simple')

-- engine-functions: duckdb enable_logging to a file
-- engines=duckdb guard=refuse
SELECT * FROM enable_logging(storage='file', storage_path='{tmp}/log')

-- engine-functions: duckdb checkpoint
-- engines=duckdb guard=refuse
SELECT * FROM checkpoint()

-- engine-functions: duckdb settings table function
-- engines=duckdb guard=refuse
SELECT * FROM duckdb_settings()

-- engine-functions: duckdb getenv
-- engines=duckdb guard=refuse
SELECT getenv('HOME')

-- engine-functions: duckdb current_setting
-- engines=duckdb,postgres guard=refuse
SELECT current_setting('search_path')

-- file-network: pg_read_file
-- engines=postgres guard=refuse
SELECT pg_read_file('/etc/passwd')

-- file-network: pg_read_binary_file
-- engines=postgres guard=refuse
SELECT pg_read_binary_file('/etc/hostname')

-- file-network: pg_ls_dir
-- engines=postgres guard=refuse
SELECT * FROM pg_ls_dir('.')

-- file-network: pg_file_write
-- engines=postgres guard=refuse
SELECT pg_file_write('{tmp}/pwned', 'x', false)

-- file-network: lo_import
-- engines=postgres guard=refuse
SELECT lo_import('/etc/passwd')

-- file-network: copy to program
-- engines=postgres guard=refuse
COPY (SELECT 1) TO PROGRAM 'touch {tmp}/pwned'

-- file-network: copy to file
-- engines=all guard=refuse
COPY (SELECT * FROM customers) TO '{tmp}/out.csv'

-- file-network: copy from file
-- engines=postgres,duckdb guard=refuse
COPY customers FROM '/etc/passwd'

-- file-network: copy to stdout
-- engines=postgres guard=refuse
COPY customers TO STDOUT

-- file-network: duckdb read_csv
-- engines=duckdb guard=refuse
SELECT * FROM read_csv('/etc/passwd')

-- file-network: duckdb read_text
-- engines=duckdb guard=refuse
SELECT * FROM read_text('/etc/hostname')

-- file-network: duckdb replacement scan on a path
-- engines=duckdb guard=refuse
SELECT * FROM '/etc/passwd'

-- file-network: duckdb quoted path
-- engines=duckdb guard=refuse
SELECT * FROM "/etc/hostname.csv"

-- file-network: duckdb glob
-- engines=duckdb guard=refuse
SELECT * FROM glob('/etc/*')

-- file-network: duckdb parquet over http
-- engines=duckdb guard=refuse
SELECT * FROM read_parquet('http://127.0.0.1:9/x.parquet')

-- file-network: duckdb install extension
-- engines=duckdb guard=refuse
INSTALL httpfs

-- file-network: duckdb load extension
-- engines=duckdb guard=refuse
LOAD httpfs

-- file-network: duckdb export database
-- engines=duckdb guard=refuse
EXPORT DATABASE '{tmp}/dump'

-- file-network: attach a file
-- engines=all guard=refuse
ATTACH DATABASE '{tmp}/evil.db' AS evil

-- file-network: attach memory
-- engines=sqlite,duckdb guard=refuse
ATTACH ':memory:' AS m

-- file-network: sqlite readfile
-- engines=sqlite guard=refuse
SELECT readfile('/etc/passwd')

-- file-network: sqlite writefile
-- engines=sqlite guard=refuse
SELECT writefile('{tmp}/pwned', 'x')

-- session-state: pragma writable schema
-- engines=sqlite guard=refuse
PRAGMA writable_schema = 1

-- session-state: pragma query_only off
-- engines=sqlite guard=refuse
PRAGMA query_only = 0

-- session-state: duckdb set memory limit
-- engines=duckdb guard=refuse
SET memory_limit = '100GB'

-- session-state: duckdb enable external access
-- engines=duckdb guard=refuse
SET enable_external_access = true

-- session-state: duckdb pragma
-- engines=duckdb guard=refuse
PRAGMA enable_profiling

-- session-state: duckdb reset lock
-- engines=duckdb guard=refuse
RESET lock_configuration

-- session-state: set search path
-- engines=postgres,duckdb guard=refuse
SET search_path = pg_temp

-- session-state: set statement timeout
-- engines=postgres guard=refuse
SET statement_timeout = 0

-- session-state: set role
-- engines=postgres guard=refuse
SET ROLE t2s

-- session-state: set session authorization
-- engines=postgres guard=refuse
SET SESSION AUTHORIZATION t2s

-- session-state: listen
-- engines=postgres guard=refuse
LISTEN pwned

-- session-state: prepare a statement
-- engines=postgres guard=refuse
PREPARE p AS SELECT 1

-- session-state: declare a cursor with hold
-- engines=postgres guard=refuse
DECLARE c CURSOR WITH HOLD FOR SELECT 1

-- session-state: do block
-- engines=postgres guard=refuse
DO $$BEGIN DELETE FROM shop.customers; END$$

-- session-state: call a procedure
-- engines=postgres,duckdb guard=refuse
CALL pwned()

-- session-state: execute
-- engines=postgres guard=refuse
EXECUTE p

-- session-state: discard
-- engines=postgres guard=refuse
DISCARD ALL

-- session-state: session variable
-- engines=sqlite guard=refuse
SELECT @@version

-- session-state: session variable where @ is an operator
-- engines=duckdb,postgres guard=any
SELECT @@version

-- locks: advisory lock
-- engines=postgres guard=refuse
SELECT pg_advisory_lock(42)

-- locks: try advisory lock
-- engines=postgres guard=refuse
SELECT pg_try_advisory_lock(42)

-- locks: shared advisory lock
-- engines=postgres guard=refuse
SELECT pg_advisory_lock_shared(42)

-- locks: try shared advisory lock
-- engines=postgres guard=refuse
SELECT pg_try_advisory_lock_shared(42)

-- locks: row lock
-- engines=postgres,duckdb guard=refuse
SELECT * FROM customers FOR UPDATE

-- locks: lock table
-- engines=postgres guard=refuse
LOCK TABLE customers IN ACCESS EXCLUSIVE MODE

-- locks: sleep
-- engines=postgres guard=refuse
SELECT pg_sleep(30)

-- locks: sleep for
-- engines=postgres guard=refuse
SELECT pg_sleep_for('30 seconds')

-- resource: sqlite printf width
-- engines=sqlite guard=any
SELECT printf('%.*c', 999999999, 'x')

-- resource: sqlite randomblob
-- engines=sqlite guard=refuse
SELECT length(randomblob(500000000))

-- resource: sqlite zeroblob
-- engines=sqlite guard=refuse
SELECT length(zeroblob(500000000))

-- resource: recursive cte doubling a string
-- engines=sqlite,duckdb,postgres guard=any
WITH RECURSIVE r(x, n) AS (SELECT 'x', 0 UNION ALL SELECT x || x, n + 1 FROM r WHERE n < 40) SELECT max(length(x)) FROM r

-- resource: endless recursive cte
-- engines=all guard=any
WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r

-- resource: repeat a billion
-- engines=duckdb,postgres guard=any
SELECT length(repeat('x', 1000000000))

-- resource: repeat a hundred million
-- engines=postgres,duckdb guard=any engine=any
SELECT length(repeat('x', 100000000))

-- resource: string_agg of repeats
-- engines=duckdb,postgres guard=any
SELECT length(string_agg(repeat('x', 100000), ',')) FROM nums

-- resource: lpad to a billion
-- engines=all guard=any
SELECT length(lpad('x', 1000000000, 'y'))

-- resource: catastrophic regex
-- engines=postgres guard=any engine=any
SELECT 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!' ~ '^(a|a|aa)*(a|a|aa)*(a|a|aa)*$'

-- resource: duckdb catastrophic regex
-- engines=duckdb guard=any engine=any
SELECT regexp_matches(repeat('a', 100000) || '!', '^(a|aa)*(a|aa)*$')

-- resource: cartesian product
-- engines=all guard=any
SELECT count(*) FROM nums a, nums b, nums c, nums d

-- resource: generate_series huge
-- engines=postgres,duckdb guard=any
SELECT count(*) FROM generate_series(1, 100000000000)

-- resource: wide cross join result
-- engines=all guard=any engine=any
SELECT * FROM nums a, nums b

-- resource: huge sort
-- engines=all guard=any engine=any
SELECT a.tag || b.tag FROM nums a, nums b ORDER BY 1 DESC LIMIT 1

-- resource: deep json
-- engines=sqlite,postgres guard=any engine=any
SELECT json_array_length('[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]')

-- odd: comment only
-- engines=all guard=refuse
-- nothing here

-- odd: semicolons only
-- engines=all guard=refuse
;;;

-- odd: show all
-- engines=duckdb,postgres guard=refuse
SHOW ALL

-- odd: describe
-- engines=duckdb guard=refuse
DESCRIBE customers

-- odd: explain analyze a write
-- engines=all guard=refuse
EXPLAIN ANALYZE DELETE FROM customers

-- odd: values then delete
-- engines=all guard=refuse
VALUES (1); DELETE FROM customers

-- odd: table statement
-- engines=postgres,duckdb guard=refuse
TABLE customers; DELETE FROM customers

-- catalog: roles with passwords
-- engines=postgres guard=any engine=error
SELECT rolname, rolpassword FROM pg_authid

-- catalog: shadow passwords
-- engines=postgres guard=any engine=error
SELECT usename, passwd FROM pg_shadow
