-- SPDX-License-Identifier: BSD-2-Clause
-- 002_maintenance.sql — an operator's maintenance mode, kept across restarts.
--
-- 1: the instance stays registered (and checked) but lookups do not hand it out, until
-- `regctl maintenance ID off` (the maintenance op) or a deregistration. A re-registration
-- of the same endpoint keeps the flag. Existing rows are in service (0).
ALTER TABLE instances ADD COLUMN maintenance INTEGER NOT NULL DEFAULT 0
    CHECK (maintenance IN (0, 1));
