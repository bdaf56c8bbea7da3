//! Where a new collection's replicas go: each shard on `replicas` different storage nodes,
//! the least loaded first, so replicas (and leaders: a shard's first replica starts as its
//! leader) spread evenly.

use std::collections::BTreeMap;

use crate::raft::NodeId;

/// For each of `shards` shards, `replicas` distinct nodes out of `live`, given how many
/// replicas each already holds (`load`, updated). Refuses when there are too few nodes.
pub fn place(
    live: &[NodeId],
    load: &mut BTreeMap<NodeId, usize>,
    shards: usize,
    replicas: usize,
) -> Result<Vec<Vec<NodeId>>, String> {
    if replicas == 0 || live.len() < replicas {
        return Err(format!(
            "replicas = {replicas} needs {replicas} live storage node(s) (each replica of a \
             shard on its own node); the cluster has {}",
            live.len()
        ));
    }
    let mut placement = Vec::with_capacity(shards);
    for shard in 0..shards {
        let mut candidates = live.to_vec();
        // Least loaded first; among equals, a rotation by shard number.
        candidates.sort_by_key(|node| {
            let position = live.iter().position(|n| n == node).unwrap_or(0);
            let rotated = (position + live.len() - shard % live.len()) % live.len();
            (load.get(node).copied().unwrap_or(0), rotated)
        });
        candidates.truncate(replicas);
        for node in &candidates {
            *load.entry(*node).or_default() += 1;
        }
        debug_assert!(
            {
                let mut unique = candidates.clone();
                unique.sort_unstable();
                unique.dedup();
                unique.len() == replicas
            },
            "never two replicas of a shard on one node"
        );
        placement.push(candidates);
    }
    Ok(placement)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_spread_over_distinct_nodes_and_leaders_rotate() {
        let mut load = BTreeMap::new();
        let placement = place(&[1, 2, 3], &mut load, 3, 3).unwrap();
        for shard in &placement {
            let mut nodes = shard.clone();
            nodes.sort_unstable();
            assert_eq!(nodes, [1, 2, 3]);
        }
        let leaders: Vec<NodeId> = placement.iter().map(|s| s[0]).collect();
        assert_eq!(leaders, [1, 2, 3], "each shard starts led by another node");
        assert_eq!(load, BTreeMap::from([(1, 3), (2, 3), (3, 3)]));
    }

    #[test]
    fn the_least_loaded_nodes_are_chosen() {
        let mut load = BTreeMap::from([(1, 5), (2, 0), (3, 1), (4, 0)]);
        let placement = place(&[1, 2, 3, 4], &mut load, 1, 2).unwrap();
        let mut chosen = placement[0].clone();
        chosen.sort_unstable();
        assert_eq!(chosen, [2, 4]);
    }

    #[test]
    fn too_few_nodes_is_refused_by_count() {
        let e = place(&[1, 2], &mut BTreeMap::new(), 2, 3).unwrap_err();
        assert!(
            e.contains("needs 3 live storage node(s)") && e.contains("has 2"),
            "{e}"
        );
    }
}
