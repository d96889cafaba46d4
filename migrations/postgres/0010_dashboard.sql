-- The dashboard (issue #19): short ids and keyset pagination of the incident list.

-- `nightcrier incidents show 4d5e6a7b8c` and /incidents/4d5e6a7b8c: the short id is the last 10
-- characters of the id text.
CREATE INDEX incidents_short_id ON incidents ((right(id::text, 10)));
-- The incident list pages newest first by id (UUID v7 ids sort by creation time) with one
-- filter; each filter column leads an index that ends in id, so a page is an index range scan
-- at any depth.
CREATE INDEX incidents_cluster_id ON incidents (cluster, id);
CREATE INDEX incidents_status_id ON incidents (status, id);
CREATE INDEX incidents_severity_id ON incidents (severity, id);
CREATE INDEX incidents_fault_type_id ON incidents (fault_type, id);
