//! The backend's live view of the cluster: the nodes, a connection to each,
//! and the placement built over them with `shared/`. Routes every key to its
//! owner's connection and tells connected pages about membership changes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use shardscope_shared::placement::{build, Member, Placement, PlacementSpec};
use shardscope_shared::protocol::{ErrorCode, NodeInfo, NodeReply, NodeRequest, ServerMsg};
use tokio::sync::broadcast;

use crate::node_client::NodeClient;

struct View {
    nodes: Vec<NodeInfo>,
    clients: HashMap<String, NodeClient>,
    placement: Box<dyn Placement>,
}

/// Shared, cheaply cloned handle on the cluster view.
#[derive(Clone)]
pub struct Cluster {
    spec: PlacementSpec,
    view: Arc<RwLock<View>>,
    events: broadcast::Sender<ServerMsg>,
}

impl Cluster {
    pub fn new(spec: PlacementSpec) -> Self {
        let placement = build(&spec, &[]);
        let view = View { nodes: Vec::new(), clients: HashMap::new(), placement };
        let (events, _) = broadcast::channel(256);
        Cluster { spec, view: Arc::new(RwLock::new(view)), events }
    }

    /// Connects to `node` and makes it a placement member.
    pub async fn add_node(&self, node: NodeInfo) -> anyhow::Result<()> {
        let client = NodeClient::connect(&node.addr).await?;
        let id = node.id.clone();
        {
            let mut view = self.view.write().unwrap();
            view.nodes.retain(|n| n.id != node.id);
            view.clients.insert(node.id.clone(), client);
            view.nodes.push(node);
            view.nodes.sort_by(|a, b| a.id.cmp(&b.id));
            // A join changes the live placement, so algorithms with history
            // (jump's buckets) keep it.
            view.placement.add_member(Member::new(id));
        }
        let _ = self.events.send(self.snapshot());
        Ok(())
    }

    /// Drops `id` from routing (its node left the registry or failed its
    /// check). Returns whether it was a member.
    pub fn remove_node(&self, id: &str) -> bool {
        let removed = {
            let mut view = self.view.write().unwrap();
            let before = view.nodes.len();
            view.nodes.retain(|n| n.id != id);
            view.clients.remove(id);
            view.placement.remove_member(id);
            view.nodes.len() != before
        };
        if removed {
            let _ = self.events.send(self.snapshot());
        }
        removed
    }

    /// The current nodes and placement, as sent to pages.
    pub fn snapshot(&self) -> ServerMsg {
        let view = self.view.read().unwrap();
        ServerMsg::Cluster { nodes: view.nodes.clone(), placement: self.spec.clone(), slots: view.placement.slots() }
    }

    pub fn nodes(&self) -> Vec<NodeInfo> {
        self.view.read().unwrap().nodes.clone()
    }

    /// Future membership changes, for a page's WebSocket.
    pub fn subscribe(&self) -> broadcast::Receiver<ServerMsg> {
        self.events.subscribe()
    }

    /// The owner of `key` and a connection to it.
    pub fn route(&self, key: &[u8]) -> Option<(String, NodeClient)> {
        let view = self.view.read().unwrap();
        let owner = view.placement.owner_of(key)?;
        let client = view.clients.get(owner)?.clone();
        Some((owner.to_string(), client))
    }

    /// Sends a single-key request to the key's owner. Returns the owner's id
    /// (when there is one) and the reply.
    pub async fn request_key(&self, key: &[u8], req: &NodeRequest) -> (Option<String>, NodeReply) {
        match self.route(key) {
            Some((owner, client)) => {
                let reply = client.request(req).await;
                (Some(owner), reply)
            }
            None => (None, NodeReply::error(ErrorCode::Unavailable, "no storage nodes in the cluster")),
        }
    }

    /// Each node's `STATS` reply, by node id.
    pub async fn stats(&self) -> std::collections::BTreeMap<String, NodeReply> {
        let clients: Vec<(String, NodeClient)> =
            self.view.read().unwrap().clients.iter().map(|(id, c)| (id.clone(), c.clone())).collect();
        let replies = futures::future::join_all(clients.iter().map(|(_, c)| c.request(&NodeRequest::Stats))).await;
        clients.into_iter().map(|(id, _)| id).zip(replies).collect()
    }

    /// Every key-value pair of every node, in key order.
    pub async fn get_all(&self) -> NodeReply {
        let clients: Vec<NodeClient> = self.view.read().unwrap().clients.values().cloned().collect();
        let replies = futures::future::join_all(clients.iter().map(|c| c.request(&NodeRequest::GetAll))).await;
        let mut all = Vec::new();
        for reply in replies {
            match reply {
                NodeReply::Collection { collection } => all.extend(collection),
                err @ NodeReply::Error { .. } => return err,
                other => {
                    return NodeReply::error(ErrorCode::Unavailable, format!("unexpected reply to GET_ALL: {other:?}"))
                }
            }
        }
        all.sort_by(|a, b| a.key.cmp(&b.key));
        NodeReply::Collection { collection: all }
    }
}
