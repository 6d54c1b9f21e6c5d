"""Last-writer-wins, as the server settles it: clamped client times, then request order, then operation id.

This module holds the whole rule: which version a write carries (:meth:`Version.of_write`, with
the clamping and the request-order tie break), the order versions follow (:class:`Version`,
:func:`winning_fields`), and the SQL by which Postgres enforces it for a batch of product writes
(:data:`WRITE_PRODUCTS_SQL`, which the database adapter runs as written). The database compares
the encoded versions (``products.field_versions``) as text in the "C" collation, whose order
:meth:`Version.encode` makes the version order; a property test holds the SQL and the Python
rule to the same winners.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import total_ordering
from uuid import UUID

MAX_SEQUENCE = 9999
"""Request positions are encoded in four digits (a request holds at most 1000 operations)."""


def clamp_modified_at(claimed: datetime, received_at: datetime) -> datetime:
    """A device's clock may run fast: no change counts as later than when the server received it."""
    return min(claimed, received_at).astimezone(UTC)


def write_sequence(claimed: datetime, received_at: datetime, position: int) -> int:
    """The tie-break a write carries after its time: ``1 + position`` in its request when its time was
    clamped, else 0.

    Every clamped write of a request gets the same time (when the request was received), so the
    request's order (the device's own order) decides between them: a device's later edit wins over
    its earlier one. Writes whose own times tie stay decided by operation id alone, whatever
    batches they travel in.
    """
    return min(position + 1, MAX_SEQUENCE) if claimed >= received_at else 0


@total_ordering
@dataclass(frozen=True, slots=True)
class Version:
    """When a write happened (clamped), its place in its request when clamped, and which operation
    made it: the order LWW follows is (time, sequence, operation id)."""

    modified_at: datetime
    operation_id: UUID
    sequence: int = 0

    @classmethod
    def of_write(cls, claimed: datetime, received_at: datetime, operation_id: UUID, position: int) -> Version:
        """The version of a write its device claims was made at ``claimed``, received by the server at
        ``received_at`` at ``position`` in its request: the clamped time, then the request order when
        clamped, then the operation id."""
        return cls(
            clamp_modified_at(claimed, received_at), operation_id, write_sequence(claimed, received_at, position)
        )

    def _order(self) -> tuple[datetime, int, UUID]:
        return (self.modified_at, self.sequence, self.operation_id)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._order() < other._order()

    def encode(self) -> str:
        """Fixed-width text whose byte order is the version order (time, sequence, operation id)."""
        t = self.modified_at.astimezone(UTC)
        return (
            f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
            f".{t.microsecond:06d}Z|{self.sequence:04d}|{self.operation_id}"
        )

    @classmethod
    def decode(cls, encoded: str) -> Version:
        """The inverse of :meth:`encode` (also reads the older ``time|operation`` form, sequence 0)."""
        when, _, rest = encoded.partition("|")
        sequence, _, operation = rest.rpartition("|")
        return cls(
            datetime.strptime(when, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC),
            UUID(operation),
            int(sequence) if sequence else 0,
        )


def lww_winner(a: Version, b: Version) -> Version:
    """The later write; on equal times the later in its request (when clamped), then the higher operation id."""
    return max(a, b)


def winning_fields(incoming: Version, changed: list[str], field_versions: dict[str, str]) -> list[str]:
    """Which of ``changed`` an incoming write wins, field by field: those it is strictly later for."""
    return [f for f in changed if f not in field_versions or incoming > Version.decode(field_versions[f])]


