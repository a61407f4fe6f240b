-- Migration 2: every run gets a random id, runs.uid (16 hex digits from
-- SQLite's randomblob). Checkpoints carry it and their paths include it, so
-- no two runs, in one database or in two, share a checkpoint path, and a
-- resume can tell its own checkpoints from another run's.
ALTER TABLE runs ADD COLUMN uid TEXT;
UPDATE runs SET uid = lower(hex(randomblob(8))) WHERE uid IS NULL;
