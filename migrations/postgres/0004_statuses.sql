-- Two more incident states: `resolved` (the source said the fault is over before an agent ran)
-- and `expired` (pending longer than the operator's TTL).
ALTER TABLE incidents DROP CONSTRAINT incidents_status_check;
ALTER TABLE incidents ADD CONSTRAINT incidents_status_check CHECK (status IN
    ('pending', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled', 'skipped',
     'resolved', 'expired'));
