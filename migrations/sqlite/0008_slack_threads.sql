-- The Slack thread of an incident (Slack app mode): which process claimed the right to post its
-- parent message, the parent's channel and ts once posted, and what the thread already says.
-- The claim row is written BEFORE the parent is posted, so a second process (or a restart) sees
-- it and never posts a second parent; a claim left without ts (a crash or an unanswered request
-- mid-post) is taken over after a while by looking the message up in the channel first.
CREATE TABLE slack_threads (
    incident_id        TEXT PRIMARY KEY NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
    channel            TEXT NOT NULL CHECK (channel <> ''),
    claim_owner        TEXT NOT NULL,
    claimed_at         INTEGER NOT NULL,
    ts                 TEXT,
    posted_occurrences INTEGER NOT NULL DEFAULT 0,
    posted_attempt     INTEGER NOT NULL DEFAULT 0,
    resolved_posted    INTEGER NOT NULL DEFAULT 0,
    -- The incident status the parent message shows.
    posted_status      TEXT
);
