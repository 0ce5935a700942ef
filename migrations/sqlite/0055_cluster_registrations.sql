-- Registrations shared by the nodes of a cluster: the node that holds the
-- phone's flow, and the Path (RFC 3327) a front proxy recorded, one header
-- value per line; both empty on a single node without a front.
ALTER TABLE registrations ADD COLUMN node TEXT NOT NULL DEFAULT '';
ALTER TABLE registrations ADD COLUMN path TEXT NOT NULL DEFAULT '';
