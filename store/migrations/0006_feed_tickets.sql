-- One-time tickets for the live feed's URL, kept where every API replica finds them:
-- a ticket issued by one replica is redeemed on whichever the browser reaches.
CREATE TABLE IF NOT EXISTS feed_tickets (
    ticket_hash text        PRIMARY KEY,
    key_id      text        NOT NULL REFERENCES api_keys (key_id) ON DELETE CASCADE,
    expires_at  timestamptz NOT NULL
);

CREATE INDEX IF NOT EXISTS feed_tickets_expiry ON feed_tickets (expires_at);
