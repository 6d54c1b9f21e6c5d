-- Applied-operation records kept for a window and dropped a partition at a time, instead of growing
-- without bound. Safe to run again: the conversion happens once, the function is replaced.
--
-- applied_operations becomes a table partitioned by applied_at (the time the worker wrote the
-- record), one partition per week (UTC, Monday to Monday). The records written before this
-- migration stay where they are: the old table becomes the partition of everything before the
-- migration's week ends, without copying a row. The worker calls applied_operations_maintain()
-- at start and hourly, with its TOMBSTONE_RETENTION_DAYS: it creates the partitions of the next
-- weeks ahead and drops each partition whose every record is older than the window (so a record
-- is kept at least the window, at most a week more). Dropping a partition is catalog work, however
-- many rows it holds: no DELETE, no dead rows, nothing for VACUUM.
--
-- Uniqueness. A partitioned table's unique constraints must include the partition key, and
-- applied_at is not something a retry carries, so (tenant_id, operation_id) is unique within each
-- partition (its primary key) and across partitions by the tenant's lock: the worker looks a
-- tenant's operations up and records them in one transaction that holds the tenant's row in
-- tenants (see the worker's adapters/inventory_database.py), so no two transactions of one tenant
-- interleave between the lookup and the insert. The lookup probes each kept partition's primary
-- key (about six at the default 30 days).
--
-- Past the window a retry is decided again from the data, which never applies it twice: the ledger
-- keeps every movement's id and operation id for good (a retried movement is recognised there,
-- answered `applied`, and recorded nothing new), a product write is merged again by its version
-- (the same version takes nothing, so it changes nothing), a deleted or purged product stays
-- deleted. A device offline for longer than the window must reset, as for tombstones.
--
-- No foreign key to tenants: the records are written only by a transaction that holds the tenant's
-- row, and a foreign key would make each partition created or dropped lock tenants against every
-- writer. Row-level security is the parent's (FORCE'd, as everywhere); the partitions are the
-- owner's alone (no grant to the services' role), under the same policy besides.

DO $convert$
DECLARE
    boundary timestamptz;
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = 'applied_operations'::regclass) = 'p' THEN
        RETURN;  -- converted already
    END IF;
    ALTER TABLE applied_operations RENAME TO applied_operations_unpartitioned;
    ALTER INDEX applied_operations_pkey RENAME TO applied_operations_unpartitioned_pkey;
    ALTER TABLE applied_operations_unpartitioned DROP CONSTRAINT IF EXISTS applied_operations_tenant_id_fkey;
    REVOKE ALL ON applied_operations_unpartitioned FROM stockzen_app;

    CREATE TABLE applied_operations (
        tenant_id    uuid NOT NULL,
        operation_id uuid NOT NULL,
        -- The queue message that applied it: that message's own redelivery gets the original
        -- result back, any other message gets it as a duplicate.
        message_id   text NOT NULL,
        entity_type  text NOT NULL,
        entity_id    uuid NOT NULL,
        result       jsonb NOT NULL,
        applied_at   timestamptz NOT NULL DEFAULT now(),
        fingerprint  text
    ) PARTITION BY RANGE (applied_at);
    COMMENT ON TABLE applied_operations IS
        'The durable dedupe record, kept TOMBSTONE_RETENTION_DAYS (see migration 0007); unique per tenant and operation id within a partition, and across partitions by the tenant''s lock';
    COMMENT ON COLUMN applied_operations.fingerprint IS
        'sha256 of the operation''s canonical JSON; NULL for operations applied before it was kept';

    -- The old rows, as the partition of everything before the end of this week (UTC). The CHECK
    -- makes the attach trust the bound: one scan of the old table here, no copy.
    boundary := (date_trunc('week', now() AT TIME ZONE 'UTC') + interval '7 days') AT TIME ZONE 'UTC';
    boundary := GREATEST(boundary, (SELECT max(applied_at) + interval '1 microsecond' FROM applied_operations_unpartitioned));
    EXECUTE format('ALTER TABLE applied_operations_unpartitioned ADD CONSTRAINT applied_operations_unpartitioned_bound '
                   'CHECK (applied_at < %L::timestamptz)', boundary);
    EXECUTE format('ALTER TABLE applied_operations ATTACH PARTITION applied_operations_unpartitioned '
                   'FOR VALUES FROM (MINVALUE) TO (%L)', boundary);
    ALTER TABLE applied_operations_unpartitioned DROP CONSTRAINT applied_operations_unpartitioned_bound;
