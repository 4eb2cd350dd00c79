//! `relay snapshot get`: the stored version of one entity, as the worker synced it, from the
//! state table — the read path behind a `*.synced` event whose data was too large for the bus
//! (`data_omitted`). This command prints the entity's data, which can hold a customer's personal
//! data: it is the one command that does, because reading it is what it is for.

use anyhow::{bail, Result};
use relay_aws::state::DynamoState;
use relay_domain::ids::is_resource_id;
use relay_domain::ports::SnapshotStore as _;
use relay_domain::{MallId, ShopNo, SnapshotKind};
use serde_json::json;

/// The command line's `kind` argument.
pub fn parse_kind(s: &str) -> Result<SnapshotKind, String> {
    SnapshotKind::parse(s).ok_or_else(|| {
        let kinds: Vec<&str> = SnapshotKind::ALL.iter().map(|k| k.as_str()).collect();
        format!("{s:?} is not a kind: {}", kinds.join(", "))
    })
}

/// The stored snapshot of `id` in `shop` as a JSON document: `version` (the fetch time, epoch
/// ms, the same as the events' `version`), `deleted`, and `data` (null for a tombstone).
pub async fn get(
    state: &DynamoState,
    mall: &MallId,
    shop: ShopNo,
    kind: SnapshotKind,
    id: &str,
) -> Result<serde_json::Value> {
    if !is_resource_id(id) {
        bail!("{id:?} is not an entity id");
    }
    match state.snapshot(mall, kind, &shop.entity_key(id)).await? {
        None => bail!(
            "no snapshot of {kind} {id} in shop {shop} of mall {} (never synced, or another stack)",
            mall.as_str()
        ),
        Some((version, data)) => Ok(json!({
            "mall_id": mall.as_str(),
            "shop_no": shop.get(),
            "kind": kind.as_str(),
            "id": id,
            "version": version,
            "deleted": data.is_none(),
            "data": data,
        })),
    }
}