WRITE_PRODUCTS_SQL = """
-- A batch's product writes ($2..$7: kind, product id, changes as JSON, encoded version, clamped time,
-- operation id; one element per write, in request order), settled in one statement. Each product's
-- writes are folded in request order from its row as the batch found it, so a later write sees the
-- earlier ones; each product row is then written once. One row per write comes back, in order,
-- with the product as that write left it.
WITH RECURSIVE
writes AS (
    SELECT w.kind, w.product_id, w.changes::jsonb AS changes, w.version, w.modified_at, w.operation_id,
           w.position, row_number() OVER (PARTITION BY w.product_id ORDER BY w.position) AS step
    FROM unnest($2::text[], $3::uuid[], $4::text[], $5::text[], $6::timestamptz[], $7::uuid[])
        WITH ORDINALITY AS w (kind, product_id, changes, version, modified_at, operation_id, position)
),
fold AS (
    -- Step 0: the product's row before this batch, or an absent one. A product whose tombstone was
    -- purged (purged_products) stands as a tombstone with no fields: it takes no create and no
    -- edit, and an edit of it is refused for good ('purged') rather than left to wait for a create.
    SELECT ids.product_id, 0::bigint AS step, 0::bigint AS position, NULL::text AS outcome,
           p.id IS NOT NULL OR g.product_id IS NOT NULL AS present,
           p.deleted_at IS NOT NULL OR g.product_id IS NOT NULL AS deleted,
           g.product_id IS NOT NULL AS purged, false AS changed,
           jsonb_build_object('name', p.name, 'sku', p.sku, 'barcode', p.barcode, 'unit', p.unit,
                              'price_cents', p.price_cents, 'low_stock_threshold', p.low_stock_threshold,
                              'archived', CASE WHEN g.product_id IS NOT NULL THEN false ELSE p.archived END)
               AS fields,
           COALESCE(p.field_versions, '{}'::jsonb) AS versions, '{}'::text[] AS won,
           COALESCE(p.modified_at, g.modified_at) AS modified_at, p.deleted_at, p.deleted_by,
           COALESCE(p.checkpoint, g.checkpoint, 0) AS checkpoint_before
    FROM (SELECT DISTINCT product_id FROM writes) AS ids
    LEFT JOIN products AS p ON p.tenant_id = $1 AND p.id = ids.product_id
    LEFT JOIN purged_products AS g ON p.id IS NULL AND g.tenant_id = $1 AND g.product_id = ids.product_id
  UNION ALL
    -- Step n: write n applied to step n - 1.
    SELECT w.product_id, w.step, w.position,
           CASE WHEN w.kind = 'delete' THEN 'deleted' WHEN f.purged AND w.kind = 'update' THEN 'purged'
                WHEN f.deleted THEN 'was_deleted' WHEN does.merges THEN 'merged' ELSE 'unknown' END,
           f.present OR does.merges OR does.deletes,
           f.deleted OR does.deletes,
           f.purged,
           does.deletes OR cardinality(lww.won) > 0,
           CASE WHEN does.deletes AND NOT f.present THEN f.fields || '{"archived": false}'
                ELSE f.fields || lww.taken END,
           f.versions || lww.stamps,
           lww.won,
           CASE WHEN does.deletes OR cardinality(lww.won) > 0 THEN GREATEST(f.modified_at, w.modified_at)
                ELSE f.modified_at END,
           CASE WHEN does.deletes THEN now() ELSE f.deleted_at END,
           CASE WHEN does.deletes THEN w.operation_id ELSE f.deleted_by END,
           f.checkpoint_before
    FROM fold AS f
    JOIN writes AS w ON w.product_id = f.product_id AND w.step = f.step + 1
    -- A create or update edits a live product (a create also an absent one); deletes win over
    -- edits, so a tombstone takes no edit; a delete of a tombstone changes nothing.
    CROSS JOIN LATERAL (
        SELECT w.kind <> 'delete' AND NOT f.deleted AND (f.present OR w.kind = 'create') AS merges,
               w.kind = 'delete' AND NOT f.deleted AS deletes
    ) AS does
    -- Last-writer-wins, field by field: a field takes the write's value when the write's version
    -- is strictly later than the version that set the field (none: any version is later). Versions
    -- are text whose byte order ("C") is their order: time, then request sequence, then operation id.
    CROSS JOIN LATERAL (
        SELECT COALESCE(array_agg(c.key), '{}'::text[]) AS won,
               COALESCE(jsonb_object_agg(c.key, c.value), '{}'::jsonb) AS taken,
               COALESCE(jsonb_object_agg(c.key, w.version), '{}'::jsonb) AS stamps
        FROM jsonb_each(w.changes) AS c
        WHERE does.merges AND w.version COLLATE "C" > COALESCE(f.versions ->> c.key, '') COLLATE "C"
    ) AS lww
),
-- Every write that changed its product takes the next checkpoint, in request order, from a range
-- reserved once (the tenant's row is held by this transaction).
changed AS (
    SELECT product_id, step, row_number() OVER (ORDER BY position) AS n FROM fold WHERE changed
),
reserved AS (
    UPDATE tenants SET last_checkpoint = last_checkpoint + (SELECT count(*) FROM changed)
    WHERE tenant_id = $1
    RETURNING last_checkpoint - (SELECT count(*) FROM changed) AS base
),
stepped AS (
    SELECT f.*,
           COALESCE(max(reserved.base + changed.n) OVER (PARTITION BY f.product_id ORDER BY f.step),
                    f.checkpoint_before) AS checkpoint,
           bool_or(f.changed) OVER (PARTITION BY f.product_id) AS product_changed,
           f.step = max(f.step) OVER (PARTITION BY f.product_id) AS last
    FROM fold AS f
    CROSS JOIN reserved
    LEFT JOIN changed ON changed.product_id = f.product_id AND changed.step = f.step
),
written AS (
    INSERT INTO products AS p (tenant_id, id, name, sku, barcode, unit, price_cents, low_stock_threshold,
                               archived, field_versions, modified_at, deleted_at, deleted_by, checkpoint)
    SELECT $1, s.product_id, r.name, r.sku, r.barcode, r.unit, r.price_cents, r.low_stock_threshold,
           r.archived, s.versions, s.modified_at, s.deleted_at, s.deleted_by, s.checkpoint
    FROM stepped AS s, jsonb_populate_record(NULL::products, s.fields) AS r
    WHERE s.last AND s.product_changed
    ON CONFLICT (tenant_id, id) DO UPDATE SET
        name = EXCLUDED.name, sku = EXCLUDED.sku, barcode = EXCLUDED.barcode, unit = EXCLUDED.unit,
        price_cents = EXCLUDED.price_cents, low_stock_threshold = EXCLUDED.low_stock_threshold,
        archived = EXCLUDED.archived, field_versions = EXCLUDED.field_versions,
        modified_at = EXCLUDED.modified_at, deleted_at = EXCLUDED.deleted_at,
        deleted_by = EXCLUDED.deleted_by, checkpoint = EXCLUDED.checkpoint
)
SELECT s.outcome, s.won, s.product_id AS id, r.name, r.sku, r.barcode, r.unit, r.price_cents,
       r.low_stock_threshold, r.archived, s.deleted, s.modified_at, s.checkpoint
FROM stepped AS s, jsonb_populate_record(NULL::products, s.fields) AS r
WHERE s.step > 0
ORDER BY s.position
"""
"""Last-writer-wins as Postgres enforces it, for a batch of product writes at once (see the
comments in it). ``outcome`` is ``merged``, ``was_deleted`` (an edit or create of a tombstone, or a
create of a product whose tombstone was purged), ``deleted``, ``purged`` (an edit of a product whose
tombstone was purged) or ``unknown`` (an edit of a product never seen); ``won``, the fields a write took."""
