-- StockZen inventory schema: tenants and their checkpoint counter, products with last-writer-wins
-- bookkeeping, the append-only stock ledger and its projection, and the durable dedupe record.
-- Every tenant table leads its keys with tenant_id (so Citus can distribute by tenant) and is
-- under FORCE'd row-level security keyed on the transaction-local setting app.tenant_id.

CREATE FUNCTION app_current_tenant() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid $$;
COMMENT ON FUNCTION app_current_tenant() IS
    'The tenant set for this transaction with set_config(''app.tenant_id'', ..., true); NULL when none is set.';

CREATE TABLE tenants (
    tenant_id       uuid PRIMARY KEY,
    -- The per-tenant change counter. Writers take it with next_checkpoint(), whose row lock
    -- is held to commit, so values are handed out in commit order.
    last_checkpoint bigint NOT NULL DEFAULT 0 CHECK (last_checkpoint >= 0),
    -- Changes at or below this checkpoint may have been purged (expired tombstones):
    -- a client whose checkpoint is older must re-download.
    feed_horizon    bigint NOT NULL DEFAULT 0 CHECK (feed_horizon >= 0),
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE products (
    tenant_id           uuid NOT NULL REFERENCES tenants (tenant_id),
    id                  uuid NOT NULL,
    name                text CHECK (char_length(name) BETWEEN 1 AND 200),
    sku                 text CHECK (char_length(sku) BETWEEN 1 AND 64),
    barcode             text CHECK (char_length(barcode) BETWEEN 1 AND 64),
    unit                text CHECK (char_length(unit) BETWEEN 1 AND 16),
    price_cents         bigint CHECK (price_cents >= 0),
    low_stock_threshold bigint CHECK (low_stock_threshold >= 0),
    archived            boolean NOT NULL DEFAULT false,
    -- Field-level last-writer-wins: for each field, the version of the write that set it, as
    -- '<modified_at as YYYY-MM-DDTHH:MI:SS.USZ>|<operation_id>'. Compared as text in the "C"
    -- collation this orders by time, then operation id (the tie-break).
    field_versions      jsonb NOT NULL DEFAULT '{}'::jsonb,
    modified_at         timestamptz NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    deleted_by          uuid,
    checkpoint          bigint NOT NULL,
    PRIMARY KEY (tenant_id, id),
    -- A delete that arrives before its product's create leaves a tombstone with no name.
    CHECK (deleted_at IS NOT NULL OR name IS NOT NULL)
);
CREATE UNIQUE INDEX products_feed ON products (tenant_id, checkpoint);
CREATE INDEX products_by_name ON products (tenant_id, lower(name), id) WHERE deleted_at IS NULL;
CREATE INDEX products_tombstones ON products (tenant_id, deleted_at) WHERE deleted_at IS NOT NULL;

-- No foreign key to products: expired tombstones are purged, while the ledger keeps its history.
-- The worker checks the product is live when it records a movement.
CREATE TABLE stock_movements (
    tenant_id    uuid NOT NULL REFERENCES tenants (tenant_id),
    id           uuid NOT NULL,
    operation_id uuid NOT NULL,
    product_id   uuid NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('entry', 'exit')),
    quantity     bigint NOT NULL CHECK (quantity > 0),
    reason       text CHECK (char_length(reason) <= 500),
    occurred_at  timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    checkpoint   bigint NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, operation_id)
);
CREATE UNIQUE INDEX stock_movements_feed ON stock_movements (tenant_id, checkpoint);
CREATE INDEX stock_movements_history
    ON stock_movements (tenant_id, product_id, occurred_at DESC, checkpoint DESC);

CREATE FUNCTION refuse_ledger_rewrite() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION 'stock_movements is append-only: % is not allowed; record a new movement instead', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;
CREATE TRIGGER stock_movements_append_only
    BEFORE UPDATE OR DELETE ON stock_movements
    FOR EACH ROW EXECUTE FUNCTION refuse_ledger_rewrite();
CREATE TRIGGER stock_movements_no_truncate
    BEFORE TRUNCATE ON stock_movements
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_ledger_rewrite();

-- Stock levels are a projection of the ledger, kept in the same transaction as each insert.
CREATE TABLE stock_levels (
    tenant_id          uuid NOT NULL REFERENCES tenants (tenant_id),
    product_id         uuid NOT NULL,
    quantity           bigint NOT NULL DEFAULT 0,
    movement_count     bigint NOT NULL DEFAULT 0,
    updated_checkpoint bigint NOT NULL,
    PRIMARY KEY (tenant_id, product_id)
);

CREATE FUNCTION project_stock_level() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    INSERT INTO stock_levels AS level (tenant_id, product_id, quantity, movement_count, updated_checkpoint)
    VALUES (NEW.tenant_id, NEW.product_id,
            CASE NEW.kind WHEN 'entry' THEN NEW.quantity ELSE -NEW.quantity END, 1, NEW.checkpoint)
    ON CONFLICT (tenant_id, product_id) DO UPDATE
        SET quantity = level.quantity + EXCLUDED.quantity,
            movement_count = level.movement_count + 1,
            updated_checkpoint = EXCLUDED.updated_checkpoint;
    RETURN NULL;
END
$$;
CREATE TRIGGER stock_movements_project_level
    AFTER INSERT ON stock_movements
    FOR EACH ROW EXECUTE FUNCTION project_stock_level();

-- The durable dedupe record: written in the same transaction as the operation's effect.
CREATE TABLE applied_operations (
    tenant_id    uuid NOT NULL REFERENCES tenants (tenant_id),
    operation_id uuid NOT NULL,
    -- The queue message that applied it: that message's own redelivery gets the original
    -- result back, any other message gets it as a duplicate.
    message_id   text NOT NULL,
    entity_type  text NOT NULL,
    entity_id    uuid NOT NULL,
    result       jsonb NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, operation_id)
);

-- The tenant's next checkpoint. The UPDATE's row lock is held until commit, so a concurrent
-- writer of the same tenant waits and then gets a higher value: values follow commit order.
CREATE FUNCTION next_checkpoint() RETURNS bigint
    LANGUAGE sql VOLATILE
    AS $$
    UPDATE tenants SET last_checkpoint = last_checkpoint + 1
    WHERE tenant_id = app_current_tenant()
    RETURNING last_checkpoint
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenants', 'products', 'stock_movements', 'stock_levels', 'applied_operations'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I USING (tenant_id = app_current_tenant()) '
            'WITH CHECK (tenant_id = app_current_tenant())', t);
    END LOOP;
END
$$;

GRANT USAGE ON SCHEMA public TO stockzen_app;
GRANT SELECT, INSERT, UPDATE ON tenants, products, stock_levels TO stockzen_app;
GRANT SELECT, INSERT ON stock_movements, applied_operations TO stockzen_app;
GRANT DELETE ON products TO stockzen_app;
GRANT EXECUTE ON FUNCTION app_current_tenant(), next_checkpoint() TO stockzen_app;
