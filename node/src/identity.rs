//! Who a node is, across restarts and machines: a random instance id kept
//! in its data dir (`DATA_DIR/node-id`, 32 hex digits, written once,
//! atomically). The node registers it (`Meta.shardscope-instance`), so a
//! registry can tell the same node back on its data (at a new port, after
//! a crash) from another node that claims its id; and without `--id` the
//! node's id is `node-` and the instance's first 8 digits, unique across
//! machines where `node-PORT` was not.

use std::path::Path;

/// The instance id's file in the data dir.
pub const INSTANCE_FILE: &str = "node-id";

/// The instance id of the node whose data is in `data_dir`, made on its
/// first start.
pub fn instance_id(data_dir: &Path) -> anyhow::Result<String> {
    let valid = |v: &str| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit());
    let make = || shardscope_consul::token::random_hex(16);
    shardscope_consul::file::load_or_make(&data_dir.join(INSTANCE_FILE), "node instance id", 0o644, valid, make)
}

/// The id a node registers under when not given one: `node-` and the
/// first 8 hex digits of its instance id.
pub fn default_id(instance: &str) -> String {
    format!("node-{}", instance.chars().take(8).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instance_id_is_made_once_and_names_the_default_id() {
        let dir = tempfile::tempdir().unwrap();
        let first = instance_id(dir.path()).unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(instance_id(dir.path()).unwrap(), first, "kept across starts");
        assert_ne!(instance_id(tempfile::tempdir().unwrap().path()).unwrap(), first, "another data dir, another id");
        assert_eq!(default_id(&first), format!("node-{}", &first[..8]));
    }
}
