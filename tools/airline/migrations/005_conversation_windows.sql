-- Window facts per conversation: which conversation a charge, refund or event came from.
-- (Engine migration 005 did this before the airline had its own migrations; IF NOT EXISTS keeps
-- it harmless on a database where that happened without being recorded as adopted.)
ALTER TABLE payments_ledger ADD COLUMN IF NOT EXISTS conversation_id text;
ALTER TABLE airline_events ADD COLUMN IF NOT EXISTS conversation_id text;
CREATE INDEX IF NOT EXISTS payments_ledger_user_time_idx ON payments_ledger (user_id, created_at);
CREATE INDEX IF NOT EXISTS airline_events_user_time_idx ON airline_events (user_id, tool, created_at);
