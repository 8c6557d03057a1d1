-- The demo's multi-tenant SaaS schema (PostgreSQL 15), filled by `cascade-gen` and routed by
-- main-db/routing.toml: `plans` and `countries` are reference tables broadcast to every shard; every
-- other table belongs to a tenant and carries its `org_id`, the shard key.
--
-- The shard key of users, subscriptions, invoices and events is not part of their primary key, so
-- they have REPLICA IDENTITY FULL: a delete must carry org_id for cdc to know its shard
-- (docs/configuration.md, "What the source needs").
--
-- Idempotent: `cascade-gen --schema` applies it before generating, as often as it likes.

CREATE TABLE IF NOT EXISTS plans (
    id             bigint PRIMARY KEY,
    code           text NOT NULL UNIQUE,
    name           text NOT NULL,
    seat_price     numeric(12,2) NOT NULL,       -- per seat and month, USD
    max_seats      integer                       -- NULL: unlimited
);

CREATE TABLE IF NOT EXISTS countries (
    code           char(2) PRIMARY KEY,          -- ISO 3166-1 alpha-2
    name           text NOT NULL,
    currency       char(3) NOT NULL              -- ISO 4217, what its organizations are invoiced in
);

CREATE TABLE IF NOT EXISTS organizations (
    id             bigint PRIMARY KEY,
    name           text NOT NULL,
    slug           text NOT NULL UNIQUE,
    plan_id        bigint NOT NULL REFERENCES plans,
    country_code   char(2) NOT NULL REFERENCES countries,
    created_at     timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS users (
    id             bigint PRIMARY KEY,
    org_id         bigint NOT NULL REFERENCES organizations,
    email          text NOT NULL,
    full_name      text NOT NULL,
    address        text,
    created_at     timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS users_org_id ON users (org_id);

CREATE TABLE IF NOT EXISTS subscriptions (
    id             bigint PRIMARY KEY,
    org_id         bigint NOT NULL REFERENCES organizations,
    plan_id        bigint NOT NULL REFERENCES plans,
    status         text NOT NULL CHECK (status IN ('trialing', 'active', 'past_due', 'canceled')),
    seats          integer NOT NULL CHECK (seats > 0),
    mrr            numeric(12,2) NOT NULL,       -- monthly recurring revenue, USD
    started_at     timestamptz NOT NULL,
    canceled_at    timestamptz
);
CREATE INDEX IF NOT EXISTS subscriptions_org_id ON subscriptions (org_id);

CREATE TABLE IF NOT EXISTS invoices (
    id              bigint PRIMARY KEY,
    org_id          bigint NOT NULL REFERENCES organizations,
    subscription_id bigint NOT NULL REFERENCES subscriptions,
    amount          numeric(12,2) NOT NULL,      -- the sum of line_items' amounts, in `currency`
    currency        char(3) NOT NULL,
    status          text NOT NULL CHECK (status IN ('open', 'paid', 'void')),
    issued_on       date NOT NULL,
    paid_at         timestamptz,
    line_items      jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS invoices_org_id ON invoices (org_id);
CREATE INDEX IF NOT EXISTS invoices_open ON invoices (id) WHERE status = 'open';

CREATE TABLE IF NOT EXISTS events (
    id             bigint PRIMARY KEY,
    org_id         bigint NOT NULL REFERENCES organizations,
    user_id        bigint REFERENCES users,      -- NULL: done by the system or an API key
    kind           text NOT NULL,
    properties     jsonb NOT NULL,
    occurred_at    timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS events_org_id ON events (org_id, occurred_at);
CREATE INDEX IF NOT EXISTS events_user_id ON events (user_id);

ALTER TABLE users REPLICA IDENTITY FULL;
ALTER TABLE subscriptions REPLICA IDENTITY FULL;
ALTER TABLE invoices REPLICA IDENTITY FULL;
ALTER TABLE events REPLICA IDENTITY FULL;

-- Seed rows. generator/src/catalog.rs holds the same values (a unit test compares them).
INSERT INTO plans (id, code, name, seat_price, max_seats) VALUES
    (1, 'free', 'Free', 0.00, 3),
    (2, 'starter', 'Starter', 9.00, 10),
    (3, 'team', 'Team', 19.00, 50),
    (4, 'business', 'Business', 39.00, 250),
    (5, 'enterprise', 'Enterprise', 79.00, NULL)
ON CONFLICT DO NOTHING;

INSERT INTO countries (code, name, currency) VALUES
    ('US', 'United States', 'USD'),
    ('CA', 'Canada', 'CAD'),
    ('GB', 'United Kingdom', 'GBP'),
    ('DE', 'Germany', 'EUR'),
    ('FR', 'France', 'EUR'),
    ('NL', 'Netherlands', 'EUR'),
    ('ES', 'Spain', 'EUR'),
    ('SE', 'Sweden', 'SEK'),
    ('AU', 'Australia', 'AUD'),
    ('JP', 'Japan', 'JPY')
ON CONFLICT DO NOTHING;
