-- Operation fingerprints and request order in last-writer-wins versions. Written to be safe to run
-- again: nothing here fails or changes anything the second time.

-- What an operation asked for, as a digest of its canonical JSON: an operationId seen again with
-- another fingerprint is a reuse for a different change (OPERATION_ID_REUSED), never a duplicate.
-- NULL for operations applied before fingerprints were kept: those are taken at their word.
ALTER TABLE applied_operations ADD COLUMN IF NOT EXISTS fingerprint text;
COMMENT ON COLUMN applied_operations.fingerprint IS
    'sha256 of the operation''s canonical JSON; NULL for operations applied before it was kept';

-- Field versions gain the write's place in its request between time and operation id:
-- '<time>|<operation_id>' becomes '<time>|0000|<operation_id>', which sorts exactly as before
-- against other old versions and correctly against new ones. The owner rewrites every tenant's
-- rows, so row-level security is lifted for this transaction only (FORCE'd again below).
ALTER TABLE products NO FORCE ROW LEVEL SECURITY;
UPDATE products
SET field_versions = (
    SELECT jsonb_object_agg(
        key, CASE WHEN value ~ '^[^|]*\|[^|]*$' THEN regexp_replace(value, '\|', '|0000|') ELSE value END)
    FROM jsonb_each_text(products.field_versions))
WHERE EXISTS (SELECT 1 FROM jsonb_each_text(products.field_versions) WHERE value ~ '^[^|]*\|[^|]*$');
ALTER TABLE products FORCE ROW LEVEL SECURITY;
