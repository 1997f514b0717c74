//! The supervision tree as JSON: one object per child path with whether it runs, whether it
//! is permanent and its restarts since start. `/api/health` and `/admin/tree` both serve it.

use edge_gateway_actors::health::Health;

/// The supervised children by path: running, permanent, restart count (`/api/health`, and the
/// admin API's `/admin/tree`).
pub fn supervision_json(health: &Health) -> serde_json::Map<String, serde_json::Value> {
    health
        .children()
        .into_iter()
        .map(|(path, c)| (path, serde_json::json!({"running": c.running, "permanent": c.permanent, "restarts": c.restarts})))
        .collect()
}
