"""Where tenancy is enforced: a caller only ever reads or writes its own tenant's rows.

The rule, stated once (:func:`belongs_to_caller`): a row, an operation or a read belongs to the
caller when its tenant is the tenant named in the caller's verified token. Four layers hold it, each
on its own, so that one mistake in a layer is not enough to cross tenants:

1. **User token** (gateway). ``Authorization: Bearer`` is verified and turned into an
   :class:`~stockzen_platform.identity.Identity` (user, tenant) by
   ``stockzen_gateway/entrypoints/dependencies.py`` with :mod:`stockzen_platform.identity`. A
   tenant never comes from anywhere else: not from the body, the path or a query parameter.
2. **Per-item check** (gateway). Each sync operation names its ``tenantId``; one that is not the
   token's is refused alone with ``TENANT_MISMATCH`` in ``stockzen_gateway/domain/envelope.py``.
   The batch put on the queue carries the token's tenant, which the worker writes under.
3. **Row-level security** (Postgres). Every tenant table has a FORCE'd policy
   ``tenant_id = app_current_tenant()`` (migration ``0001_foundation.sql``); the tenant is set per
   transaction, in :data:`TENANT_SETTING`, by :func:`stockzen_platform.postgres.tenant_transaction`
   (or its one-round-trip twin, the worker's), and
   :func:`stockzen_platform.postgres.assert_role_is_restricted` refuses to start a service whose
   role would bypass the policy. The worker (``adapters/inventory_database.py``) and inventory
   (``adapters/reads.py``) only touch tenant rows inside such a transaction.
4. **Internal token** (gateway → inventory). The gateway forwards a read with a 60-second token
   naming the verified caller (``stockzen_gateway/adapters/inventory_client.py``, signed with
   ``INTERNAL_TOKEN_SECRET``); inventory takes its tenant from that token only
   (``stockzen_inventory/entrypoints/dependencies.py``), so calling inventory directly reaches nothing.
"""

from __future__ import annotations

from uuid import UUID

TENANT_SETTING = "app.tenant_id"
"""The transaction-local Postgres setting the row-level security policies read (``app_current_tenant()``)."""

TENANT_MISMATCH_MESSAGE = "tenantId does not match the tenant of the access token"
"""What a refused item says (code ``TENANT_MISMATCH``)."""


def belongs_to_caller(tenant_id: UUID, caller_tenant_id: UUID) -> bool:
    """Whether something of ``tenant_id`` may be touched by a caller whose token names ``caller_tenant_id``."""
    return tenant_id == caller_tenant_id
