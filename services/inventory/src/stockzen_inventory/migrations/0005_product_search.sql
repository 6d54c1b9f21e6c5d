-- Product search (`q`: ILIKE '%text%' over name, SKU and barcode) through a trigram index, so a
-- search that matches little reads little, where it used to read every product of the tenant.
-- pg_trgm and btree_gin are trusted extensions (Postgres 13+): the database's owner, which runs
-- these migrations, may create them. The index leads with tenant_id (btree_gin), so a search reads
-- only its own tenant's entries, and a text too short for a trigram still narrows to the tenant.
-- It covers live products only, as the list does. Safe to run again.
--
-- Row-level security lets the planner use an ILIKE for an index scan only when the function behind
-- it (texticlike) is marked LEAKPROOF: `stockzen-inventory migrate` does that as the administrator
-- (see adapters/migrations.py). Without it searches stay correct, just not indexed.

CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;
CREATE EXTENSION IF NOT EXISTS btree_gin WITH SCHEMA public;

CREATE INDEX IF NOT EXISTS products_search ON products
    USING gin (tenant_id, name gin_trgm_ops, sku gin_trgm_ops, barcode gin_trgm_ops)
    WHERE deleted_at IS NULL;
