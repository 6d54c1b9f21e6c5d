-- Stock levels kept once per INSERT statement instead of once per movement: the worker records a
-- batch's movements in one statement, and this trigger folds them into one upsert per product
-- from the statement's transition table. Safe to run again.

CREATE OR REPLACE FUNCTION project_stock_levels() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    INSERT INTO stock_levels AS level (tenant_id, product_id, quantity, movement_count, updated_checkpoint)
    SELECT tenant_id, product_id,
           sum(CASE kind WHEN 'entry' THEN quantity ELSE -quantity END), count(*), max(checkpoint)
    FROM recorded
    GROUP BY tenant_id, product_id
    ON CONFLICT (tenant_id, product_id) DO UPDATE
        SET quantity = level.quantity + EXCLUDED.quantity,
            movement_count = level.movement_count + EXCLUDED.movement_count,
            updated_checkpoint = GREATEST(level.updated_checkpoint, EXCLUDED.updated_checkpoint);
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS stock_movements_project_level ON stock_movements;
DROP TRIGGER IF EXISTS stock_movements_project_levels ON stock_movements;
CREATE TRIGGER stock_movements_project_levels
    AFTER INSERT ON stock_movements
    REFERENCING NEW TABLE AS recorded
    FOR EACH STATEMENT EXECUTE FUNCTION project_stock_levels();
DROP FUNCTION IF EXISTS project_stock_level();
