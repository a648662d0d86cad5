-- 0001_init: jobs, their labels and events, artifacts and their files,
-- webhook deliveries.  Times are integer milliseconds since the Unix epoch.

CREATE TABLE jobs (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,  -- submission order; list cursors
    id              TEXT    NOT NULL UNIQUE,            -- "j_" + 20 hex digits
    status          TEXT    NOT NULL CHECK (status IN ('queued', 'downloading', 'calibrating',
                        'quantizing', 'writing', 'evaluating', 'succeeded', 'failed', 'cancelled')),
    priority        INTEGER NOT NULL DEFAULT 0,
    model           TEXT    NOT NULL,                   -- "org/name" or "local:NAME"
    revision        TEXT    NOT NULL,                   -- as requested
    source_revision TEXT,                               -- the pinned commit sha, once known
    spec            TEXT    NOT NULL,                   -- the validated request, canonical JSON
    labels          TEXT    NOT NULL DEFAULT '{}',      -- JSON object of strings
    callback_url    TEXT,
    idempotency_key TEXT    UNIQUE,
    request_hash    TEXT,                               -- SHA-256 of the canonical request
    mem_estimate    INTEGER NOT NULL DEFAULT 0,         -- bytes
    created_ms      INTEGER NOT NULL,
    started_ms      INTEGER,
    finished_ms     INTEGER,
    updated_ms      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    error_code      TEXT,
    error_message   TEXT,
    stage           TEXT,                               -- progress: the running stage
    layer           INTEGER,
    layers_total    INTEGER,
    fraction        REAL    NOT NULL DEFAULT 0,
    eta_seconds     REAL,
    CHECK (idempotency_key IS NULL OR request_hash IS NOT NULL)   -- a replay is matched on the hash
);
CREATE INDEX jobs_by_status ON jobs (status, priority DESC, seq);   -- the claim order; counts
CREATE INDEX jobs_by_model ON jobs (model, seq);

CREATE TABLE job_labels (
    job_seq INTEGER NOT NULL REFERENCES jobs (seq) ON DELETE CASCADE,
    key     TEXT    NOT NULL,
    value   TEXT    NOT NULL,
    PRIMARY KEY (job_seq, key)
);
CREATE INDEX job_labels_by_key ON job_labels (key, value);

CREATE TABLE job_events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    job_seq INTEGER NOT NULL REFERENCES jobs (seq) ON DELETE CASCADE,
    ts_ms   INTEGER NOT NULL,
    kind    TEXT    NOT NULL,        -- "state", "progress", "log"
    level   TEXT    NOT NULL,        -- "debug", "info", "warn", "error"
    message TEXT    NOT NULL,
    data    TEXT                     -- JSON, optional
);
CREATE INDEX job_events_by_job ON job_events (job_seq, seq);

CREATE TABLE artifacts (
    job_seq    INTEGER PRIMARY KEY REFERENCES jobs (seq) ON DELETE CASCADE,
    dir        TEXT    NOT NULL,     -- absolute path of the checkpoint directory
    created_ms INTEGER NOT NULL,
    bytes      INTEGER NOT NULL,
    metadata   TEXT    NOT NULL      -- JSON: quantization config, provenance, metrics, eval
);

CREATE TABLE artifact_files (
    job_seq INTEGER NOT NULL REFERENCES artifacts (job_seq) ON DELETE CASCADE,
    name    TEXT    NOT NULL,        -- relative to the artifact directory
    size    INTEGER NOT NULL,
    sha256  TEXT    NOT NULL,
    PRIMARY KEY (job_seq, name)
);

CREATE TABLE webhooks (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_seq     INTEGER NOT NULL REFERENCES jobs (seq) ON DELETE CASCADE,
    url         TEXT    NOT NULL,
    body        TEXT    NOT NULL,    -- the job as it was on its terminal transition
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_ms     INTEGER NOT NULL,    -- not before
    delivered_ms INTEGER,            -- set when delivered
    gave_up_ms  INTEGER,             -- set when the retries ran out
    last_error  TEXT
);
CREATE INDEX webhooks_by_job ON webhooks (job_seq);   -- ON DELETE CASCADE from jobs
CREATE INDEX webhooks_due ON webhooks (next_ms) WHERE delivered_ms IS NULL AND gave_up_ms IS NULL;
