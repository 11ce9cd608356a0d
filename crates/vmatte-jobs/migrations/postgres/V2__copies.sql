-- Output sizes, to notice a deleted or damaged output when a done job is
-- checked again.
ALTER TABLE jobs ADD COLUMN output_bytes_json TEXT;

-- Inputs whose content another job of the same folder and settings
-- already mattes: computed once, each input gets its own outputs, linked
-- from the job's once it is done.
CREATE TABLE copies (
    id                BIGSERIAL PRIMARY KEY,
    job_id            BIGINT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    outdir            TEXT NOT NULL,
    input_path        TEXT NOT NULL,
    safe_name         TEXT NOT NULL,
    outputs_json      TEXT,
    output_bytes_json TEXT,
    created           TIMESTAMPTZ NOT NULL DEFAULT now(),
    linked            TIMESTAMPTZ,
    UNIQUE (job_id, input_path)
);
CREATE UNIQUE INDEX copies_name ON copies (outdir, lower(safe_name));
