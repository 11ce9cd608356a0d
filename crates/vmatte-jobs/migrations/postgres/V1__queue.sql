-- The shared queue of `vmatte submit` / `vmatte worker`. Times are the
-- server's clock (now()), so workers need not agree on theirs.
CREATE TABLE jobs (
    id            BIGSERIAL PRIMARY KEY,
    outdir        TEXT NOT NULL,
    content_id    TEXT NOT NULL,
    settings_id   TEXT NOT NULL,
    input_path    TEXT NOT NULL,
    safe_name     TEXT NOT NULL,
    settings_json TEXT NOT NULL,
    state         TEXT NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    not_before    TIMESTAMPTZ NOT NULL DEFAULT now(),
    error         TEXT,
    lease_owner   TEXT,
    lease_expires TIMESTAMPTZ,
    created       TIMESTAMPTZ NOT NULL DEFAULT now(),
    started       TIMESTAMPTZ,
    finished      TIMESTAMPTZ,
    frames        BIGINT,
    seconds       DOUBLE PRECISION,
    outputs_json  TEXT,
    UNIQUE (outdir, content_id, settings_id),
    CHECK ((state = 'running') = (lease_owner IS NOT NULL AND lease_expires IS NOT NULL))
);
-- Output names are unique per folder, ignoring case (macOS and Windows
-- shares fold it).
CREATE UNIQUE INDEX jobs_name ON jobs (outdir, lower(safe_name));
CREATE INDEX jobs_ready ON jobs (state, not_before, id);

-- Every claim of a job and how it ended: done, failed (with the error),
-- lost (the worker stopped renewing its lease) or released (the worker was
-- asked to stop and gave the job back).
CREATE TABLE job_attempts (
    id       BIGSERIAL PRIMARY KEY,
    job_id   BIGINT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt  INTEGER NOT NULL,
    worker   TEXT NOT NULL,
    started  TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished TIMESTAMPTZ,
    outcome  TEXT CHECK (outcome IN ('done', 'failed', 'lost', 'released')),
    error    TEXT
);
CREATE INDEX job_attempts_by_job ON job_attempts (job_id, id);

CREATE TABLE workers (
    id        TEXT PRIMARY KEY,
    host      TEXT NOT NULL,
    pid       INTEGER NOT NULL,
    devices   TEXT NOT NULL,
    started   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen TIMESTAMPTZ NOT NULL DEFAULT now(),
    stopped   TIMESTAMPTZ,
    jobs_done BIGINT NOT NULL DEFAULT 0
);