END
$convert$;

ALTER TABLE applied_operations ENABLE ROW LEVEL SECURITY;
ALTER TABLE applied_operations FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS tenant_isolation ON applied_operations;
CREATE POLICY tenant_isolation ON applied_operations
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT ON applied_operations TO stockzen_app;

-- Creates the weekly partitions from the last one's end until ``ahead`` from ``at``, and drops the
-- partitions that end at or before ``at - retention``; returns what it did. The owner's (and the
-- tests') entry: the services' role calls applied_operations_maintain(retention), which is this at
-- now() with a floor on the retention. One run at a time (others return at once). Locks: creating
-- a partition attaches it (SHARE UPDATE EXCLUSIVE on the parent: writers go on), dropping one takes
-- the parent's ACCESS EXCLUSIVE for a moment, waiting at most lock_timeout (1 s) for the writers
-- in flight and giving up for this run if they do not finish by then.
CREATE OR REPLACE FUNCTION applied_operations_maintain_at(
    retention interval, at timestamptz, ahead interval DEFAULT interval '14 days'
) RETURNS SETOF text
    LANGUAGE plpgsql
    SET search_path = pg_catalog, public, pg_temp
    SET TimeZone = 'UTC'
    SET DateStyle = 'ISO'
    AS $$
DECLARE
    part record;
    upper_bound timestamptz;
    high timestamptz;
    lo timestamptz;
    hi timestamptz;
    name text;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('applied_operations_maintain')) THEN
        RETURN;
    END IF;
    PERFORM set_config('lock_timeout', '1s', true);
    FOR part IN
        SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'public.applied_operations'::regclass
    LOOP
        upper_bound := substring(part.bound FROM 'TO \(''([^'']+)''\)')::timestamptz;
        IF upper_bound <= at - retention THEN
            BEGIN
                EXECUTE format('DROP TABLE public.%I', part.relname);
                RETURN NEXT 'dropped ' || part.relname;
            EXCEPTION WHEN lock_not_available THEN
                RETURN NEXT 'kept ' || part.relname || ' (writers held it past lock_timeout; next run)';
            END;
        ELSE
            high := GREATEST(high, upper_bound);
        END IF;
    END LOOP;
    lo := GREATEST(high, date_trunc('week', at));
    WHILE lo < at + ahead LOOP
        hi := date_trunc('week', lo) + interval '7 days';
        name := 'applied_operations_' || to_char(lo, 'YYYYMMDD');
        EXECUTE format('CREATE TABLE public.%I (LIKE public.applied_operations INCLUDING DEFAULTS)', name);
        EXECUTE format('ALTER TABLE public.%I ADD PRIMARY KEY (tenant_id, operation_id)', name);
        EXECUTE format('ALTER TABLE public.%I ADD CHECK (applied_at >= %L AND applied_at < %L)', name, lo, hi);
        EXECUTE format('ALTER TABLE public.%I ENABLE ROW LEVEL SECURITY', name);
        EXECUTE format('ALTER TABLE public.%I FORCE ROW LEVEL SECURITY', name);
        EXECUTE format('CREATE POLICY tenant_isolation ON public.%I USING (tenant_id = app_current_tenant()) '
                       'WITH CHECK (tenant_id = app_current_tenant())', name);
        EXECUTE format('ALTER TABLE public.applied_operations ATTACH PARTITION public.%I FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
        RETURN NEXT 'created ' || name;
        lo := hi;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION applied_operations_maintain_at(interval, timestamptz, interval) FROM PUBLIC;

-- The services' entry: runs as the owner (who alone may create and drop partitions), always at
-- now(), and never with a window under a day, so the role can drop no record younger than that.
CREATE OR REPLACE FUNCTION applied_operations_maintain(retention interval) RETURNS SETOF text
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    AS $$ SELECT applied_operations_maintain_at(GREATEST(retention, interval '1 day'), now()) $$;
REVOKE ALL ON FUNCTION applied_operations_maintain(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION applied_operations_maintain(interval) TO stockzen_app;

-- The partitions of this week's end and the next two weeks, so that the worker finds them even
-- before its first run (the window here only bounds what is dropped: nothing is yet).
SELECT applied_operations_maintain_at(interval '3650 days', now());
