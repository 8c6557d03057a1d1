-- A small sample workload for scripts/demo.sh: a few tables, a few hundred committed changes, one
-- rolled-back transaction (which must not reach Kafka).
CREATE TABLE IF NOT EXISTS organizations (id bigint PRIMARY KEY, name text NOT NULL, plan text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY, org_id bigint NOT NULL REFERENCES organizations,
    email text NOT NULL, full_name text, balance numeric(20,6) NOT NULL DEFAULT 0, tags text[], prefs jsonb);
CREATE TABLE IF NOT EXISTS invoices (org_id bigint NOT NULL, number integer NOT NULL,
    amount numeric(30,10) NOT NULL, issued_on date NOT NULL, paid boolean NOT NULL DEFAULT false,
    PRIMARY KEY (org_id, number));

INSERT INTO organizations (id, name, plan)
SELECT g, 'Org ' || g, (ARRAY['free', 'team', 'enterprise'])[1 + g % 3] FROM generate_series(1, 20) g;

INSERT INTO users (id, org_id, email, full_name, balance, tags, prefs)
SELECT g, 1 + g % 20, 'user' || g || '@example.com', 'User Nº' || g, (g * 1.234567)::numeric(20,6),
       ARRAY['tag' || g % 5], jsonb_build_object('theme', CASE WHEN g % 2 = 0 THEN 'dark' ELSE 'light' END)
FROM generate_series(1, 200) g;

INSERT INTO invoices (org_id, number, amount, issued_on)
SELECT 1 + g % 20, g, g * 99.0000000001, date '2026-01-01' + g FROM generate_series(1, 100) g;

BEGIN;
UPDATE invoices SET paid = true WHERE number % 3 = 0;
UPDATE users SET balance = balance - 10 WHERE org_id = 1;
COMMIT;

BEGIN;
INSERT INTO organizations (id, name, plan) VALUES (999, 'never committed', 'free');
ROLLBACK;

DELETE FROM invoices WHERE number > 90;
UPDATE users SET id = id + 1000 WHERE id = 7;
