-- SPDX-License-Identifier: GPL-3.0-or-later
-- A running job's progress, reported by its worker with its lease
-- renewals, so that `vmatte serve` and `vmatte status` can show it.
ALTER TABLE jobs ADD COLUMN frames_done BIGINT;
ALTER TABLE jobs ADD COLUMN frames_total BIGINT;
