-- Products whose tombstone was purged. Once a tombstone is past the retention window it is deleted,
-- but its id is kept here, so that a late change for it still gets a final answer: an edit or a
-- movement is NOT_FOUND for good (not the retryable NOT_FOUND of a product never seen, which its
-- device would retry forever), a late create meets it as a tombstone (conflict), a delete changes
-- nothing. One narrow row per purged product; the worker moves the ids here in the statement that
-- purges them. Safe to run again.

CREATE TABLE IF NOT EXISTS purged_products (
    tenant_id   uuid NOT NULL REFERENCES tenants (tenant_id),
    product_id  uuid NOT NULL,
    -- The tombstone's time and checkpoint, for the state a late create is answered with.
    modified_at timestamptz NOT NULL,
    checkpoint  bigint NOT NULL,
    purged_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, product_id)
);

ALTER TABLE purged_products ENABLE ROW LEVEL SECURITY;
ALTER TABLE purged_products FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS tenant_isolation ON purged_products;
CREATE POLICY tenant_isolation ON purged_products
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT ON purged_products TO stockzen_app;

-- Products purged before this migration: a product operation that was applied (or settled as a
-- conflict) had its row then, and rows leave products only when purged, so such an operation whose
-- product has no row any more names a purged product. Their tombstones are gone: the tenant's feed
-- horizon (at or past each purged checkpoint) and the last such operation's time stand in for them.
-- The owner reads every tenant's rows, so row-level security is lifted for this transaction only
-- (FORCE'd again below).
ALTER TABLE applied_operations NO FORCE ROW LEVEL SECURITY;
ALTER TABLE products NO FORCE ROW LEVEL SECURITY;
ALTER TABLE tenants NO FORCE ROW LEVEL SECURITY;
ALTER TABLE purged_products NO FORCE ROW LEVEL SECURITY;
INSERT INTO purged_products (tenant_id, product_id, modified_at, checkpoint)
SELECT a.tenant_id, a.entity_id, max(a.applied_at), t.feed_horizon
FROM applied_operations AS a
JOIN tenants AS t ON t.tenant_id = a.tenant_id
WHERE a.entity_type = 'product'
  AND a.result ->> 'status' IN ('applied', 'conflict')
  AND NOT EXISTS (SELECT 1 FROM products AS p WHERE p.tenant_id = a.tenant_id AND p.id = a.entity_id)
GROUP BY a.tenant_id, a.entity_id, t.feed_horizon
ON CONFLICT (tenant_id, product_id) DO NOTHING;
ALTER TABLE applied_operations FORCE ROW LEVEL SECURITY;
ALTER TABLE products FORCE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
ALTER TABLE purged_products FORCE ROW LEVEL SECURITY;
