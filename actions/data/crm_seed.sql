-- Acme Cloud demo CRM used by the crm_lookup and create_ticket tools.
-- Safe to run more than once.

CREATE TABLE IF NOT EXISTS customers (
    customer_id TEXT PRIMARY KEY,
    birth_date  TEXT NOT NULL,      -- ISO 8601 (YYYY-MM-DD)
    name        TEXT NOT NULL,
    plan        TEXT NOT NULL,      -- Starter, Business, Enterprise
    status      TEXT NOT NULL       -- active, trial, suspended, closed
);

INSERT OR IGNORE INTO customers (customer_id, birth_date, name, plan, status) VALUES
    ('C12345', '1990-04-12', 'Jane Doe',         'Business',   'active'),
    ('C48213', '1985-03-03', 'Omar Haddad',      'Starter',    'active'),
    ('C55501', '1979-11-30', 'Mei Tanaka',       'Enterprise', 'active'),
    ('C31415', '1992-06-05', 'Lukas Becker',     'Starter',    'trial'),
    ('C77002', '2001-09-21', 'Priya Raman',      'Business',   'suspended'),
    ('C20481', '1976-07-04', 'Sam Okafor',       'Enterprise', 'active'),
    ('C90210', '1988-12-01', 'Ana Souza',        'Starter',    'closed'),
    ('C66123', '1995-02-28', 'Tom Fischer',      'Business',   'active'),
    ('C10001', '1969-10-15', 'Grace Lee',        'Business',   'trial'),
    ('C24680', '1983-05-19', 'Noah Williams',    'Starter',    'active');

CREATE TABLE IF NOT EXISTS tickets (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    sender_id       TEXT NOT NULL,
    summary         TEXT NOT NULL,
    priority        TEXT NOT NULL,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
