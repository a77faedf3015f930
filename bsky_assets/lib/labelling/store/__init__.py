"""Every query the label tables need, behind named functions: the engine's SQL, in one package
(`store.<query>` for its callers), by table family: outcomes, label sets, leases.

Label tables are specs built by `db.tables.label_table`: keyed by (day, post, label set), each
row recording whether the post was labelled, why not, and which text it labelled (its sha256).
A row is *final* when it is a success, a permanent failure or an invalid post; `retryable` rows
(retries exhausted) and rows whose text has changed since are pending again.

Identifiers come from specs (validated there); every value is a bound parameter.
"""

from bsky_assets.lib.labelling.store.label_sets import (
    add_default_preferences,
    create_preferred_view,
    label_set_labeler,
    migrate_to_label_sets,
    primary_key,
    register_label_set,
    view_is_current,
)
from bsky_assets.lib.labelling.store.leases import (
    lease_holder,
    release_lease,
    renew_lease,
    take_lease,
)
from bsky_assets.lib.labelling.store.outcomes import (
    TEXT_SHA256_SQL,
    column_counts,
    count_outside,
    count_pending,
    histogram,
    labelled_and_failed,
    labelled_rows_with_text,
    missing_and_orphaned,
    partition_outcomes,
    pending_posts,
    value_counts,
    write_invalid_post_rows,
)

__all__ = [
    "TEXT_SHA256_SQL",
    "add_default_preferences",
    "column_counts",
    "count_outside",
    "count_pending",
    "create_preferred_view",
    "histogram",
    "label_set_labeler",
    "labelled_and_failed",
    "labelled_rows_with_text",
    "lease_holder",
    "migrate_to_label_sets",
    "missing_and_orphaned",
    "partition_outcomes",
    "pending_posts",
    "primary_key",
    "register_label_set",
    "release_lease",
    "renew_lease",
    "take_lease",
    "value_counts",
    "view_is_current",
    "write_invalid_post_rows",
]
